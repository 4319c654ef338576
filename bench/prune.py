"""Pruning benchmark: channel pruning to 50% of the MACs on torchvision ResNet-18 and
MobileNetV2 (random weights), both converted to int8 TFLite, LiteRT latency pruned vs dense in
the same run (interleaved), at 1 and 2 threads; plus sizes and compressed sizes. Each
``--round-to`` value is one pruned variant (kept channel counts rounded to a multiple of it; 1 is
no rounding, 16 the default of edgekit prune); one more variant allocates the budget by measured
latency (each group pruned alone and timed first, rounded to 16: ``--allocation latency``), and
one more does the same with the residual groups (channels joined by Adds across blocks) excluded,
so only channels inside blocks shrink. All variants are timed in the same interleaved rounds.

``--stem-block B`` converts every model, the dense one included, with ``edgekit convert
--stem-block B`` (the first strided conv on 3 channels rewritten around SpaceToDepth, which x86
CPUs with AMX need: their int8 kernels fill 64-channel tiles) and times the latency-aware
variants that way too; the speed-up is then pruned vs dense both so converted, and the plain
dense conversion is timed alongside for reference. ``--latency-round-to N`` rounds the
latency-aware variants (64 matches AMX's tiles).

    python bench/prune.py [--target-macs 0.5] [--rounds 10] [--round-to 1 8 16] [--no-latency]
                          [--stem-block 4] [--latency-round-to 64]
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

from edgekit.converters.prune.channels import ROUND_TO  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--no-latency", action="store_true", help="skip the latency-aware variant")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stem-block", type=int, choices=(2, 4, 8), help="convert with --stem-block B")
    parser.add_argument("--latency-round-to", type=int, default=ROUND_TO, help="rounding of the latency-aware variants")
    args = parser.parse_args()

    import zstandard
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.converters import convert
    from edgekit.converters.prune import find_groups
    from edgekit.converters.prune.budget import prune_by_latency, prune_to_budget

    work = Path(tempfile.mkdtemp(prefix="edgekit-prune-"))
    calibration = np.random.default_rng(0).uniform(-2, 2, (16, 3, 224, 224)).astype(np.float32)
    rows, size_rows = [], []
    for name in ("resnet18", "mobilenet_v2"):
        dense = work / f"{name}.onnx"
        export_torchvision(name, dense)
        options = {"stem_block": args.stem_block} if args.stem_block else {}
        paths, fractions = {"dense": work / f"{name}_dense_int8.tflite"}, {}
        convert(str(dense), paths["dense"], quantize="int8", calibration=calibration, **options)
        if options:
            paths["dense, plain conversion"] = work / f"{name}_dense_plain_int8.tflite"
            convert(str(dense), paths["dense, plain conversion"], quantize="int8", calibration=calibration)
        variants = {f"uniform, round-to {r}": r for r in args.round_to}
        if not args.no_latency:
            variants[f"latency, round-to {args.latency_round_to}"] = "latency"
            variants["latency, in blocks only"] = "latency-blocks"
        residual = frozenset(g.name for g in find_groups(onnx.load(dense)) if g.joins)
        for label, round_to in variants.items():
            if isinstance(round_to, str):
                exclude = residual if round_to == "latency-blocks" else frozenset()
                pruned_model, _, fractions[label] = prune_by_latency(
                    onnx.load(dense),
                    args.target_macs,
                    round_to=args.latency_round_to,
                    exclude=exclude,
                    convert_options=options,
                )
            else:
                pruned_model, _, fractions[label] = prune_to_budget(
                    onnx.load(dense), args.target_macs, round_to=round_to
                )
            pruned = work / f"{name}_pruned_{len(paths)}.onnx"
            onnx.save(pruned_model, pruned)
            paths[label] = work / f"{name}_pruned_{len(paths)}_int8.tflite"
            convert(str(pruned), paths[label], quantize="int8", calibration=calibration, **options)
        x = calibration[:1].transpose(0, 2, 3, 1).copy()
        for threads in (1, 2):
            calls = {}
            for label, path in paths.items():
                interpreter = Interpreter(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
                calls[label] = interpreter.invoke
            t = interleaved(calls, args.rounds, args.runs)
            for label in [*variants, *(["dense, plain conversion"] if options else [])]:
                speedup = t["dense"] / t[label]
                rows.append(
                    [
                        name,
                        label,
                        f"{fractions[label]:.1%}" if label in fractions else "100.0%",
                        threads,
                        f"{t['dense']:.2f}",
                        f"{t[label]:.2f}",
                        f"{speedup:.2f}x",
                        ("yes" if speedup >= 1.6 else "no") if label in variants else "-",
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
    print(
        table(
            rows,
            ["model", "allocation", "MACs kept", "threads", "dense int8 ms", "pruned int8 ms", "speed-up", ">= 1.6x"],
        )
    )
    print()
    print(table(size_rows, ["model", "variant", "int8 MB", "zstd MB", "gzip MB"]))


if __name__ == "__main__":
    main()
