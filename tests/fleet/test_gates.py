"""judge_telemetry on hand-made telemetry windows: the power gate (over, under, no reading),
readiness (every device with enough windows on the new model), and the error-rate and p90
regression figures."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import InputError
from edgekit.fleet.gates import Gates, judge_telemetry

NEW, OLD = "n" * 64, "o" * 64


def w(device: str, sha: str = NEW, **fields) -> tuple[str, str]:
    """One (device, payload) row as the manager's store returns it."""
    return device, json.dumps({"schema": 1, "seq": 1, "ts": 1.0, "window_s": 10, "count": 0, "sha256": sha, **fields})


def power(watts: float | None, estimated: bool = True) -> dict:
    return {"watts": watts, "mj_per_inference": None, "source": "estimate", "estimated": estimated}


def test_power_over_the_limit_fails_naming_watts():
    rows = [w("a", power=power(7.0)), w("a", power=power(9.0)), w("b", power=power(8.0, estimated=False))]
    verdict = judge_telemetry(Gates(max_power_w=6.0), NEW, rows, [], ["a", "b"])
    assert verdict.ready and not verdict.passed
    assert verdict.figures == {"watts": 8.0, "watts_estimated": 2}  # the median over every window of the wave
    assert verdict.reasons == ["median power 8.00 W > 6.00 W (2 of 3 windows estimated, not measured)"]


def test_power_measured_only_ignores_estimates():
    rows = [w("a", power=power(7.0)), w("a", power=power(9.0)), w("b", power=power(5.0, estimated=False))]
    gates = Gates(max_power_w=6.0, power_measured_only=True)
    verdict = judge_telemetry(gates, NEW, rows, [], ["a", "b"])
    assert verdict.ready and verdict.passed and verdict.reasons == []
    assert verdict.figures == {"power_estimates_ignored": 2, "watts": 5.0, "watts_estimated": 0}
    rows.append(w("a", power=power(8.0, estimated=False)))
    verdict = judge_telemetry(gates, NEW, rows, [], ["a", "b"])
    assert not verdict.passed and verdict.reasons == ["median power 6.50 W > 6.00 W"]
    # only estimates: no verdict on power, and the figures say why
    verdict = judge_telemetry(gates, NEW, rows[:2], [], ["a"])
    assert verdict.passed and verdict.figures == {"power_estimates_ignored": 2}


def test_power_under_the_limit_passes():
    rows = [w("a", power=power(4.0)), w("a", power=power(5.5)), w("b", power=power(5.0))]
    verdict = judge_telemetry(Gates(max_power_w=6.0), NEW, rows, [], ["a", "b"])
    assert verdict.ready and verdict.passed and verdict.reasons == []
    assert verdict.figures == {"watts": 5.0, "watts_estimated": 3}


def test_windows_without_a_power_reading_say_nothing_about_power():
    rows = [w("a"), w("b", power=power(None)), w("b", power=None)]
    verdict = judge_telemetry(Gates(max_power_w=1.0), NEW, rows, [], ["a", "b"])
    assert verdict.ready and verdict.passed and verdict.reasons == [] and "watts" not in verdict.figures
    # the windows that have one are judged alone, and only those on the new model of the wave's devices
    rows += [w("a", power=power(3.0)), w("b", OLD, power=power(0.1)), w("c", power=power(0.1))]
    verdict = judge_telemetry(Gates(max_power_w=1.0), NEW, rows, [], ["a", "b"])
    assert verdict.figures == {"watts": 3.0, "watts_estimated": 1}
    assert verdict.reasons == ["median power 3.00 W > 1.00 W (1 of 1 windows estimated, not measured)"]


def test_not_ready_until_every_device_has_its_windows_on_the_new_model():
    gates = Gates(max_power_w=6.0, telemetry_windows=2)
    rows = [w("a", power=power(1.0)), w("a", power=power(1.0)), w("b", power=power(1.0))]
    rows += [w("b", OLD, power=power(1.0))] * 3  # windows on the old model do not count
    assert not judge_telemetry(gates, NEW, rows, [], ["a", "b"]).ready
    assert not judge_telemetry(gates, NEW, rows[:2], [], ["a", "b"]).ready  # b sent nothing yet
    assert judge_telemetry(gates, NEW, [*rows, w("b", power=power(1.0))], [], ["a", "b"]).ready
    # a device outside the wave neither holds it back nor counts
    assert judge_telemetry(gates, NEW, rows[:2], [], ["a"]).ready
    # without telemetry gates there is nothing to wait for
    assert judge_telemetry(Gates(telemetry_windows=5), NEW, [], [], ["a", "b"]).ready


def test_error_rate_figures():
    rows = [w("a", count=97, errors=3), w("b", count=38, errors=12), w("a", OLD, count=100, errors=100)]
    rows.append(w("c", count=10, errors=10))  # not in the wave
    verdict = judge_telemetry(Gates(max_error_rate=0.05), NEW, rows, [], ["a", "b"])
    assert verdict.figures["error_rate"] == pytest.approx(15 / 150)  # errors over successes + errors
    assert not verdict.passed and verdict.reasons == ["error rate 10.0% > 5.0%"]
    assert judge_telemetry(Gates(max_error_rate=0.11), NEW, rows, [], ["a", "b"]).passed


def test_p90_regression_figures():
    before = [w(d, OLD, count=10, latency={"p90_ms": p}) for d, p in (("a", 2.0), ("a", 4.0), ("b", 3.0))]
    before.append(w("c", OLD, latency={"p90_ms": 100.0}))  # another device's baseline is not ours
    after = [w("a", count=10, latency={"p90_ms": 6.0}), w("b", count=10, latency={"p90_ms": 4.5}), w("b", count=0)]
    verdict = judge_telemetry(Gates(max_latency_regression=1.5), NEW, after, before, ["a", "b"])
    assert verdict.figures["p90_ratio"] == pytest.approx(5.25 / 3.0)  # median new / median before
    assert not verdict.passed and verdict.reasons == ["p90 latency 1.75x the previous version's > 1.50x"]
    assert judge_telemetry(Gates(max_latency_regression=1.8), NEW, after, before, ["a", "b"]).passed
    # no baseline on the previous version: no ratio, no verdict on latency
    verdict = judge_telemetry(Gates(max_latency_regression=1.5), NEW, after, [], ["a", "b"])
    assert verdict.passed and "p90_ratio" not in verdict.figures


def test_every_gate_at_once_lists_every_reason():
    after = [w("a", count=80, errors=20, latency={"p90_ms": 9.0}, power=power(12.0))]
    before = [w("a", OLD, count=100, latency={"p90_ms": 3.0})]
    gates = Gates(max_error_rate=0.1, max_latency_regression=2.0, max_power_w=10.0)
    verdict = judge_telemetry(gates, NEW, after, before, ["a"])
    assert verdict.figures == pytest.approx({"error_rate": 0.2, "p90_ratio": 3.0, "watts": 12.0, "watts_estimated": 1})
    assert [r.split()[0] for r in verdict.reasons] == ["error", "p90", "median"]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"max_failures": 1.5}, "gate max_failures must lie in [0, 1] (got 1.5)"),
        ({"max_error_rate": -0.01}, "gate max_error_rate must lie in [0, 1]"),
        ({"max_latency_regression": 0}, "gate max_latency_regression must lie in (0, inf]"),
        ({"max_power_w": "6W"}, "gate max_power_w must be a number (got '6W')"),
        ({"max_power_w": float("nan")}, "gate max_power_w must be a number"),
        ({"wave_timeout_s": -1}, "gate wave_timeout_s must lie in (0, inf]"),
        ({"telemetry_windows": 0}, "gate telemetry_windows must be a whole number of at least 1 (got 0)"),
        ({"telemetry_windows": 1.5}, "gate telemetry_windows must be a whole number"),
        ({"power_measured_only": "yes"}, "gate power_measured_only must be true or false"),
        ({"max_watts": 3}, "unknown gate(s) ['max_watts']"),
    ],
)
def test_bad_gate_values_are_refused_naming_the_gate_and_its_range(values, says):
    with pytest.raises(InputError) as caught:
        Gates.from_dict(values)
    assert str(caught.value).startswith(says)


def test_gates_survive_their_own_dict():
    gates = Gates(max_error_rate=0.02, max_power_w=6, power_measured_only=True, telemetry_windows=3)
    assert Gates.from_dict(json.loads(json.dumps(gates.to_dict()))) == gates
