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

    python bench/quantize.py [--calibration-samples 100] [--rounds 5] [--ort-reduce-range auto|on|off]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.ort_int8: the peer, made one way
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import export_torchvision, interleaved, table  # noqa: E402

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
        perm = runner.io_layout.get(input_name)
        interpreter.set_tensor(detail["index"], np.ascontiguousarray(np.transpose(x, perm) if perm else x))
        ort_int8 = session(ort_path, threads)
        timings = interleaved(
            {"litert": interpreter.invoke, "ort": lambda s=ort_int8, f={input_name: x}: s.run(None, f)}, rounds, runs
        )
        latency.append((threads, timings["litert"], timings["ort"]))
    sizes = (fp32.stat().st_size, result.size_bytes, ort_path.stat().st_size)
    return quality, latency, sizes, (edge_seconds, ort_seconds), result.partitions


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
    args = parser.parse_args()
    vnni = cpu_has_vnni()
    reduce_range = {"on": True, "off": False}.get(args.ort_reduce_range, not vnni)
    work = Path(tempfile.mkdtemp(prefix="edgekit-quant-"))
    rng = np.random.default_rng(0)
    rows_q, rows_l, rows_s = [], [], []
    for name in args.models.split(","):
        if name == "digits":
            fp32 = Path(str(files("edgekit") / "samples" / "digits_cnn.onnx"))
            data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
            calib, test, labels = data["x_calib"][: args.calibration_samples], data["x_test"], data["y_test"]
        else:
            fp32 = work / f"{name}.onnx"
            export_torchvision(name, fp32)
            calib = rng.uniform(-2, 2, (args.calibration_samples, 3, 224, 224)).astype(np.float32)
            test, labels = rng.uniform(-2, 2, (16, 3, 224, 224)).astype(np.float32), None
        quality, latency, sizes, seconds, partitions = evaluate(
            name, fp32, calib, test, labels, work, args.rounds, args.runs, reduce_range
        )
        acc = ""
        if labels is not None:
            acc = (
                f"{100 * quality['fp32 acc']:.2f} / {100 * quality['edgekit acc']:.2f} / "
                f"{100 * quality['onnxruntime acc']:.2f}"
            )
        rows_q.append(
            [
                name,
                f"{quality['edgekit SQNR dB']:.2f}",
                f"{quality['onnxruntime SQNR dB']:.2f}",
                f"{quality['exact QDQ SQNR dB']:.2f}",
                acc,
                partitions,
                f"{seconds[0]:.1f}",
                f"{seconds[1]:.1f}",
            ]
        )
        for threads, ours, theirs in latency:
            rows_l.append(
                [
                    name,
                    threads,
                    f"{ours:.3f}",
                    f"{theirs:.3f}",
                    f"{ours / theirs:.3f}",
                    "yes" if ours / theirs <= 0.85 else "no",
                ]
            )
        rows_s.append(
            [
                name,
                f"{sizes[0] / 1e6:.3f}",
                f"{sizes[1] / 1e6:.3f}",
                f"{sizes[1] / sizes[0]:.3f}",
                f"{sizes[2] / 1e6:.3f}",
            ]
        )
    print(f"calibration: {args.calibration_samples} samples, min-max, per-channel weights")
    print(
        f"CPU int8 dot products: {'VNNI/AMX or not x86' if vnni else 'x86 without VNNI'}; "
        f"onnxruntime reduce_range={reduce_range} (--ort-reduce-range {args.ort_reduce_range})\n"
    )
    print(
        table(
            rows_q,
            [
                "model",
                "edgekit SQNR dB",
                "ORT SQNR dB",
                "ORT model, exact QDQ dB",
                "acc fp32/edgekit/ORT %",
                "XNNPACK partitions",
                "edgekit s",
                "ORT s",
            ],
        )
    )
    print()
    print(table(rows_l, ["model", "threads", "LiteRT int8 ms", "ORT int8 ms", "ratio", "<= 0.85"]))
    print()
    print(table(rows_s, ["model", "fp32 ONNX MB", "edgekit int8 MB", "int8/fp32", "ORT QDQ MB"]))


if __name__ == "__main__":
    main()
