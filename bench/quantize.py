"""int8 benchmark: edgekit's full-integer TFLite against onnxruntime's quantize_static (QDQ,
per-channel, the same calibration samples), on the digits CNN (trained on real data) and on
torchvision MobileNetV2 / ResNet-18 (random weights, random calibration images).

For each model: SQNR of the int8 output against the fp32 ONNX output on held-out inputs,
accuracy where labels exist, file sizes, calibration time, and latency of LiteRT int8 against
onnxruntime int8 at 1 and 2 threads, measured interleaved in the same run.

onnxruntime's int8 CPU kernels multiply u8 by s8 in pairs summed in int16 on x86 CPUs without
VNNI, which saturates with 8-bit weights; its documentation's answer is ``reduce_range`` (7-bit
weights). ``--ort-reduce-range auto`` (the default) turns that on where the CPU lacks VNNI, so the
peer is run the way its authors advise on this machine. Its model's SQNR is given twice: as
onnxruntime runs it here, and under the exact QDQ arithmetic of the ONNX spec (basic graph
optimisations, no fused int8 kernels).

``--layer-plot FILE.svg`` draws the SQNR of every edgekit int8 layer against the fp32 ONNX
tensor it stands for, on the first held-out input, one panel per model (the picture in
docs/benchmarks.md; needs the ``bench`` extra, matplotlib).

    python -m bench.quantize [--calibration-samples 100] [--rounds 5] [--ort-reduce-range auto|on|off]
                             [--models digits,mobilenet_v2,resnet18] [--layer-plot FILE.svg]
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import export_torchvision, interleaved, save_svg, table, work_dir  # noqa: E402
from edgekit.converters import convert  # noqa: E402
from edgekit.converters.verification import TFLiteRunner, sqnr_db  # noqa: E402


def cpu_has_vnni() -> bool:
    """True where onnxruntime's x86 int8 kernels accumulate exactly (VNNI or AMX), and on non-x86 CPUs."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686"):
        return True
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags.split()))


def ort_quantize(fp32: Path, out: Path, input_name: str, calibration: np.ndarray, reduce_range: bool) -> float:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tests.ort_int8 import ort_static_int8

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    start = time.perf_counter()  # the quantization alone, as edgekit's conversion time is taken
    ort_static_int8(pre, out, input_name, calibration, preprocess=False, reduce_range=reduce_range)
    return time.perf_counter() - start


def session(path: Path, threads: int, exact_qdq: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if exact_qdq:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def evaluate(name, fp32, calib, test, labels, work, rounds, runs, reduce_range):
    input_name = session(fp32, 1).get_inputs()[0].name
    edge = work / f"{name}_int8.tflite"
    start = time.perf_counter()
    result = convert(str(fp32), edge, quantize="int8", calibration=calib)
    edge_seconds = time.perf_counter() - start
    ort_path = work / f"{name}_ort_int8.onnx"
    ort_seconds = ort_quantize(fp32, ort_path, input_name, calib, reduce_range)

    ref_sess, ort_sess, runner = session(fp32, 2), session(ort_path, 2), TFLiteRunner(edge.read_bytes())
    exact_sess = session(ort_path, 2, exact_qdq=True)
    ref, ours, theirs, exact = [], [], [], []
    for x in test:
        feed = {input_name: x[None]}
        ref.append(ref_sess.run(None, feed)[0])
        ours.append(list(runner(feed).values())[0])
        theirs.append(ort_sess.run(None, feed)[0])
        exact.append(exact_sess.run(None, feed)[0])
    ref, ours, theirs, exact = (np.concatenate(a) for a in (ref, ours, theirs, exact))
    quality = {
        "edgekit SQNR dB": sqnr_db(ref, ours),
        "onnxruntime SQNR dB": sqnr_db(ref, theirs),
        "exact QDQ SQNR dB": sqnr_db(ref, exact),
    }
    if labels is not None:
        quality["fp32 acc"] = float(np.mean(ref.argmax(1) == labels))
        quality["edgekit acc"] = float(np.mean(ours.argmax(1) == labels))
        quality["onnxruntime acc"] = float(np.mean(theirs.argmax(1) == labels))

    from ai_edge_litert.interpreter import Interpreter

    latency = []
    x = test[:1]
    for threads in (1, 2):
        interpreter = Interpreter(model_path=str(edge), num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], runner.prepare(input_name, x).astype(detail["dtype"]))
        ort_int8 = session(ort_path, threads)
        timings = interleaved(
            {"litert": interpreter.invoke, "ort": lambda s=ort_int8, f={input_name: x}: s.run(None, f)}, rounds, runs
        )
        latency.append((threads, timings["litert"], timings["ort"]))
    sizes = (fp32.stat().st_size, result.size_bytes, ort_path.stat().st_size)
    return quality, latency, sizes, (edge_seconds, ort_seconds), result.partitions


def load(name: str, work: Path, calibration_samples: int, rng: np.random.Generator):
    """(fp32 ONNX path, calibration inputs, held-out inputs, held-out labels or None)."""
    if name == "digits":
        fp32 = Path(str(files("edgekit") / "samples" / "digits_cnn.onnx"))
        data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
        return fp32, data["x_calib"][:calibration_samples], data["x_test"], data["y_test"]
    fp32 = work / f"{name}.onnx"
    export_torchvision(name, fp32)
    calib = rng.uniform(-2, 2, (calibration_samples, 3, 224, 224)).astype(np.float32)
    return fp32, calib, rng.uniform(-2, 2, (16, 3, 224, 224)).astype(np.float32), None


def quality_row(name: str, quality: dict, seconds, partitions) -> list:
    acc = ""
    if "fp32 acc" in quality:
        acc = " / ".join(f"{100 * quality[k]:.2f}" for k in ("fp32 acc", "edgekit acc", "onnxruntime acc"))
    sqnr = [f"{quality[k]:.2f}" for k in ("edgekit SQNR dB", "onnxruntime SQNR dB", "exact QDQ SQNR dB")]
    return [name, *sqnr, acc, partitions, f"{seconds[0]:.1f}", f"{seconds[1]:.1f}"]


def latency_rows(name: str, latency) -> list[list]:
    return [
        [
            name,
            threads,
            f"{ours:.3f}",
            f"{theirs:.3f}",
            f"{ours / theirs:.3f}",
            "yes" if ours / theirs <= 0.85 else "no",
        ]
        for threads, ours, theirs in latency
    ]


def size_row(name: str, sizes) -> list:
    fp32, ours, theirs = sizes
    return [name, f"{fp32 / 1e6:.3f}", f"{ours / 1e6:.3f}", f"{ours / fp32:.3f}", f"{theirs / 1e6:.3f}"]


def plot_layers(reports: dict, path: Path) -> None:
    """Per-layer SQNR in the order of the model's tensors, one panel per model, one colour per op."""
    import matplotlib.pyplot as plt

    ops = sorted({layer.op for report in reports.values() for layer in report.layers})
    colour = {op: f"C{i % 10}" for i, op in enumerate(ops)}  # one colour per op in every panel
    fig, axes = plt.subplots(len(reports), 1, figsize=(9, 3.2 * len(reports)), squeeze=False)
    for ax, (name, report) in zip(axes[:, 0], reports.items(), strict=True):
        sqnr = [layer.sqnr_db for layer in report.layers]
        ax.plot(sqnr, c="lightgrey", lw=1, zorder=1)
        for op in sorted({layer.op for layer in report.layers}):
            at = [i for i, layer in enumerate(report.layers) if layer.op == op]
            ax.scatter(at, [sqnr[i] for i in at], s=14, c=colour[op], label=op, zorder=2)
        ax.set(title=f"{name}, int8", xlabel="layer (order of the model's tensors)", ylabel="SQNR dB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    save_svg(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--models", default="digits,mobilenet_v2,resnet18")
    parser.add_argument(
        "--ort-reduce-range",
        choices=("auto", "on", "off"),
        default="auto",
        help="7-bit weights for onnxruntime's quantize_static; auto: on where the x86 CPU has no VNNI",
    )
    parser.add_argument("--layer-plot", type=Path, metavar="FILE.svg", help="draw per-layer SQNR into FILE.svg")
    args = parser.parse_args()
    vnni = cpu_has_vnni()
    reduce_range = {"on": True, "off": False}.get(args.ort_reduce_range, not vnni)
    work = work_dir("edgekit-quant-")
    rng = np.random.default_rng(0)
    rows_q, rows_l, rows_s, reports = [], [], [], {}
    for name in args.models.split(","):
        fp32, calib, test, labels = load(name, work, args.calibration_samples, rng)
        quality, latency, sizes, seconds, partitions = evaluate(
            name, fp32, calib, test, labels, work, args.rounds, args.runs, reduce_range
        )
        rows_q.append(quality_row(name, quality, seconds, partitions))
        rows_l += latency_rows(name, latency)
        rows_s.append(size_row(name, sizes))
        if args.layer_plot:
            from edgekit.converters.layer_compare import compare_layers

            input_name = session(fp32, 1).get_inputs()[0].name
            reports[name] = compare_layers(str(fp32), work / f"{name}_int8.tflite", {input_name: test[:1]})
    print(f"calibration: {args.calibration_samples} samples, min-max, per-channel weights")
    print(
        f"CPU int8 dot products: {'VNNI/AMX or not x86' if vnni else 'x86 without VNNI'}; "
        f"onnxruntime reduce_range={reduce_range} (--ort-reduce-range {args.ort_reduce_range})\n"
    )
    quality_header = ["model", "edgekit SQNR dB", "ORT SQNR dB", "ORT model, exact QDQ dB", "acc fp32/edgekit/ORT %"]
    print(table(rows_q, [*quality_header, "XNNPACK partitions", "edgekit s", "ORT s"]))
    print()
    print(table(rows_l, ["model", "threads", "LiteRT int8 ms", "ORT int8 ms", "ratio", "<= 0.85"]))
    print()
    print(table(rows_s, ["model", "fp32 ONNX MB", "edgekit int8 MB", "int8/fp32", "ORT QDQ MB"]))
    if args.layer_plot:
        plot_layers(reports, args.layer_plot)
        print(f"\nwrote {args.layer_plot}")


if __name__ == "__main__":
    main()
