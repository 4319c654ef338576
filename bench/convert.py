"""Conversion benchmark: torchvision MobileNetV2 (random weights) -> fp32 TFLite.

Prints conversion time, file sizes, and LiteRT (XNNPACK) latency against onnxruntime on the
same model, same machine, same run, at 1 and 2 threads. Ratios are what to read: absolute
times move with the machine's load.

    python -m bench.convert [--model mobilenet_v2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import export_torchvision, interleaved, table, work_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.converters import convert

    work = work_dir("edgekit-bench-")
    onnx_path, tfl_path = work / f"{args.model}.onnx", work / f"{args.model}.tflite"
    export_torchvision(args.model, onnx_path)
    start = time.perf_counter()
    result = convert(str(onnx_path), tfl_path)
    seconds = time.perf_counter() - start
    print(
        f"{args.model}: converted in {seconds:.2f} s; ONNX {onnx_path.stat().st_size / 1e6:.2f} MB -> "
        f"TFLite {result.size_bytes / 1e6:.2f} MB; {result.transposes} TRANSPOSE, "
        f"{result.partitions} XNNPACK partition(s)"
    )

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    rows = []
    for threads in (1, 2):
        interpreter = Interpreter(model_path=str(tfl_path), num_threads=threads)
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]
        interpreter.set_tensor(index, x.transpose(0, 2, 3, 1).copy())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feeds = {"input": x}
        timings = interleaved(
            {"litert": interpreter.invoke, "onnxruntime": lambda s=session, f=feeds: s.run(None, f)},
            rounds=args.rounds,
            runs=args.runs,
        )
        ratio = timings["litert"] / timings["onnxruntime"]
        rows.append(
            [
                threads,
                f"{timings['litert']:.2f}",
                f"{timings['onnxruntime']:.2f}",
                f"{ratio:.3f}",
                "yes" if ratio <= 1.05 else "no",
            ]
        )
    print(table(rows, ["threads", "LiteRT fp32 ms", "onnxruntime fp32 ms", "ratio", "<= 1.05x"]))
    print(f"conversion {seconds:.2f} s ({'under' if seconds < 5 else 'over'} the 5 s goal)")


if __name__ == "__main__":
    main()
