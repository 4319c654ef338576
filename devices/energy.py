"""Energy windows: integrate power over a run.

``EnergyMeter.begin()`` starts sampling in a background thread; ``end()`` integrates the
samples (trapezoid rule) into joules. RAPL's cumulative counter is differenced instead, with
its wrap-around handled. Without a power sensor the board profile's idle/max power and the
CPU utilisation give an estimate, always marked ``estimated``."""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass

from edgekit.devices.boards import BoardProfile, detect
from edgekit.devices.sensors import SENSORS, SensorContext, context

POWER_READERS = ("hwmon_power", "jetson_ina3221", "pi5_pmic")


@dataclass
class EnergyWindow:
    seconds: float
    joules: float
    mean_watts: float
    samples: int
    source: str
    estimated: bool
    idle_watts: float | None = None

    def millijoules_per_inference(self, count: int, subtract_idle: bool = True) -> float:
        joules = self.joules
        if subtract_idle and self.idle_watts is not None:
            joules = max(joules - self.idle_watts * self.seconds, 0.0)
        return 1000 * joules / count if count else 0.0


def rapl_delta(previous: float, current: float, wrap: float) -> float:
    """µJ consumed between two counter readings, across at most one wrap."""
    return current - previous if current >= previous else current + wrap - previous


def integrate(samples: list[tuple[float, float]]) -> float:
    """Joules from (seconds, watts) samples: the trapezoid rule (a left or right sum is off by half
    a sample's change per step, which a ramping load makes systematic)."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(samples))


class EnergyMeter:
    def __init__(
        self,
        root: str | os.PathLike = "/",
        rate_hz: float = 20.0,
        profile: BoardProfile | None = None,
        vcgencmd: str | None = None,
        idle_watts: float | None = None,
    ) -> None:
        self.ctx: SensorContext = context(root, vcgencmd)
        self.period = 1.0 / rate_hz
        self.profile = profile or detect(root)
        self.idle_watts = idle_watts
        self._samples: list[tuple[float, float]] = []
        self._rapl: list[tuple[float, float, float]] = []
        self._cpu: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = self._pick_source()

    def _pick_source(self) -> str:
        for name in POWER_READERS:
            if SENSORS[name](self.ctx):
                return name
        if SENSORS["rapl"](self.ctx):
            return "rapl"
        return "estimate"

    def _sample(self) -> None:
        t = time.monotonic()
        if self.source in POWER_READERS:
            reading = SENSORS[self.source](self.ctx)
            if reading:
                self._samples.append((t, reading["watts"]))
        elif self.source == "rapl":
            reading = SENSORS["rapl"](self.ctx)
            if reading:
                self._rapl.append((t, reading["energy_uj"], reading["wrap_uj"]))
        else:
            reading = SENSORS["cpu_times"](self.ctx)
            if reading:
                self._cpu.append((t, reading["cpu_total"], reading["cpu_idle"]))

    def _loop(self) -> None:
        next_time = time.monotonic() + self.period
        while not self._stop.wait(max(next_time - time.monotonic(), 0.0)):
            self._sample()
            next_time = max(next_time + self.period, time.monotonic())  # late: no burst to catch up

    def begin(self) -> None:
        self._samples.clear()
        self._rapl.clear()
        self._cpu.clear()
        self._stop.clear()
        self._start = time.monotonic()
        # the window starts now, not when the thread first runs: a late first reading would drop
        # the energy before it (RAPL) or start the curve late
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="edgekit-energy", daemon=True)
        self._thread.start()

    def end(self) -> EnergyWindow:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        seconds = time.monotonic() - self._start
        if self.source in POWER_READERS:
            joules = integrate(self._samples)
            span = self._samples[-1][0] - self._samples[0][0] if len(self._samples) > 1 else 0.0
            estimated, count = False, len(self._samples)
        elif self.source == "rapl":
            joules = sum(rapl_delta(a[1], b[1], b[2]) for a, b in itertools.pairwise(self._rapl)) / 1e6
            span = self._rapl[-1][0] - self._rapl[0][0] if len(self._rapl) > 1 else 0.0
            estimated, count = False, len(self._rapl)
        else:
            joules, span, count = self._estimate()
            estimated = True
        mean = joules / span if span > 0 else 0.0
        idle = self.idle_watts if self.idle_watts is not None else (self.profile.idle_watts or None)
        return EnergyWindow(span or seconds, joules, mean, count, self.source, estimated, idle)

    def _estimate(self) -> tuple[float, float, int]:
        """Power from CPU utilisation between the board's idle and max power."""
        if len(self._cpu) < 2:
            return 0.0, 0.0, len(self._cpu)
        (t0, total0, idle0), (t1, total1, idle1) = self._cpu[0], self._cpu[-1]
        busy = 1.0 - (idle1 - idle0) / (total1 - total0) if total1 > total0 else 0.0
        watts = self.profile.idle_watts + busy * (self.profile.max_watts - self.profile.idle_watts)
        return watts * (t1 - t0), t1 - t0, len(self._cpu)
