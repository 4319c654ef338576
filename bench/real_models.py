"""Trained models from the package registry (tests/real_models.py), converted by edgekit:
per model, fp32 SQNR against onnxruntime and XNNPACK partitions, int8 task agreement with fp32
(and onnxruntime's own int8 where it applies), LiteRT latency int8 vs fp32, conversion time.

    python bench/real_models.py [--rounds 5]

Inputs are realistic and made here: crops of scikit-learn's sample photographs for the
detector, tones in noise for the voice activity detector.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, table  # noqa: E402

from tests import real_models  # noqa: E402


def _runner(path: Path, threads: int):
    from edgekit.runtime import load

    session = load(path, threads=threads)
    return session


def yolo(work: Path, rounds: int) -> list[list]:
    import onnxruntime as ort

    from edgekit.converters import convert
    from edgekit.converters.verification import sqnr_db
    from tests.converters.test_real_models import YOLO_SHAPE, _ort_int8_boxes, _photo_crops

    path = real_models.path("nudenet-yolov8n")
    calibration, test = _photo_crops(24, seed=0), _photo_crops(8, seed=1)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.stack([reference.run(None, {"images": x[None]})[0][0] for x in test])
    rows = []
    outputs = {}
    for mode in ("fp32", "int8"):
        out = work / f"yolo-{mode}.tflite"
        start = time.perf_counter()
        result = convert(
            path,
            out,
            input_shapes={"images": YOLO_SHAPE},
            **({"quantize": "int8", "calibration": calibration} if mode == "int8" else {}),
        )
        seconds = time.perf_counter() - start
        from edgekit.converters.verification import TFLiteRunner

        runner = TFLiteRunner(out.read_bytes())  # applies the model's I/O layout (NHWC here)
        got = np.stack([next(iter(runner({"images": x[None]}).values())).reshape(22, -1) for x in test])
        outputs[mode] = (out, result, seconds, got)
    ort_boxes = _ort_int8_boxes(path, calibration, test, work)
    nhwc = test[:1].transpose(0, 2, 3, 1)
    sessions = {mode: _runner(o[0], 1) for mode, o in outputs.items()}
    speed = interleaved({mode: (lambda s=s: s.run(nhwc)) for mode, s in sessions.items()}, rounds=rounds)
    for mode, (_, result, seconds, got) in outputs.items():
        rows.append(
            [
                f"nudenet yolov8n {mode}",
                result.partitions,
                f"{sqnr_db(expected[:, :4], got[:, :4]):.1f}",
                f"{sqnr_db(expected[:, 4:], got[:, 4:]):.1f}",
                f"{sqnr_db(expected[:, :4], ort_boxes[:, :4]):.1f}" if mode == "int8" else "-",
                f"{speed[mode]:.2f}",
                f"{speed[mode] / speed['fp32']:.2f}",
                f"{seconds:.1f}",
            ]
        )
    return rows


def silero(work: Path, rounds: int) -> list[list]:
    import onnxruntime as ort

    from edgekit.converters import convert
    from edgekit.converters.onnx_frontend import edit_model, read_model
    from tests.converters.test_real_models import _speech_like

    path = real_models.path("silero-vad-16k-op15")
    fixed = edit_model(read_model(path).model, input_values={"sr": 16000})  # convert --input-value sr=16000
    shapes = {"input": (1, 512), "state": (2, 1, 128)}
    data = _speech_like(32, seed=3)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.array(
        [
            reference.run(None, {k: np.asarray(v[i]) for k, v in data.items()})[0].item()
            for i in range(len(data["input"]))
        ]
    )
    rows, sessions = [], {}
    for mode in ("fp32", "int8"):
        out = work / f"vad-{mode}.tflite"
        calibration = {k: data[k][:16] for k in ("input", "state")}
        start = time.perf_counter()
        try:
            result = convert(
                fixed,
                out,
                input_shapes=shapes,
                **({"quantize": "int8", "calibration": calibration} if mode == "int8" else {}),
            )
        except Exception as exc:  # a mode edgekit cannot do yet is a row that says why
            rows.append([f"silero-vad {mode}", "-", f"refused: {str(exc)[:60]}", "", "", "", "", ""])
            continue
        seconds = time.perf_counter() - start
        session = _runner(out, 1)
        sessions[mode] = session
        got = np.array(
            [
                session.run({k: data[k][i] for k in ("input", "state")})["output"].item()
                for i in range(len(data["input"]))
            ]
        )
        error = float(np.max(np.abs(got - expected)))
        agree = float(np.mean((got > 0.5) == (expected > 0.5)))
        rows.append(
            [
                f"silero-vad {mode}",
                result.partitions,
                f"max |p err| {error:.4f}",
                f"{agree:.0%} decisions",
                "-",
                "",
                "",
                f"{seconds:.1f}",
            ]
        )
    feed = {k: data[k][0] for k in ("input", "state")}
    speed = interleaved({mode: (lambda s=s: s.run(feed)) for mode, s in sessions.items()}, rounds=rounds)
    for row in rows:
        mode = row[0].split()[-1]
        if mode in speed:
            row[5], row[6] = f"{speed[mode]:.3f}", f"{speed[mode] / speed['fp32']:.2f}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = yolo(work, args.rounds) + silero(work, args.rounds)
    print(
        table(
            rows,
            [
                "model",
                "partitions",
                "boxes SQNR dB",
                "scores SQNR dB",
                "ORT int8 boxes",
                "ms (1 thread)",
                "x fp32",
                "convert s",
            ],
        )
    )


if __name__ == "__main__":
    main()
