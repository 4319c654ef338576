"""A benchmark that reports what LiteRT's benchmark_model reports: model size, init time,
first inference, warm-up average, then count/min/max/mean/std/percentiles and throughput."""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.runtime.profiling import peak_rss_mb
from edgekit.runtime.session import Session, load

if TYPE_CHECKING:
    from edgekit.progress import Progress


@dataclass
class BenchmarkResult:
    model: str
    backend: str
    threads: int
    model_size_mb: float
    init_ms: float
    first_inference_ms: float
    warmup_avg_ms: float
    count: int
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    throughput_ips: float
    peak_rss_mb: float
    delegate_partitions: int | None

    def as_dict(self) -> dict:
        return asdict(self)

    def report(self) -> str:
        us = 1000.0
        return "\n".join(
            [
                f"The input model file size (MB): {self.model_size_mb:.6g}",
                f"Backend: {self.backend}, threads: {self.threads}, delegate partitions: {self.delegate_partitions}",
                f"Initialized session in {self.init_ms:.3f}ms.",
                f"count={self.count} first={self.first_inference_ms * us:.0f} min={self.min_ms * us:.0f} "
                f"max={self.max_ms * us:.0f} avg={self.mean_ms * us:.1f} std={self.std_ms * us:.0f} (us)",
                f"Percentiles (us): p50={self.p50_ms * us:.0f} p90={self.p90_ms * us:.0f} p95={self.p95_ms * us:.0f} "
                f"p99={self.p99_ms * us:.0f}",
                f"Inference timings in us: Init: {self.init_ms * us:.0f}, First inference: "
                f"{self.first_inference_ms * us:.0f}, Warmup (avg): {self.warmup_avg_ms * us:.1f}, "
                f"Inference (avg): {self.mean_ms * us:.1f}",
                f"Throughput: {self.throughput_ips:.2f} inferences/s",
                f"Peak memory (RSS, MB): {self.peak_rss_mb:.1f}",
            ]
        )


DEFAULT_MAX_SECS = 150.0  # the timed runs stop here, whatever ``runs`` asks
MAX_RUNS = 10_000_000  # far past what max_secs lets run; a bound so a typo is refused, not "days left"
MAX_WARMUP = 100_000


class BenchmarkSettingError(ValueError):
    """A benchmark parameter out of its range: ``parameter`` names it, ``rule`` says what it takes."""

    def __init__(self, parameter: str, rule: str, value: object) -> None:
        super().__init__(f"{parameter} {rule}, not {value!r}")
        self.parameter, self.rule, self.value = parameter, rule, value


def check_settings(runs: int, warmup: int, min_secs: float, max_secs: float) -> None:
    """Refuse counts and times the timing loops cannot honour (NaN, infinity, negative, absurd)."""
    for name, count, low, high in (("runs", runs, 1, MAX_RUNS), ("warmup", warmup, 0, MAX_WARMUP)):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not low <= count <= high:
            raise BenchmarkSettingError(name, f"must be a whole number from {low} to {high}", count)
    if not _finite(max_secs) or max_secs <= 0:
        raise BenchmarkSettingError("max_secs", "must be a finite number of seconds above 0", max_secs)
    if not _finite(min_secs) or not 0 <= min_secs <= max_secs:
        raise BenchmarkSettingError("min_secs", f"must be a number of seconds from 0 to {max_secs:g}", min_secs)


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def random_inputs(session: Session, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in session.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if np.issubdtype(spec.dtype, np.integer) and spec.quant is None:
            info = np.iinfo(spec.dtype)
            feeds[spec.name] = rng.integers(max(info.min, -128), min(info.max, 127), shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def benchmark(
    path: str | os.PathLike,
    *,
    backend: str = "auto",
    threads: int | None = None,
    xnnpack: bool = True,
    delegate: str | None = None,
    runs: int = 50,
    warmup: int = 1,
    min_secs: float = 1.0,
    max_secs: float = DEFAULT_MAX_SECS,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """``progress`` (edgekit.progress) counts the timed runs; its total is estimated from the warm-up."""
    check_settings(runs, warmup, min_secs, max_secs)
    start = time.perf_counter()
    session = load(path, backend=backend, threads=threads, delegate=delegate, xnnpack=xnnpack)
    init = time.perf_counter() - start
    session.run(random_inputs(session))  # sets the inputs; timed below as the first inference
    first = _timed(session)
    warm = _warm_up(session, warmup)
    if progress is not None:
        per_run = max(float(np.mean(warm)), 1e-9)
        progress.set_total(max(runs, min(math.ceil(min_secs / per_run), math.ceil(max_secs / per_run))))
    times = _timed_runs(session, runs, min_secs, max_secs, progress)
    if progress is not None:
        progress.set_total(len(times))
    ms = np.array(times) * 1000
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    result = BenchmarkResult(
        model=str(path),
        backend=session.backend,
        threads=session.threads,
        model_size_mb=Path(path).stat().st_size / 1e6,
        init_ms=init * 1000,
        first_inference_ms=first * 1000,
        warmup_avg_ms=float(np.mean(warm)) * 1000,
        count=len(ms),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        throughput_ips=float(len(ms) / (ms.sum() / 1000)),
        peak_rss_mb=peak_rss_mb(),
        delegate_partitions=session.delegated_partitions(),
    )
    session.close()
    return result


def _timed(session: Session) -> float:
    """Seconds one inference on the inputs already set takes."""
    t = time.perf_counter()
    session.invoke_raw()
    return time.perf_counter() - t


def _warm_up(session: Session, warmup: int, seconds: float = 0.5) -> list[float]:
    """At least ``warmup`` runs, and at least one, for at least ``seconds``: their times."""
    warm = []
    deadline = time.perf_counter() + seconds
    while len(warm) < warmup or time.perf_counter() < deadline:
        warm.append(_timed(session))
        if len(warm) >= max(warmup, 1) and time.perf_counter() >= deadline:
            break
    return warm


def _timed_runs(
    session: Session, runs: int, min_secs: float, max_secs: float, progress: Progress | None
) -> list[float]:
    """At least ``runs`` runs for at least ``min_secs``, stopping after ``max_secs``: their times."""
    times = []
    begin = time.perf_counter()
    while len(times) < runs or time.perf_counter() - begin < min_secs:
        times.append(_timed(session))
        if progress is not None:
            progress.update()
        if time.perf_counter() - begin > max_secs:
            break
    return times
