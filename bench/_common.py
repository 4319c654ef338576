"""Timing helpers shared by the benchmarks: interleaved, repeated, median-based."""

from __future__ import annotations

import atexit
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def work_dir(prefix: str) -> Path:
    """A temporary folder for a bench's models, removed when the bench exits (a run leaves tens of MB)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def time_calls(fn: Callable[[], object], runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5, runs: int = 20) -> dict[str, float]:
    """Median latency (ms) of each function, measured in alternating rounds so machine noise
    hits every contender alike."""
    per: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        time_calls(fn, 1, warmup=5)
    for _ in range(rounds):
        for name, fn in fns.items():
            per[name].extend(time_calls(fn, runs, warmup=1))
    return {k: 1000 * statistics.median(v) for k, v in per.items()}


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*[str(c) for c in r]) for r in rows]
    return "\n".join(lines)


def export_torchvision(name: str, path) -> None:
    """torchvision ``name`` with random weights (seed 0), exported to ONNX opset 17 at 224x224."""
    import torch
    import torchvision

    from edgekit.converters.torch import export_onnx

    torch.manual_seed(0)
    export_onnx(getattr(torchvision.models, name)(weights=None), torch.zeros(1, 3, 224, 224), path)


def save_svg(fig, path) -> None:
    """An SVG that changes only when the figure does (fixed element ids, no date): the docs keep
    these files in git."""
    import matplotlib

    matplotlib.rcParams["svg.hashsalt"] = "edgekit"
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
