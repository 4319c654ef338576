"""One telemetry window: what the model did since the last one (count, throughput, latency
percentiles and errors, from the Session's profiling hooks) and what the board did (energy per
inference, marked ``estimated`` without a power sensor, temperature, throttling, CPU, memory)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from edgekit.devices.energy import EnergyMeter
from edgekit.runtime.profiling import InvokeRecord


def _cpu_times(root: str) -> tuple[float, float] | None:
    try:
        with open(os.path.join(root, "proc/stat")) as f:
            values = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values), values[3] + (values[4] if len(values) > 4 else 0.0)  # total, idle + iowait


def _memory_mb(root: str) -> dict[str, float]:
    info = {}
    try:
        with open(os.path.join(root, "proc/meminfo")) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    info[key] = float(rest.split()[0]) / 1024
    except (OSError, ValueError):
        return {}
    out = {"mem_total_mb": info.get("MemTotal"), "mem_available_mb": info.get("MemAvailable")}
    try:
        with open("/proc/self/statm") as f:
            out["rss_mb"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {k: round(v, 1) for k, v in out.items() if v is not None}


class TelemetryCollector:
    """A Session hook (``session.add_hook(collector)``) plus the board's sensors; ``window()``
    returns the fields of one telemetry message and starts the next window."""

    def __init__(self, root: str = "/", vcgencmd: str | None = None, power_rate_hz: float = 2.0, profile=None) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._latency_ms: list[float] = []
        self._errors = 0
        self._started = time.time()
        self._cpu = _cpu_times(root)
        self.meter: EnergyMeter | None
        try:
            self.meter = EnergyMeter(root=root, rate_hz=power_rate_hz, vcgencmd=vcgencmd, profile=profile)
            self.meter.begin()
        except Exception:  # no power source at all: windows carry no power figures
            self.meter = None

    def __call__(self, record: InvokeRecord) -> None:
        with self._lock:
            self._latency_ms.append(record.invoke_s * 1000)

    def error(self) -> None:
        with self._lock:
            self._errors += 1

    def window(self, sensors: dict | None = None) -> dict:
        with self._lock:
            latency, errors = np.asarray(self._latency_ms), self._errors
            self._latency_ms, self._errors = [], 0
        now = time.time()
        seconds, self._started = max(now - self._started, 1e-9), now
        out: dict = {
            "count": int(latency.size),
            "errors": errors,
            "throughput_ips": round(latency.size / seconds, 3),
            "window_s": round(seconds, 3),  # what it covered: a gate counts only windows begun after a switch
        }
        if latency.size:
            p50, p90, p99 = np.percentile(latency, [50, 90, 99])
            out["latency"] = {
                "p50_ms": round(float(p50), 3),
                "p90_ms": round(float(p90), 3),
                "p99_ms": round(float(p99), 3),
                "mean_ms": round(float(latency.mean()), 3),
            }
        if self.meter is not None:
            try:
                energy = self.meter.end()
                self.meter.begin()
                out["power"] = {
                    "watts": round(energy.mean_watts, 3),
                    "mj_per_inference": round(energy.millijoules_per_inference(int(latency.size)), 3)
                    if latency.size
                    else None,
                    "source": energy.source,
                    "estimated": energy.estimated,
                }
            except Exception:
                pass
        cpu = _cpu_times(self.root)
        if cpu and self._cpu and cpu[0] > self._cpu[0]:
            out["cpu_percent"] = round(100 * (1 - (cpu[1] - self._cpu[1]) / (cpu[0] - self._cpu[0])), 1)
        self._cpu = cpu
        out.update(_memory_mb(self.root))
        for key, value in (sensors or {}).items():
            if key == "thermal":
                out["temp_c"] = value.get("temp_c")
            elif key == "throttling":
                out["throttled"] = {k: v for k, v in value.items() if k != "throttled_bits"}
            elif key == "cpufreq":
                out["cpu_mhz"] = round(value["cpu_mhz"], 1)
        return out
