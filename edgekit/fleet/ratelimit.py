"""Per-device message budgets at the fleet manager. A device reports a telemetry window every few
seconds and a few progress steps per deployment, and its agent drains its outbox at a paced rate
(``AgentConfig.send_rate``), so a device past ``rate`` messages a second for longer than its
burst allows is broken or hostile. The manager stores what it already received (acknowledged data
is never dropped) and bars the device from the broker for a while, doubling on each repeat, as
hosted MQTT services do: its flood stops at the broker instead of costing the others."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LONGEST_BAR_S = 3600.0


@dataclass(frozen=True)
class DeviceBudget:
    rate: float = 200.0  # messages a second, sustained
    burst: float = 2000.0  # messages at once, on top of the rate
    first_bar_s: float = 30.0  # the first bar; each repeat doubles it, up to an hour

    def __post_init__(self) -> None:
        finite = all(math.isfinite(v) for v in (self.rate, self.burst))  # inf would be no budget at all
        if not (finite and self.rate > 0 and self.burst >= 1 and 0 < self.first_bar_s <= LONGEST_BAR_S):
            raise ValueError(
                f"a device budget needs a finite rate > 0 and burst >= 1, and 0 < first_bar_s <= "
                f"{LONGEST_BAR_S:g} (got {self.rate}, {self.burst}, {self.first_bar_s})"
            )

    def describe(self) -> str:
        return f"{self.rate:g} messages a second (burst {self.burst:g})"


DEFAULT_BUDGET = DeviceBudget()


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    strikes: int = 0
    barred_until: float = 0.0


@dataclass
class DeviceLimiter:
    """A token bucket per device. ``on_flood(fleet, device, seconds)`` is called once when a device
    overdraws it, with how long to bar it; while that bar lasts, its messages still in flight are
    counted but not reported again."""

    budget: DeviceBudget
    on_flood: Callable[[str, str, float], None]
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def admit(self, fleet: str, device: str) -> bool:
        """Count one message from ``device``; False once it is over its budget."""
        now = self.clock()
        bucket = self._buckets.get((fleet, device))
        if bucket is None:
            bucket = self._buckets[(fleet, device)] = _Bucket(self.budget.burst, now)
        bucket.tokens = min(self.budget.burst, bucket.tokens + (now - bucket.stamp) * self.budget.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        if now >= bucket.barred_until:
            if now - bucket.barred_until > LONGEST_BAR_S:  # well behaved since its last bar
                bucket.strikes = 0
            bucket.strikes += 1
            seconds = min(LONGEST_BAR_S, self.budget.first_bar_s * 2 ** (bucket.strikes - 1))
            bucket.barred_until = now + seconds
            bucket.tokens = self.budget.burst  # a fresh budget once it is let back in
            self.on_flood(fleet, device, seconds)
        return False
