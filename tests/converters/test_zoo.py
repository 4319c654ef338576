"""Real architectures: the onnx package's light model zoo (random weights put in place of its
constant ones) and torchvision models exported with torch.onnx.export, each converted and
compared with onnxruntime on 8 random inputs; XNNPACK must take each graph whole."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgekit.converters import convert, verify
from tests.converters.onnx_models import randomize_constant_weights

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT.glob("light_*.onnx"))
TORCHVISION = [
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "efficientnet_b0",
]
# TRANSPOSEs that are part of the model's own semantics (channel shuffles) and stay
EXPECTED_TRANSPOSES = {"shufflenet": 16, "shufflenet_v2_x1_0": 16}


def test_light_zoo_is_complete():
    assert len(LIGHT_MODELS) == 9, LIGHT_MODELS


def _check(model, tmp_path: Path, name: str) -> None:
    out = tmp_path / f"{name}.tflite"
    result = convert(model, out)
    report = verify(model, out, samples=8)
    assert report.min_sqnr_db >= 60, report.table()
    assert result.partitions == 1, f"{name}: {result.partitions} XNNPACK partitions, ops {result.ops}"
    assert result.transposes <= EXPECTED_TRANSPOSES.get(name, 0), result.ops
    from edgekit.runtime import load

    load(out, threads=1)  # the runtime's flatbuffer verifier accepts what the writer makes


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_zoo_model(name, tmp_path):
    model = randomize_constant_weights(onnx.load(LIGHT / f"light_{name}.onnx"), seed=0)
    _check(model, tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_model(name, tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from edgekit.converters.torch import export_onnx

    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    export_onnx(getattr(torchvision.models, name)(weights=None), torch.zeros(1, 3, 224, 224), path)
    _check(str(path), tmp_path, name)


def _attention_models():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, activation="gelu")
            self.head = nn.Linear(32, 5)

        def forward(self, x):
            return self.head(self.enc(x).mean(1))

    class PatchAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 32, 4, 4)
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
            self.norm = nn.LayerNorm(32)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

        def forward(self, x):
            p = self.patch(x).flatten(2).transpose(1, 2)
            a, _ = self.attn(p, p, p)
            a = self.norm(a + p)
            return self.up(a.transpose(1, 2).reshape(1, 32, 4, 4))

    return {
        "encoder": (Encoder(), torch.randn(1, 10, 32)),
        "patch_attention": (PatchAttention(), torch.randn(1, 3, 16, 16)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["encoder", "patch_attention"])
def test_attention_blocks(name, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net, example = _attention_models()[name]
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        net.eval(), example, str(path), opset_version=17, dynamo=False, input_names=["x"], output_names=["y"]
    )
    out = tmp_path / f"{name}.tflite"
    result = convert(str(path), out)
    assert verify(str(path), out, samples=8).min_sqnr_db >= 60
    assert result.partitions == 1, result.ops
