"""Current timm / torchvision architectures with random weights, exported by torch.onnx.export
and converted by edgekit: per (model, exporter, mode), whether it converts, SQNR against
onnxruntime, XNNPACK partitions and the ops left outside them, onnxruntime's own int8 SQNR
(quantize_static, QDQ, per channel, the same calibration) and conversion time.

    python -m bench.architectures [--models convnext_atto resnet18] [--timeout 300]

Weights are never downloaded (timm ``pretrained=False``, torchvision ``weights=None``; seed 0).
Every model is exported twice when the installed torch's default exporter is the dynamo one:
by it and by the TorchScript exporter (``dynamo=False``); they write different graphs (GELU
as Erf, Split, ...). Calibration is 16 standard-normal samples, verification 4 others.
Each (model, exporter) runs in its own process, killed after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table  # noqa: E402

# name -> (library, input side); mobilevit_xxs at its native 256: at 224 its 7x7 stage does
# not divide into 2x2 patches and timm inserts a bilinear resize the trained model never has.
ARCHITECTURES = {
    "convnext_atto": ("timm", 224),
    "edgenext_xx_small": ("timm", 224),
    "efficientformerv2_s0": ("timm", 224),
    "fastvit_t8": ("timm", 224),
    "repvit_m0_9": ("timm", 224),
    "mobilevit_xxs": ("timm", 256),
    "efficientvit_b0": ("timm", 224),
    "levit_128s": ("timm", 224),  # attention biases are sized for 224
    "mobilenetv4_hybrid_medium": ("timm", 224),
    "lraspp_mobilenet_v3_large": ("torchvision.segmentation", 224),
    "mobilenet_v3_small": ("torchvision", 224),
    "resnet18": ("torchvision", 224),
}
CALIBRATION_SAMPLES = 16
TEST_SAMPLES = 4
MODES = ("fp32", "int8")


@dataclass
class Row:
    model: str
    exporter: str
    mode: str
    status: str = "ok"
    sqnr_db: float | None = None
    partitions: int | None = None
    outside_xnnpack: str = "-"
    ort_int8_sqnr_db: float | None = None
    ort_int8_error: str = ""
    seconds: float | None = None


def default_exporter() -> str:
    import torch

    default = inspect.signature(torch.onnx.export).parameters["dynamo"].default
    return "dynamo" if default else "torchscript"


def exporters() -> list[str]:
    return ["dynamo", "torchscript"] if default_exporter() == "dynamo" else ["torchscript"]


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"


def build(name: str):
    import torch

    library, _ = ARCHITECTURES[name]
    torch.manual_seed(0)
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False).eval()
    import torchvision

    if library == "torchvision.segmentation":
        return segmentation_out(getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None))
    return getattr(torchvision.models, name)(weights=None).eval()


def segmentation_out(segmenter):
    """torchvision's segmenters return a dict; export its ``out`` tensor alone (the class is
    made here because torch is imported only when a model is built)."""
    import torch

    class OutTensor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.segmenter = segmenter

        def forward(self, x):
            return self.segmenter(x)["out"]

    return OutTensor().eval()


def export(name: str, exporter: str, path: Path) -> None:
    import torch

    side = ARCHITECTURES[name][1]
    torch.onnx.export(
        build(name),
        (torch.zeros(1, 3, side, side),),
        str(path),
        input_names=["input"],
        output_names=["output"],
        opset_version=17 if exporter == "torchscript" else 18,
        dynamo=exporter == "dynamo",
        # the dynamo exporter writes weights to model.onnx.data by default; edgekit's ONNX
        # reader does not load external data yet, and this bench measures the graph
        **({"external_data": False} if exporter == "dynamo" else {}),
    )


def samples(name: str, count: int, seed: int) -> np.ndarray:
    side = ARCHITECTURES[name][1]
    return np.random.default_rng(seed).standard_normal((count, 3, side, side)).astype(np.float32)


def outside_xnnpack(tflite: Path) -> str:
    from edgekit.commands._report import op_counts
    from edgekit.converters.harness import xnnpack_delegation

    return op_counts(xnnpack_delegation(tflite.read_bytes()).cpu_op_counts()) or "none"


def ort_int8_sqnr(onnx_path: Path, work: Path, calibration: np.ndarray, test: np.ndarray) -> float:
    import onnxruntime as ort

    from edgekit.converters.verification import sqnr_db
    from tests.ort_int8 import ort_static_int8

    quantized = work / "ort_int8.onnx"
    ort_static_int8(onnx_path, quantized, "input", calibration)

    def run(path: Path) -> np.ndarray:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return np.stack([session.run(None, {"input": x[None]})[0] for x in test])

    return sqnr_db(run(onnx_path), run(quantized))


def convert_row(name: str, exporter: str, mode: str, onnx_path: Path, work: Path) -> Row:
    from edgekit.converters import convert, verify

    row = Row(name, exporter, mode)
    out = work / f"{mode}.tflite"
    options = {"quantize": "int8", "calibration": samples(name, CALIBRATION_SAMPLES, 1)} if mode == "int8" else {}
    start = time.perf_counter()
    try:
        result = convert(onnx_path, out, **options)
    except Exception as exc:  # a benchmark row, not a crash: every failure is a finding
        row.status, row.seconds = one_line(exc), time.perf_counter() - start
        return row
    row.seconds, row.partitions = time.perf_counter() - start, result.partitions
    try:
        row.sqnr_db = verify(onnx_path, out, data=samples(name, TEST_SAMPLES, 2), threads=1).min_sqnr_db
    except Exception as exc:
        row.status = f"verify: {one_line(exc)}"
    if result.partitions is not None and result.partitions > 1:
        row.outside_xnnpack = outside_xnnpack(out)
    return row


def worker(name: str, exporter: str) -> None:
    """One (model, exporter): prints one JSON row per mode."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx_path = work / "model.onnx"
        try:
            export(name, exporter, onnx_path)
        except Exception as exc:
            for mode in MODES:
                print(json.dumps(asdict(Row(name, exporter, mode, status=f"export: {one_line(exc)}"))), flush=True)
            return
        # onnxruntime's int8 first: it is printed even when edgekit's int8 then kills the process
        print(json.dumps({"reference": ort_reference(name, onnx_path, work)}), flush=True)
        for mode in MODES:
            print(json.dumps(asdict(convert_row(name, exporter, mode, onnx_path, work))), flush=True)


def ort_reference(name: str, onnx_path: Path, work: Path) -> dict:
    try:
        calibration, test = samples(name, CALIBRATION_SAMPLES, 1), samples(name, TEST_SAMPLES, 2)
        return {"ort_int8_sqnr_db": ort_int8_sqnr(onnx_path, work, calibration, test)}
    except Exception as exc:  # onnxruntime's quantizer fails on some exports; the row says so
        return {"ort_int8_error": one_line(exc)}


def run_isolated(name: str, exporter: str, timeout: float) -> list[Row]:
    command = [sys.executable, "-m", "bench.architectures", "--worker", name, exporter]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        out = done.stdout
        error = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
        ending = f"crashed (exit {done.returncode}): {error}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        ending = f"timeout ({timeout:.0f} s)"
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rows = [Row(**line) for line in lines if "reference" not in line]
    rows += [Row(name, exporter, m, status=ending) for m in MODES if m not in {r.mode for r in rows}]
    reference = next((line["reference"] for line in lines if "reference" in line), {})
    for row in rows:
        if row.mode == "int8":
            row.ort_int8_sqnr_db = reference.get("ort_int8_sqnr_db")
            row.ort_int8_error = reference.get("ort_int8_error", "")
    return rows


def cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def note(row: Row) -> list[str]:
    """Why a row is not clean: the error, the ops outside XNNPACK, onnxruntime's failure."""
    parts = [] if row.status == "ok" else [row.status]
    if row.outside_xnnpack != "-":
        parts.append(f"outside XNNPACK: {row.outside_xnnpack}")
    if row.ort_int8_error:
        parts.append(f"onnxruntime int8: {row.ort_int8_error}")
    return parts


def render(rows: list[Row]) -> str:
    header = ["model", "exporter", "mode", "converts", "SQNR dB", "ort int8 dB", "partitions", "seconds"]
    body = [
        [
            r.model,
            r.exporter,
            r.mode,
            "ok" if r.status == "ok" else "no",
            cell(r.sqnr_db),
            cell(r.ort_int8_sqnr_db),
            "-" if r.partitions is None else r.partitions,
            cell(r.seconds),
        ]
        for r in rows
    ]
    notes = [f"{r.model} {r.exporter} {r.mode}: {'; '.join(note(r))}" for r in rows if note(r)]
    return "\n".join([table(body, header), "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per model and exporter")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "EXPORTER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    import timm
    import torch

    print(f"torch {torch.__version__} (default exporter: {default_exporter()}), timm {timm.__version__}")
    print("inputs 1x3x224x224 except mobilevit_xxs 1x3x256x256; int8 calibration: 16 N(0,1) samples")
    start = time.perf_counter()
    rows: list[Row] = []
    for name in args.models:
        for exporter in exporters():
            new = run_isolated(name, exporter, args.timeout)
            rows += new
            for r in new:
                print(
                    f"  {r.model} {r.exporter} {r.mode}: SQNR {cell(r.sqnr_db)} dB, {r.partitions} partitions, "
                    f"{r.seconds and round(r.seconds, 1)} s; {'; '.join(note(r)) or 'clean'}",
                    flush=True,
                )
    print()
    print(render(rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
