"""Is the quantized model faster than the float one? Measured, not assumed: a small model, an
audio front end or a layer XNNPACK runs better in float can make int8 slower, and a user who
quantized for speed should hear it at conversion, not on the board."""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FASTER_ENOUGH = 0.7  # below this share of float32's time quantizing paid for itself in speed


@dataclass(frozen=True)
class SpeedComparison:
    mode: str  # the quantized model's mode: int8, int16x8, fp16, dynamic
    quantized_ms: float  # median latency, LiteRT with XNNPACK, on this machine
    float_ms: float
    threads: int

    @property
    def ratio(self) -> float:
        return self.quantized_ms / self.float_ms

    def summary(self) -> str:
        said = (
            f"speed on this machine ({self.threads} thread{'s' if self.threads > 1 else ''}): {self.mode} "
            f"{_time(self.quantized_ms)}, float32 {_time(self.float_ms)}: {self.mode} takes {self.ratio:.2f}x "
            "float32's time"
        )
        if self.ratio >= 1:
            return (
                said + f"; {self.mode} is not faster here: for speed ship float32 ({self.mode} keeps its smaller file)"
            )
        if self.ratio > FASTER_ENOUGH:
            return said + f"; little gained in speed ({self.mode} keeps its smaller file)"
        return said

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def _time(ms: float) -> str:
    return f"{ms * 1000:.1f} us" if ms < 0.1 else f"{ms:.3g} ms"


def compare_with_float(source, quantized: Path, mode: str, threads: int = 1, rounds: int = 3, **convert_options):
    """Convert ``source`` (what was quantized into ``quantized``) to float32 with the same
    ``convert_options`` (input shapes, I/O layout) and time both on LiteRT."""
    from edgekit.converters.pipeline import convert

    with tempfile.TemporaryDirectory(prefix="edgekit-speed-") as tmp:
        float_model = Path(tmp) / "float32.tflite"
        convert(source, float_model, **convert_options)
        ms = median_latencies({mode: quantized, "float32": float_model}, threads, rounds)
    return SpeedComparison(mode, ms[mode], ms["float32"], threads)


def median_latencies(models: dict[str, bytes | Path], threads: int = 1, rounds: int = 3) -> dict[str, float]:
    """Each model's median latency (ms) on LiteRT with XNNPACK, timed in alternating rounds so
    that the machine's noise hits every model alike; ``models`` maps names to files or bytes."""
    from edgekit.runtime.benchmark import benchmark

    with tempfile.TemporaryDirectory(prefix="edgekit-speed-") as tmp:
        paths = {}
        for k, (name, model) in enumerate(models.items()):
            if isinstance(model, bytes):
                Path(tmp, f"{k}.tflite").write_bytes(model)
                model = Path(tmp, f"{k}.tflite")
            paths[name] = os.fspath(model)
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, path in paths.items():
                times[name].append(benchmark(path, threads=threads, runs=10, min_secs=0.2, max_secs=30).p50_ms)
    return {name: statistics.median(found) for name, found in times.items()}
