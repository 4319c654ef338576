"""Runtime overhead benchmark.

1. Session.run (with a LatencyWindow hook registered) against a bare interpreter.invoke()
   loop with preset tensors, on MobileNetV2 fp32 and on a tiny model: relative overhead and
   microseconds per call.
2. `edgekit bench`'s mean latency against a hand-timed invoke loop on the same model.

Everything in the same process and run, interleaved; read the ratios.

    python -m bench.runtime [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table, work_dir  # noqa: E402


def mobilenet_v2(work: Path) -> Path:
    import torch
    import torchvision

    from edgekit.converters import convert

    torch.manual_seed(0)
    onnx_path = work / "mobilenet_v2.onnx"
    torch.onnx.export(
        torchvision.models.mobilenet_v2(weights=None).eval(),
        torch.zeros(1, 3, 224, 224),
        str(onnx_path),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
    )
    out = work / "mobilenet_v2.tflite"
    convert(str(onnx_path), out)
    return out


def tiny(work: Path) -> Path:
    from tests.runtime.models import float_model

    out = work / "tiny.tflite"
    out.write_bytes(float_model())
    return out


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def overhead(path: Path, rounds: int, n: int) -> tuple[float, float]:
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.runtime import LatencyWindow, load

    session = load(path, threads=1)
    session.add_hook(LatencyWindow())
    spec = session.inputs[0]
    x = np.random.default_rng(0).uniform(-1, 1, spec.shape).astype(np.float32)
    bare = Interpreter(model_path=str(path), num_threads=1)
    bare.allocate_tensors()
    bare.set_tensor(bare.get_input_details()[0]["index"], x)
    feeds = {spec.name: x}
    per_call(bare.invoke, max(n // 10, 1))
    per_call(lambda: session.run(feeds), max(n // 10, 1))
    bare_t, sess_t = [], []
    for _ in range(rounds):
        bare_t.append(per_call(bare.invoke, n))
        sess_t.append(per_call(lambda: session.run(feeds), n))
    return statistics.median(bare_t), statistics.median(sess_t)


def bench_vs_hand(path: Path) -> tuple[float, float]:
    from edgekit.runtime import load
    from edgekit.runtime.benchmark import benchmark

    result = benchmark(path, threads=1, runs=50, min_secs=2.0)
    session = load(path, threads=1)
    spec = session.inputs[0]
    session.run({spec.name: np.zeros(spec.shape, np.float32)})
    times = []
    end = time.perf_counter() + 2.0
    while time.perf_counter() < end or len(times) < 50:
        t = time.perf_counter()
        session.invoke_raw()
        times.append(time.perf_counter() - t)
    return result.mean_ms, 1000 * float(np.mean(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = work_dir("edgekit-runtime-")
    models = {"mobilenet_v2": (mobilenet_v2(work), 30), "tiny": (tiny(work), 20000)}
    rows = []
    for name, (path, n) in models.items():
        bare, sess = overhead(path, args.rounds, n)
        extra_us = (sess - bare) * 1e6
        rows.append(
            [name, f"{bare * 1e6:.1f}", f"{sess * 1e6:.1f}", f"{100 * (sess / bare - 1):+.2f}%", f"{extra_us:.1f}"]
        )
    print(table(rows, ["model", "bare invoke us", "Session.run us", "overhead", "extra us/call"]))
    print("goals: <= 5% on mobilenet_v2, <= 30 us per call on the tiny model (hooks registered)\n")
    bench_mean, hand_mean = bench_vs_hand(models["mobilenet_v2"][0])
    print(
        table(
            [["mobilenet_v2", f"{bench_mean:.3f}", f"{hand_mean:.3f}", f"{100 * (bench_mean / hand_mean - 1):+.2f}%"]],
            ["model", "edgekit bench mean ms", "hand-timed loop ms", "difference"],
        )
    )
    print("goal: within 5%\n")
    from edgekit.converters import convert
    from edgekit.runtime.benchmark import benchmark
    from edgekit.runtime.opprofile import profile_tflite

    fp32 = models["mobilenet_v2"][0]
    int8 = work / "mobilenet_v2_int8.tflite"
    calibration = np.random.default_rng(0).uniform(-2, 2, (16, 3, 224, 224)).astype(np.float32)
    convert(str(work / "mobilenet_v2.onnx"), int8, quantize="int8", calibration=calibration)
    rows = []
    for name, path in (("mobilenet_v2 fp32", fp32), ("mobilenet_v2 int8", int8)):
        ops = profile_tflite(path, threads=1, runs=20)
        measured = benchmark(path, threads=1, runs=50, min_secs=2.0).mean_ms
        rows.append([name, len(ops.ops), f"{ops.total_ms:.3f}", f"{measured:.3f}", f"{ops.total_ms / measured:.3f}"])
    print(table(rows, ["model", "ops", "per-op total ms", "whole model ms", "ratio"]))
    print("goal: per-op total within 20% of the whole-model latency")


if __name__ == "__main__":
    main()
