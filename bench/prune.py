"""Pruning benchmark: channel pruning to 50% of the MACs on torchvision ResNet-18 and
MobileNetV2 (random weights), both converted to int8 TFLite, LiteRT latency pruned vs dense in
the same run (interleaved), at 1 and 2 threads; plus sizes and compressed sizes.

    python bench/prune.py [--target-macs 0.5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import export_torchvision, interleaved, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    import zstandard
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.converters import convert
    from edgekit.converters.prune.budget import prune_to_budget

    work = Path(tempfile.mkdtemp(prefix="edgekit-prune-"))
    calibration = np.random.default_rng(0).uniform(-2, 2, (16, 3, 224, 224)).astype(np.float32)
    rows, size_rows = [], []
    for name in ("resnet18", "mobilenet_v2"):
        dense = work / f"{name}.onnx"
        export_torchvision(name, dense)
        pruned_model, ratio, fraction = prune_to_budget(onnx.load(dense), args.target_macs)
        pruned = work / f"{name}_pruned.onnx"
        onnx.save(pruned_model, pruned)
        paths = {}
        for label, src in (("dense", dense), ("pruned", pruned)):
            paths[label] = work / f"{name}_{label}_int8.tflite"
            convert(str(src), paths[label], quantize="int8", calibration=calibration)
        x = calibration[:1].transpose(0, 2, 3, 1).copy()
        for threads in (1, 2):
            calls = {}
            for label, path in paths.items():
                interpreter = Interpreter(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
                calls[label] = interpreter.invoke
            t = interleaved(calls, args.rounds, args.runs)
            speedup = t["dense"] / t["pruned"]
            rows.append(
                [
                    name,
                    f"{fraction:.1%}",
                    threads,
                    f"{t['dense']:.2f}",
                    f"{t['pruned']:.2f}",
                    f"{speedup:.2f}x",
                    "yes" if speedup >= 1.6 else "no",
                ]
            )
        for label, path in paths.items():
            data = path.read_bytes()
            size_rows.append(
                [
                    name,
                    label,
                    f"{len(data) / 1e6:.2f}",
                    f"{len(zstandard.ZstdCompressor(level=19).compress(data)) / 1e6:.2f}",
                    f"{len(gzip.compress(data, 9)) / 1e6:.2f}",
                ]
            )
    print(table(rows, ["model", "MACs kept", "threads", "dense int8 ms", "pruned int8 ms", "speed-up", ">= 1.6x"]))
    print()
    print(table(size_rows, ["model", "variant", "int8 MB", "zstd MB", "gzip MB"]))


if __name__ == "__main__":
    main()
