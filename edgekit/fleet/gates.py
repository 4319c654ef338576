"""Health gates of a rollout wave: what must hold before the next wave starts. Failures come
from deployment progress; error rate, p90 latency and power from the telemetry windows the
wave's devices sent while serving the new model, compared with what they sent before.

Each telemetry gate is one check registered with ``@gate(limit)`` (as devices.sensors registers
its readers): it judges one aspect of the evidence and is on when its limit in ``Gates`` is set.
A new gate is a Gates field and one function here."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from edgekit.errors import InputError, ParameterError


@dataclass(frozen=True)
class Gates:
    max_failures: float = 0.1  # share of a wave's devices whose deployment failed (or error rate is over the limit)
    max_error_rate: float | None = None  # per device: failed / all its invocations on the new model
    max_latency_regression: float | None = None  # p90 new / p90 before (1.2 = 20% slower allowed)
    max_power_w: float | None = None  # median watts on the new model
    power_measured_only: bool = False  # judge power on sensor readings alone, not on estimates
    telemetry_windows: int = 3  # windows per device on the new model, after its switch, before a verdict
    min_invocations: int = 30  # ... holding at least this many invocations per device
    wave_timeout_s: float = 900.0  # then unfinished devices stop blocking if one of the wave committed

    @classmethod
    def from_dict(cls, values: dict | None) -> Gates:
        values = dict(values or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown gate(s) {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return cls(**values)

    def __post_init__(self) -> None:
        optional = {f.name for f in fields(self) if f.default is None}  # None: that gate is off
        for name in ("max_failures", "max_error_rate", "max_latency_regression", "max_power_w", "wave_timeout_s"):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ParameterError(f"{{{name}}} must be a number", **{name: value})
            if name in ("max_failures", "max_error_rate"):  # shares: 10% = 0.1
                if not 0 <= value <= 1:
                    raise ParameterError(f"{{{name}}} must lie in [0, 1]", **{name: value})
            elif value <= 0:
                raise ParameterError(f"{{{name}}} must lie in (0, inf]", **{name: value})
        for name in ("telemetry_windows", "min_invocations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{{{name}}} must be a whole number of at least 1", **{name: value})
        if not isinstance(self.power_measured_only, bool):
            raise ParameterError(
                "{power_measured_only} must be true or false", power_measured_only=self.power_measured_only
            )
        if self.power_measured_only and self.max_power_w is None:  # it qualifies the power gate alone
            raise ParameterError("{power_measured_only} goes with {max_power_w}: without a power gate it does nothing")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def needs_telemetry(self) -> bool:
        return any(getattr(self, limit) is not None for limit in GATES)


@dataclass
class Verdict:
    ready: bool  # enough evidence to judge
    passed: bool
    failures: list[str]  # gates the evidence so far breaks
    missing: list[str]  # the evidence still missing ("no verdict yet")
    figures: dict

    @property
    def reasons(self) -> list[str]:
        """What to tell a person: the failures if any, else what is missing."""
        return self.failures or self.missing


@dataclass(frozen=True)
class Evidence:
    """What a wave's telemetry gates judge, from the wave's devices only, per device: a device
    can lie about itself, so a gate that adds devices up must not let one outweigh the rest."""

    new_by_device: dict[str, list[dict]]  # windows on the new model, started after the switch, with invocations
    previous_by_device: dict[str, list[dict]]  # windows on any other model: the baseline

    @property
    def new(self) -> list[dict]:
        return [w for ws in self.new_by_device.values() for w in ws]

    @property
    def previous(self) -> list[dict]:
        return [w for ws in self.previous_by_device.values() for w in ws]


@dataclass
class Finding:
    """One gate's say: what it breaks, what evidence it still lacks, and the figures it judged."""

    failures: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


GateCheck = Callable[[Gates, Evidence], Finding]
GATES: dict[str, GateCheck] = {}  # the Gates limit that turns a gate on -> its check, in report order


def gate(limit: str):
    """Register a telemetry gate, judged when ``limit`` (a field of Gates) is set."""
    if limit not in {f.name for f in fields(Gates)}:
        raise ValueError(f"gate {limit!r} is not a field of Gates")

    def register(check: GateCheck) -> GateCheck:
        GATES[limit] = check
        return check

    return register


@gate("max_error_rate")
def error_rate(gates: Gates, evidence: Evidence) -> Finding:
    # each device's own rate, so a device that reports a billion good invocations speaks for
    # itself only; like failed deployments, more devices over the limit than the max_failures
    # share fail the gate. The figure is the rate that decides: the highest once the devices
    # max_failures tolerates are set aside.
    rates = {d: _error_rate(ws) for d, ws in evidence.new_by_device.items() if _sum_invocations(ws)}
    if not rates:
        return Finding(figures={"error_rate": 0.0})
    allowed = max(k for k in range(len(rates) + 1) if k / len(rates) <= gates.max_failures)
    ranked = sorted(rates, key=rates.get, reverse=True)
    rate = rates[ranked[min(allowed, len(ranked) - 1)]]
    finding = Finding(figures={"error_rate": rate})
    over = [d for d in ranked if rates[d] > gates.max_error_rate]
    if len(over) > allowed:
        finding.failures.append(
            f"error rate {rate:.1%} > {gates.max_error_rate:.1%} on {len(over)} of {len(rates)} devices "
            f"({', '.join(f'{d} {rates[d]:.1%}' for d in over[:5])}; max_failures allows {allowed})"
        )
    return finding


def _error_rate(windows: list[dict]) -> float:
    # a window's count is the invocations that succeeded (timed by the Session's hooks);
    # errors are the ones that raised, so the rate is errors over both
    return sum(int(w.get("errors", 0) or 0) for w in windows) / _sum_invocations(windows)


@gate("max_latency_regression")
def latency_regression(gates: Gates, evidence: Evidence) -> Finding:
    # one vote per device (the median of its own windows), then the median of the votes: a device
    # sending many windows outweighs nobody
    p90_new = _device_medians(evidence.new_by_device, lambda w: (w.get("latency") or {}).get("p90_ms"))
    p90_old = _device_medians(evidence.previous_by_device, lambda w: (w.get("latency") or {}).get("p90_ms"))
    finding = Finding()
    if not p90_old:
        finding.missing.append("no verdict on latency: the wave's devices sent no p90 on the previous version")
    elif statistics.median(p90_old) <= 0:  # nothing to divide by: no baseline, never a pass
        finding.missing.append(
            "no verdict on latency: the previous version's median p90 is 0 ms, nothing to compare against"
        )
    elif p90_new:
        ratio = statistics.median(p90_new) / statistics.median(p90_old)
        finding.figures["p90_ratio"] = ratio
        if ratio > gates.max_latency_regression:
            finding.failures.append(
                f"p90 latency {ratio:.2f}x the previous version's > {gates.max_latency_regression:.2f}x"
            )
    return finding


@gate("max_power_w")
def power(gates: Gates, evidence: Evidence) -> Finding:
    def reading(window: dict) -> float | None:
        measured = window.get("power") or {}
        if measured.get("watts") is None or (gates.power_measured_only and measured.get("estimated")):
            return None
        return measured["watts"]

    finding = Finding()
    windows = [w for w in evidence.new if (w.get("power") or {}).get("watts") is not None]
    estimated = sum(1 for w in windows if w["power"].get("estimated"))
    if gates.power_measured_only:
        finding.figures["power_estimates_ignored"] = estimated
    watts_by_device = _device_medians(evidence.new_by_device, reading)
    if not watts_by_device:  # no reading is no evidence, never a pass
        only = " from a sensor (estimates ignored)" if gates.power_measured_only else ""
        finding.missing.append(f"no verdict on power: the wave's devices sent no power reading{only}")
        return finding
    judged = len(windows) - (estimated if gates.power_measured_only else 0)
    counted = 0 if gates.power_measured_only else estimated
    watts = statistics.median(watts_by_device)
    finding.figures.update(watts=watts, watts_estimated=counted)
    if watts > gates.max_power_w:
        note = f" ({counted} of {judged} windows estimated, not measured)" if counted else ""
        finding.failures.append(f"median power {watts:.2f} W > {gates.max_power_w:.2f} W{note}")
    return finding


def _device_medians(by_device: dict[str, list[dict]], value) -> list[float]:
    """Each device's median of ``value`` over its windows (those that hold one): one per device."""
    medians = []
    for windows in by_device.values():
        values = [v for v in map(value, windows) if v is not None]
        if values:
            medians.append(statistics.median(values))
    return medians


def _windows(rows: list[tuple[str, str]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for device, payload in rows:
        out.setdefault(device, []).append(json.loads(payload))
    return out


def _invocations(window: dict) -> int:
    return int(window.get("count", 0)) + int(window.get("errors", 0) or 0)


def _sum_invocations(windows: list[dict]) -> int:
    return sum(_invocations(w) for w in windows)


def _started_after(window: dict, switched: float | None) -> bool:
    start = float(window.get("ts", 0.0)) - float(window.get("window_s", 0.0))
    return switched is not None and start >= switched


def judge_telemetry(
    gates: Gates,
    new_sha: str,
    after: list[tuple[str, str]],
    before: list[tuple[str, str]],
    devices: list[str],
    switched_at: dict[str, float] | None = None,
) -> Verdict:
    """``after``/``before``: (device, telemetry payload) rows on / before the new model.
    ``switched_at``: when each device switched (its own clock): only windows that started after
    it count as evidence, and only windows that saw invocations. Without enough evidence from
    every device the verdict is not ready; a missing baseline is missing evidence, not a pass."""
    if not gates.needs_telemetry:
        return Verdict(True, True, [], [], {})
    if not devices:
        return Verdict(False, False, ["no device of the wave committed the new model"], [], {})
    new = {
        d: [
            w
            for w in ws
            if w.get("sha256") == new_sha
            and _invocations(w) > 0
            and (switched_at is None or _started_after(w, switched_at.get(d)))
        ]
        for d, ws in _windows(after).items()
    }
    old = {d: [w for w in ws if w.get("sha256") != new_sha] for d, ws in _windows(before).items()}
    short = [
        d
        for d in devices
        if len(new.get(d, [])) < gates.telemetry_windows or _sum_invocations(new.get(d, [])) < gates.min_invocations
    ]
    verdict = Verdict(True, False, [], [], {})
    if short:
        verdict.missing.append(
            f"no verdict yet: {len(short)} of {len(devices)} devices ({', '.join(short[:5])}) have not sent "
            f"{gates.telemetry_windows} windows with {gates.min_invocations} invocations on the new model"
        )
    evidence = Evidence({d: new.get(d, []) for d in devices}, {d: old.get(d, []) for d in devices})
    for limit, check in GATES.items():
        if getattr(gates, limit) is not None:
            finding = check(gates, evidence)
            verdict.failures += finding.failures
            verdict.missing += finding.missing
            verdict.figures.update(finding.figures)
    verdict.ready = not verdict.missing
    verdict.passed = verdict.ready and not verdict.failures
    return verdict
