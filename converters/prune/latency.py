"""Latency-aware allocation: what pruning each channel group saves in time, measured.

MACs are a poor proxy for latency: a MAC in a depthwise convolution or in an early,
high-resolution layer costs more time than one in a late 1x1 convolution (memory traffic, kernel
efficiency). Each group is pruned alone, the model converted to int8 and timed on LiteRT next to
the dense one (interleaved rounds, medians), which gives the time saved per MAC saved; the
allocator then prunes groups in proportion to it. Timings belong to the machine they ran on:
measure on the target device for a deployment."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgekit.converters.prune.channels import ROUND_TO, find_groups, prune_channels


@dataclass
class GroupLatency:
    group: str
    macs_saved: float  # fraction of the dense MACs saved by pruning the group alone
    time_saved: float  # fraction of the dense latency saved

    @property
    def efficiency(self) -> float:
        """Time saved per MAC saved, relative (1: the group's MACs cost the average)."""
        return self.time_saved / self.macs_saved if self.macs_saved > 0 else 0.0


def _invoker(path: Path, threads: int) -> Callable[[], None]:
    from edgekit.converters.harness import open_tflite

    session = open_tflite(path.read_bytes(), threads)
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.inputs:
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.integer):
            feeds[spec.name] = rng.integers(-20, 20, spec.shape).astype(dtype)
        else:
            feeds[spec.name] = rng.uniform(-1, 1, spec.shape).astype(dtype)
    session.run(feeds, raw=True)  # the inputs stay set: each timed call is the invoke alone
    return session.invoke_raw


def _medians(calls: dict[object, Callable[[], None]], rounds: int, runs: int) -> dict[object, float]:
    """Median seconds per call, measured in alternating rounds so machine noise hits all alike."""
    samples: dict[object, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for key, fn in calls.items():
            fn()
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def measure(
    model: onnx.ModelProto,
    ratio: float = 0.5,
    criterion: str = "l1",
    round_to: int = ROUND_TO,
    exclude: frozenset[str] = frozenset(),
    threads: int = 1,
    rounds: int = 20,
    runs: int = 10,
    progress: Callable[[str], None] | None = print,
    convert_options: dict | None = None,
) -> list[GroupLatency]:
    """Per group: the MACs and the int8 LiteRT latency saved by pruning it alone by ``ratio``
    (each model converted with ``convert_options`` too, e.g. ``{"stem_block": 4}``)."""
    from edgekit.converters.onnx.frontend import fixed_input_shapes
    from edgekit.converters.pipeline import convert
    from edgekit.converters.prune.budget import cost

    shapes = fixed_input_shapes(model, None)
    rng = np.random.default_rng(0)
    calibration = {name: rng.uniform(-1, 1, (4, *shape[1:])).astype(np.float32) for name, shape in shapes.items()}
    if len(calibration) == 1:
        calibration = next(iter(calibration.values()))
    options = convert_options or {}
    groups = find_groups(model, exclude)
    dense_macs = cost(model, "macs")
    macs: dict[object, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-latency-") as work:
        paths = {"dense": Path(work) / "dense.tflite"}
        convert(model, paths["dense"], quantize="int8", calibration=calibration, **options)
        for i, g in enumerate(groups):
            if progress:
                progress(f"latency: converting with group {i + 1}/{len(groups)} pruned ({g.name})")
            pruned = prune_channels(model, {g.name: ratio}, criterion, round_to=round_to)
            macs[i] = 1 - cost(pruned, "macs") / dense_macs
            paths[i] = Path(work) / f"g{i}.tflite"
            convert(pruned, paths[i], quantize="int8", calibration=calibration, **options)
        if progress:
            progress(f"latency: timing {len(paths)} models, {rounds} interleaved rounds at {threads} thread(s)")
        seconds = _medians({k: _invoker(p, threads) for k, p in paths.items()}, rounds, runs)
    dense = seconds["dense"]
    return [GroupLatency(g.name, macs[i], (dense - seconds[i]) / dense) for i, g in enumerate(groups)]


def format_table(table: list[GroupLatency]) -> str:
    lines = [f"{'group (producer)':<48} {'MACs saved':>10} {'time saved':>10} {'time/MAC':>8}"]
    for row in table:
        lines.append(f"{row.group[:48]:<48} {row.macs_saved:>10.2%} {row.time_saved:>10.2%} {row.efficiency:>8.2f}")
    return "\n".join(lines)
