"""The space-to-depth stem rewrite: same numbers as onnxruntime on the original model, in float
and int8, and only on the convolutions it is meant for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from edgekit.errors import ParameterError, UnsupportedModelError
from tests.converters.onnx_models import model, rand

N = helper.make_node


def stem(k: int, stride: int, pads: list[int], cin: int = 3, side: int = 32, cout: int = 8, tail: bool = True):
    """Conv(k, stride) -> Relu -> 3x3/2 MaxPool (-> a 1x1 conv so later layers read the result)."""
    nodes = [N("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], strides=[stride] * 2, pads=pads)]
    nodes.append(N("Relu", ["c"], ["r"]))
    last = "r"
    if tail:
        nodes.append(N("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(N("Conv", ["p", "w2"], ["y"]))
        last = "y"
    else:
        nodes.append(N("Identity", ["r"], ["y"]))
    consts = {"w": rand(cout, cin, k, k, seed=1, scale=0.3), "b": rand(cout, seed=2), "w2": rand(4, cout, 1, 1, seed=3)}
    if not tail:
        del consts["w2"]
    return model(nodes, {"x": (1, cin, side, side)}, {last: None}, consts)


CASES = {  # name: (kernel, stride, pads, block)
    "resnet_7x7_block2": (7, 2, [3, 3, 3, 3], 2),
    "resnet_7x7_block4": (7, 2, [3, 3, 3, 3], 4),
    "mobilenet_3x3_block2": (3, 2, [1, 1, 1, 1], 2),
    "mobilenet_3x3_block4": (3, 2, [1, 1, 1, 1], 4),
    "asymmetric_pads_block4": (3, 2, [0, 0, 1, 1], 4),
    "patchify_4x4_stride4": (4, 4, [0, 0, 0, 0], 4),
    "block8": (5, 2, [2, 2, 2, 2], 8),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rewritten_stem_matches_onnxruntime_in_float(name, tmp_path):
    k, stride, pads, block = CASES[name]
    m = stem(k, stride, pads)
    result = convert(m, tmp_path / "s.tflite", stem_block=block)
    assert result.ops.get("SPACE_TO_DEPTH") == 1, result.ops
    assert result.ops.get("DEPTH_TO_SPACE", 0) == (1 if block > stride else 0), result.ops
    assert "RELU" not in result.ops, result.ops  # the ReLU moved before DepthToSpace and fused
    assert verify(m, tmp_path / "s.tflite", samples=4).min_sqnr_db >= 60


@pytest.mark.parametrize("block", [2, 4])
def test_rewritten_stem_int8_as_close_to_onnxruntime_as_the_plain_conversion(block, tmp_path):
    m = stem(7, 2, [3, 3, 3, 3], side=64, cout=16)
    data = np.random.default_rng(0).uniform(-1, 1, (24, 3, 64, 64)).astype(np.float32)
    calibration, test = data[:16], data[16:]
    plain = convert(m, tmp_path / "plain.tflite", quantize="int8", calibration=calibration)
    s2d = convert(m, tmp_path / "s2d.tflite", quantize="int8", calibration=calibration, stem_block=block)
    assert s2d.ops.get("SPACE_TO_DEPTH") == 1 and "ADD" not in s2d.ops, s2d.ops  # no max-pool mask needed
    assert s2d.partitions == plain.partitions == 1
    plain_db = verify(m, tmp_path / "plain.tflite", data=test).min_sqnr_db
    s2d_db = verify(m, tmp_path / "s2d.tflite", data=test).min_sqnr_db
    assert s2d_db > 30 and s2d_db > plain_db - 1.5, (plain_db, s2d_db)


def test_only_strided_convs_on_few_channels_are_rewritten(tmp_path):
    """A model with no such convolution is refused, not converted unchanged: the option would do
    nothing (CREPE's stride-(4, 1) stem and MTCNN's stride-1 one came out byte-identical)."""
    wide = stem(3, 2, [1, 1, 1, 1], cin=8)
    stride1 = stem(3, 1, [1, 1, 1, 1])
    odd_side = stem(3, 2, [1, 1, 1, 1], side=30)  # 30 is not a multiple of the block
    stride4_block2 = stem(4, 4, [0, 0, 0, 0])  # the block must be a multiple of the stride
    for m, block in ((wide, 4), (stride1, 4), (odd_side, 4), (stride4_block2, 2)):
        out = tmp_path / "m.tflite"
        with pytest.raises(ParameterError, match=rf"^stem_block={block} changes nothing here"):
            convert(m, out, stem_block=block)
        assert not out.exists()


def test_cli_names_the_flag_that_changes_nothing(tmp_path):
    path = tmp_path / "wide.onnx"
    path.write_bytes(stem(3, 2, [1, 1, 1, 1], cin=8).SerializeToString())
    out = tmp_path / "wide.tflite"
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(path), "-o", str(out), "--stem-block", "4"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--stem-block 4 changes nothing here" in result.stderr and not out.exists()


def test_stem_output_as_graph_output(tmp_path):
    m = stem(3, 2, [1, 1, 1, 1], tail=False)
    convert(m, tmp_path / "s.tflite", stem_block=4)
    assert verify(m, tmp_path / "s.tflite", samples=2).min_sqnr_db >= 60


def test_unsupported_block_is_refused(tmp_path):
    with pytest.raises(UnsupportedModelError, match="choose 2, 4 or 8"):
        convert(stem(3, 2, [1, 1, 1, 1]), tmp_path / "s.tflite", stem_block=3)
    assert not (tmp_path / "s.tflite").exists()


def test_cli_stem_block_and_latency_timing_use_the_rewrite(tmp_path):
    from edgekit.converters.prune.latency import measure
    from tests.converters.test_cli_errors import edgekit

    m = stem(7, 2, [3, 3, 3, 3])
    path = tmp_path / "stem.onnx"
    path.write_bytes(m.SerializeToString())
    result = edgekit("convert", str(path), "-o", str(tmp_path / "s.tflite"), "--stem-block", "4", "--verify")
    assert result.returncode == 0, result.stderr
    assert "SPACE_TO_DEPTH x1" in result.stdout and "DEPTH_TO_SPACE x1" in result.stdout
    bad = edgekit("convert", str(path), "-o", str(tmp_path / "t.tflite"), "--stem-block", "3")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and not (tmp_path / "t.tflite").exists()
    # the latency table converts with the same options (a block it refuses shows they reach convert)
    with pytest.raises(UnsupportedModelError, match="choose 2, 4 or 8"):
        measure(m, progress=None, rounds=1, runs=1, convert_options={"stem_block": 3})
    assert measure(m, progress=None, rounds=1, runs=1, convert_options={"stem_block": 4})
