"""Profiling hooks: what one invoke cost, and a sliding-window aggregator over many."""

from __future__ import annotations

import resource
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InvokeRecord:
    """One ``Session.run``: when it started and where its time went (seconds)."""

    start_time: float
    invoke_s: float
    preprocess_s: float
    postprocess_s: float
    backend: str
    threads: int

    @property
    def total_s(self) -> float:
        return self.preprocess_s + self.invoke_s + self.postprocess_s


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class LatencyWindow:
    """Latency statistics over the last ``size`` invokes (a hook: ``session.add_hook(window.add)``)."""

    def __init__(self, size: int = 1000) -> None:
        self.records: deque[InvokeRecord] = deque(maxlen=size)
        self.total = 0

    def add(self, record: InvokeRecord) -> None:
        self.records.append(record)
        self.total += 1

    __call__ = add

    def clear(self) -> None:
        self.records.clear()

    def summary(self) -> dict[str, float]:
        if not self.records:
            return {"count": 0}
        ms = np.array([r.invoke_s for r in self.records]) * 1000
        span = self.records[-1].start_time + self.records[-1].total_s - self.records[0].start_time
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return {
            "count": len(ms),
            "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std()),
            "min_ms": float(ms.min()),
            "max_ms": float(ms.max()),
            "p50_ms": float(p50),
            "p90_ms": float(p90),
            "p95_ms": float(p95),
            "p99_ms": float(p99),
            "throughput_ips": float(len(ms) / span) if span > 0 else 0.0,
            "peak_rss_mb": peak_rss_mb(),
        }


def now() -> float:
    return time.perf_counter()
