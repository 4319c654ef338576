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

Several ``--target-macs`` values prune every variant to each; ``--plot FILE.svg`` draws latency
against MACs, both relative to the dense model (the picture in docs/benchmarks.md; needs the
``bench`` extra, matplotlib).

    python -m bench.prune [--target-macs 0.5] [--rounds 10] [--round-to 1 8 16] [--no-latency]
                          [--stem-block 4] [--latency-round-to 64] [--plot FILE.svg]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import export_torchvision, interleaved, save_svg, table, work_dir  # noqa: E402
from edgekit.converters.prune.channels import ROUND_TO  # noqa: E402

DENSE = "dense"
PLAIN = "dense, plain conversion"


@dataclass(frozen=True)
class Variant:
    """One pruned model: an allocation (how the MACs budget is spread) at one target."""

    allocation: str  # "uniform, round-to 16", "latency, round-to 16", "latency, in blocks only"
    target_macs: float
    label: str  # unique across targets: the allocation, with the target when there are several


@dataclass
class Timing:
    model: str
    label: str
    allocation: str
    macs_kept: float  # reached fraction of the dense model's MACs
    threads: int
    dense_ms: float
    ms: float


def pruned_variants(args) -> list[Variant]:
    allocations = [f"uniform, round-to {r}" for r in args.round_to]
    if not args.no_latency:
        allocations += [f"latency, round-to {args.latency_round_to}", "latency, in blocks only"]
    several = len(args.target_macs) > 1
    return [
        Variant(allocation, target, f"{allocation}, {target:.0%} MACs" if several else allocation)
        for target in args.target_macs
        for allocation in allocations
    ]


def prune_variant(dense: Path, variant: Variant, args, options: dict):
    """(pruned ONNX model, reached fraction of the dense MACs)."""
    from edgekit.converters.prune import find_groups
    from edgekit.converters.prune.budget import prune_by_latency, prune_to_budget

    if variant.allocation.startswith("uniform"):
        round_to = int(variant.allocation.rsplit(" ", 1)[1])
        model, _, fraction = prune_to_budget(onnx.load(dense), variant.target_macs, round_to=round_to)
        return model, fraction
    blocks_only = variant.allocation == "latency, in blocks only"
    residual = frozenset(g.name for g in find_groups(onnx.load(dense)) if g.joins) if blocks_only else frozenset()
    model, _, fraction = prune_by_latency(
        onnx.load(dense), variant.target_macs, round_to=args.latency_round_to, exclude=residual, convert_options=options
    )
    return model, fraction


def convert_all(name: str, work: Path, variants: list[Variant], args, calibration) -> tuple[dict, dict]:
    """int8 TFLite paths by label (dense ones first) and the reached MACs fraction of each."""
    from edgekit.converters import convert

    dense = work / f"{name}.onnx"
    export_torchvision(name, dense)
    options = {"stem_block": args.stem_block} if args.stem_block else {}
    paths, fractions = {DENSE: work / f"{name}_dense_int8.tflite"}, {DENSE: 1.0}
    convert(str(dense), paths[DENSE], quantize="int8", calibration=calibration, **options)
    if options:
        paths[PLAIN], fractions[PLAIN] = work / f"{name}_dense_plain_int8.tflite", 1.0
        convert(str(dense), paths[PLAIN], quantize="int8", calibration=calibration)
    for variant in variants:
        pruned_model, fractions[variant.label] = prune_variant(dense, variant, args, options)
        pruned = work / f"{name}_pruned_{len(paths)}.onnx"
        onnx.save(pruned_model, pruned)
        paths[variant.label] = work / f"{name}_pruned_{len(paths)}_int8.tflite"
        convert(str(pruned), paths[variant.label], quantize="int8", calibration=calibration, **options)
    return paths, fractions


def time_all(name: str, paths: dict, fractions: dict, allocations: dict, x: np.ndarray, args) -> list[Timing]:
    from ai_edge_litert.interpreter import Interpreter

    timings = []
    for threads in (1, 2):
        calls = {}
        for label, path in paths.items():
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
            calls[label] = interpreter.invoke
        t = interleaved(calls, args.rounds, args.runs)
        for label in sorted(paths, key=lambda label: label == PLAIN):  # the reference last
            if label != DENSE:
                allocation = allocations.get(label, label)
                timings.append(Timing(name, label, allocation, fractions[label], threads, t[DENSE], t[label]))
    return timings


def speed_rows(timings: list[Timing]) -> list[list]:
    rows = []
    for m in timings:
        speedup = m.dense_ms / m.ms
        pruned = m.label != PLAIN
        goal = ("yes" if speedup >= 1.6 else "no") if pruned else "-"
        kept = f"{m.macs_kept:.1%}"
        rows.append([m.model, m.label, kept, m.threads, f"{m.dense_ms:.2f}", f"{m.ms:.2f}", f"{speedup:.2f}x", goal])
    return rows


def size_rows(name: str, paths: dict) -> list[list]:
    import zstandard

    rows = []
    for label, path in paths.items():
        data = path.read_bytes()
        zstd, gz = len(zstandard.ZstdCompressor(level=19).compress(data)), len(gzip.compress(data, 9))
        rows.append([name, label, f"{len(data) / 1e6:.2f}", f"{zstd / 1e6:.2f}", f"{gz / 1e6:.2f}"])
    return rows


def plot(timings: list[Timing], path: Path) -> None:
    """Latency against MACs, both relative to the dense model: one panel per thread count, one
    line per model and allocation through the dense point (1, 1)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, threads in zip(axes, (1, 2), strict=True):
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="latency in proportion to MACs")
        series = sorted({(m.model, m.allocation) for m in timings if m.threads == threads and m.label != PLAIN})
        for model, allocation in series:
            points = sorted(
                (m.macs_kept, m.ms / m.dense_ms)
                for m in timings
                if (m.model, m.allocation, m.threads) == (model, allocation, threads)
            )
            xs, ys = zip(*[*points, (1.0, 1.0)], strict=True)
            ax.plot(xs, ys, marker="o", label=f"{model}, {allocation}")
        ax.set(title=f"{threads} thread{'s' * (threads > 1)}", xlabel="MACs kept (of dense)", xlim=(0, 1.05))
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="int8 latency (of dense)", ylim=(0, 1.1))
    axes[0].legend(fontsize="small")
    save_svg(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-macs", type=float, nargs="+", default=[0.5])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--no-latency", action="store_true", help="skip the latency-aware variant")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stem-block", type=int, choices=(2, 4, 8), help="convert with --stem-block B")
    parser.add_argument("--latency-round-to", type=int, default=ROUND_TO, help="rounding of the latency-aware variants")
    parser.add_argument("--plot", type=Path, metavar="FILE.svg", help="draw latency against MACs into FILE.svg")
    args = parser.parse_args()

    work = work_dir("edgekit-prune-")
    calibration = np.random.default_rng(0).uniform(-2, 2, (16, 3, 224, 224)).astype(np.float32)
    variants = pruned_variants(args)
    allocations = {v.label: v.allocation for v in variants}
    timings, sizes = [], []
    for name in ("resnet18", "mobilenet_v2"):
        paths, fractions = convert_all(name, work, variants, args, calibration)
        x = calibration[:1].transpose(0, 2, 3, 1).copy()
        timings += time_all(name, paths, fractions, allocations, x, args)
        sizes += size_rows(name, paths)
    header = ["model", "allocation", "MACs kept", "threads", "dense int8 ms", "pruned int8 ms", "speed-up", ">= 1.6x"]
    print(table(speed_rows(timings), header))
    print()
    print(table(sizes, ["model", "variant", "int8 MB", "zstd MB", "gzip MB"]))
    if args.plot:
        plot(timings, args.plot)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
