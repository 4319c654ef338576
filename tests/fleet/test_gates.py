"""judge_telemetry on hand-made telemetry windows: the power gate (over, under, no reading),
readiness (every device with enough windows on the new model), and the error-rate and p90
regression figures."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import InputError
from edgekit.fleet.gates import GATES, Evidence, Finding, Gates, gate, judge_telemetry

NEW, OLD = "n" * 64, "o" * 64


def w(device: str, sha: str = NEW, **fields) -> tuple[str, str]:
    """One (device, payload) row as the manager's store returns it (40 invocations unless told)."""
    return device, json.dumps(
        {"schema": 1, "seq": 1, "ts": 100.0, "window_s": 10, "count": 40, "sha256": sha, **fields}
    )


def G(**values) -> Gates:  # noqa: N802
    """Gates that judge on one window of one invocation per device (the defaults want more)."""
    return Gates(**{"telemetry_windows": 1, "min_invocations": 1, **values})


def power(watts: float | None, estimated: bool = True) -> dict:
    return {"watts": watts, "mj_per_inference": None, "source": "estimate", "estimated": estimated}


def test_power_over_the_limit_fails_naming_watts():
    rows = [w("a", power=power(7.0)), w("a", power=power(9.0)), w("b", power=power(8.0, estimated=False))]
    verdict = judge_telemetry(G(max_power_w=6.0), NEW, rows, [], ["a", "b"])
    assert verdict.ready and not verdict.passed
    assert verdict.figures == {"watts": 8.0, "watts_estimated": 2}  # the median over every window of the wave
    assert verdict.reasons == ["median power 8.00 W > 6.00 W (2 of 3 windows estimated, not measured)"]


def test_power_measured_only_ignores_estimates():
    rows = [w("a", power=power(7.0)), w("a", power=power(9.0)), w("b", power=power(5.0, estimated=False))]
    gates = G(max_power_w=6.0, power_measured_only=True)
    verdict = judge_telemetry(gates, NEW, rows, [], ["a", "b"])
    assert verdict.ready and verdict.passed and verdict.reasons == []
    assert verdict.figures == {"power_estimates_ignored": 2, "watts": 5.0, "watts_estimated": 0}
    rows.append(w("a", power=power(8.0, estimated=False)))
    verdict = judge_telemetry(gates, NEW, rows, [], ["a", "b"])
    assert not verdict.passed and verdict.reasons == ["median power 6.50 W > 6.00 W"]
    # only estimates: no verdict on power (it passed before: a gate without evidence), and the figures say why
    verdict = judge_telemetry(gates, NEW, rows[:2], [], ["a"])
    assert not verdict.ready and not verdict.passed and verdict.figures == {"power_estimates_ignored": 2}
    assert verdict.reasons == [
        "no verdict on power: the wave's devices sent no power reading from a sensor (estimates ignored)"
    ]


def test_power_under_the_limit_passes():
    rows = [w("a", power=power(4.0)), w("a", power=power(5.5)), w("b", power=power(5.0))]
    verdict = judge_telemetry(G(max_power_w=6.0), NEW, rows, [], ["a", "b"])
    assert verdict.ready and verdict.passed and verdict.reasons == []
    assert verdict.figures == {"watts": 4.875, "watts_estimated": 3}  # a: 4.75 (its median), b: 5.0


def test_one_device_cannot_outvote_its_wave_on_latency_or_power():
    """Medians of each device's own median: a device that floods windows is one vote."""
    flood = [w("c", power=power(1.0), latency={"p90_ms": 1.0}) for _ in range(50)]
    rows = [w(d, power=power(9.0), latency={"p90_ms": 9.0}) for d in ("a", "b")] + flood
    before = [w(d, OLD, latency={"p90_ms": 3.0}) for d in ("a", "b", "c")]
    gates = G(max_power_w=6.0, max_latency_regression=1.5)
    verdict = judge_telemetry(gates, NEW, rows, before, ["a", "b", "c"])
    assert verdict.figures["watts"] == 9.0 and verdict.figures["p90_ratio"] == 3.0 and not verdict.passed


def test_windows_without_a_power_reading_say_nothing_about_power():
    """...and no reading at all is no verdict (it passed before: a gate without evidence)."""
    rows = [w("a"), w("b", power=power(None)), w("b", power=None)]
    verdict = judge_telemetry(G(max_power_w=1.0), NEW, rows, [], ["a", "b"])
    assert not verdict.ready and not verdict.passed and "watts" not in verdict.figures
    assert verdict.reasons == ["no verdict on power: the wave's devices sent no power reading"]
    # the windows that have one are judged alone, and only those on the new model of the wave's devices
    rows += [w("a", power=power(3.0)), w("b", OLD, power=power(0.1)), w("c", power=power(0.1))]
    verdict = judge_telemetry(G(max_power_w=1.0), NEW, rows, [], ["a", "b"])
    assert verdict.figures == {"watts": 3.0, "watts_estimated": 1}
    assert verdict.reasons == ["median power 3.00 W > 1.00 W (1 of 1 windows estimated, not measured)"]


def test_not_ready_until_every_device_has_its_windows_on_the_new_model():
    gates = G(max_power_w=6.0, telemetry_windows=2)
    rows = [w("a", power=power(1.0)), w("a", power=power(1.0)), w("b", power=power(1.0))]
    rows += [w("b", OLD, power=power(1.0))] * 3  # windows on the old model do not count
    assert not judge_telemetry(gates, NEW, rows, [], ["a", "b"]).ready
    assert not judge_telemetry(gates, NEW, rows[:2], [], ["a", "b"]).ready  # b sent nothing yet
    assert judge_telemetry(gates, NEW, [*rows, w("b", power=power(1.0))], [], ["a", "b"]).ready
    # a device outside the wave neither holds it back nor counts
    assert judge_telemetry(gates, NEW, rows[:2], [], ["a"]).ready
    # without telemetry gates there is nothing to wait for
    assert judge_telemetry(G(telemetry_windows=5), NEW, [], [], ["a", "b"]).ready


def test_error_rate_figures():
    """Each device's own rate is judged (red team finding 7): pooled, b's 24% hid behind a's 3%
    as 15 / 150 = 10% of the wave, and a limit of 11% passed."""
    rows = [w("a", count=97, errors=3), w("b", count=38, errors=12), w("a", OLD, count=100, errors=100)]
    rows.append(w("c", count=10, errors=10))  # not in the wave
    verdict = judge_telemetry(G(max_error_rate=0.05), NEW, rows, [], ["a", "b"])
    assert verdict.figures["error_rate"] == pytest.approx(12 / 50)  # b's errors over its successes + errors
    assert not verdict.passed
    assert verdict.reasons == ["error rate 24.0% > 5.0% on 1 of 2 devices (b 24.0%; max_failures allows 0)"]
    assert not judge_telemetry(G(max_error_rate=0.11), NEW, rows, [], ["a", "b"]).passed
    assert judge_telemetry(G(max_error_rate=0.24), NEW, rows, [], ["a", "b"]).passed
    # a device's windows add up to its rate: 3 + 9 errors of 100 + 50 invocations
    rows.append(w("a", count=41, errors=9))
    verdict = judge_telemetry(G(max_error_rate=0.1, max_failures=0.5), NEW, rows, [], ["a", "b"])
    assert verdict.passed and verdict.figures["error_rate"] == pytest.approx(12 / 150)  # b is tolerated


def test_one_device_cannot_outvote_its_wave_on_error_rate():
    """Red team finding 7: nine devices fail every invocation, one reports a billion good ones.
    Pooled, the wave's rate was 4.5e-07 and the gate passed."""
    rows = [w(f"d{i}", count=0, errors=50) for i in range(9)] + [w("liar", count=10**9, errors=0)]
    devices = [d for d, _ in rows]
    verdict = judge_telemetry(G(max_error_rate=0.05), NEW, rows, [], devices)
    assert verdict.ready and not verdict.passed and verdict.figures == {"error_rate": 1.0}
    assert verdict.reasons == [
        "error rate 100.0% > 5.0% on 9 of 10 devices (d0 100.0%, d1 100.0%, d2 100.0%, d3 100.0%, d4 100.0%; "
        "max_failures allows 1)"
    ]


def test_the_error_rate_gate_tolerates_the_max_failures_share_of_devices():
    """A device over the error-rate limit counts like one whose deployment failed: the wave
    fails when more of its devices are over than max_failures allows. The figure is the rate
    that decides: the highest once the tolerated devices are set aside."""
    good = [w(f"g{i}", count=99, errors=1) for i in range(8)]  # 1%
    one_bad = [*good, w("g8", count=99, errors=1), w("bad", count=60, errors=40)]
    devices = [d for d, _ in one_bad]
    verdict = judge_telemetry(G(max_error_rate=0.05), NEW, one_bad, [], devices)  # 1 of 10 <= 10%
    assert verdict.passed and verdict.figures["error_rate"] == pytest.approx(0.01)
    verdict = judge_telemetry(G(max_error_rate=0.05, max_failures=0.0), NEW, one_bad, [], devices)
    assert not verdict.passed and verdict.figures["error_rate"] == pytest.approx(0.4)
    two_bad = [*good, w("bad2", count=90, errors=10), w("bad", count=60, errors=40)]
    verdict = judge_telemetry(G(max_error_rate=0.05), NEW, two_bad, [], [d for d, _ in two_bad])  # 2 of 10
    assert not verdict.passed and verdict.figures["error_rate"] == pytest.approx(0.1)  # the second worst
    assert verdict.reasons == [
        "error rate 10.0% > 5.0% on 2 of 10 devices (bad 40.0%, bad2 10.0%; max_failures allows 1)"
    ]


def test_p90_regression_figures():
    before = [w(d, OLD, count=10, latency={"p90_ms": p}) for d, p in (("a", 2.0), ("a", 4.0), ("b", 3.0))]
    before.append(w("c", OLD, latency={"p90_ms": 100.0}))  # another device's baseline is not ours
    after = [w("a", count=10, latency={"p90_ms": 6.0}), w("b", count=10, latency={"p90_ms": 4.5}), w("b", count=0)]
    verdict = judge_telemetry(G(max_latency_regression=1.5), NEW, after, before, ["a", "b"])
    assert verdict.figures["p90_ratio"] == pytest.approx(5.25 / 3.0)  # median new / median before
    assert not verdict.passed and verdict.reasons == ["p90 latency 1.75x the previous version's > 1.50x"]
    assert judge_telemetry(G(max_latency_regression=1.8), NEW, after, before, ["a", "b"]).passed
    # no baseline on the previous version: no ratio, and no verdict (missing evidence is not a pass)
    verdict = judge_telemetry(G(max_latency_regression=1.5), NEW, after, [], ["a", "b"])
    assert not verdict.ready and not verdict.passed and "p90_ratio" not in verdict.figures
    assert verdict.reasons == ["no verdict on latency: the wave's devices sent no p90 on the previous version"]


def test_a_baseline_p90_of_zero_is_no_baseline():
    """Red team finding 8: a previous version's median p90 of 0 ms divided by zero at every turn of
    the rollout loop. Nothing to compare against is missing evidence, not a pass."""
    after = [w("a", latency={"p90_ms": 9.0})]
    zero = [w("a", OLD, latency={"p90_ms": 0.0}), w("a", OLD, latency={"p90_ms": 0.0})]
    verdict = judge_telemetry(G(max_latency_regression=1.2), NEW, after, zero, ["a"])
    assert not verdict.ready and not verdict.passed and "p90_ratio" not in verdict.figures
    assert verdict.reasons == [
        "no verdict on latency: the previous version's median p90 is 0 ms, nothing to compare against"
    ]
    # a zero among positive p90s is a figure like any other: the median is what is compared
    verdict = judge_telemetry(
        G(max_latency_regression=1.2), NEW, after, [*zero, *[w("a", OLD, latency={"p90_ms": 10.0})] * 3], ["a"]
    )
    assert verdict.passed and verdict.figures == {"p90_ratio": 0.9}


def test_every_gate_at_once_lists_every_reason():
    after = [w("a", count=80, errors=20, latency={"p90_ms": 9.0}, power=power(12.0))]
    before = [w("a", OLD, count=100, latency={"p90_ms": 3.0})]
    gates = G(max_error_rate=0.1, max_latency_regression=2.0, max_power_w=10.0)
    verdict = judge_telemetry(gates, NEW, after, before, ["a"])
    assert verdict.figures == pytest.approx({"error_rate": 0.2, "p90_ratio": 3.0, "watts": 12.0, "watts_estimated": 1})
    assert [r.split()[0] for r in verdict.reasons] == ["error", "p90", "median"]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"max_failures": 1.5}, "max_failures=1.5 must lie in [0, 1]"),
        ({"max_error_rate": -0.01}, "max_error_rate=-0.01 must lie in [0, 1]"),
        ({"max_latency_regression": 0}, "max_latency_regression=0 must lie in (0, inf]"),
        ({"max_power_w": "6W"}, "max_power_w=6W must be a number"),
        ({"max_power_w": float("nan")}, "max_power_w=nan must be a number"),
        ({"wave_timeout_s": -1}, "wave_timeout_s=-1 must lie in (0, inf]"),
        ({"telemetry_windows": 0}, "telemetry_windows=0 must be a whole number of at least 1"),
        ({"telemetry_windows": 1.5}, "telemetry_windows=1.5 must be a whole number"),
        ({"min_invocations": 0}, "min_invocations=0 must be a whole number of at least 1"),
        ({"power_measured_only": "yes"}, "power_measured_only=yes must be true or false"),
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


# --- issue 18: gates judge evidence, and only evidence -------------------------------------------------


def test_no_telemetry_is_no_verdict_not_a_pass():
    for gates in (Gates(max_error_rate=0.05), Gates(max_power_w=5.0), Gates(max_latency_regression=1.2)):
        verdict = judge_telemetry(gates, NEW, [], [], ["a"], {"a": 50.0})
        assert not verdict.ready and not verdict.passed and verdict.reasons[0].startswith("no verdict yet")
    verdict = judge_telemetry(Gates(max_error_rate=0.05), NEW, [], [], [], {})
    assert not verdict.passed and verdict.reasons == ["no device of the wave committed the new model"]


def test_windows_from_before_the_switch_do_not_count():
    """A rollout reached done on a window sent before it started (the sha256 matched)."""
    gates = G(max_error_rate=0.05)
    early = [w("a", ts=100.0, window_s=10)]  # 90..100, the switch at 95: mixed, not evidence
    assert not judge_telemetry(gates, NEW, early, [], ["a"], {"a": 95.0}).ready
    assert judge_telemetry(gates, NEW, early, [], ["a"], {"a": 90.0}).ready
    assert not judge_telemetry(gates, NEW, early, [], ["a"], {}).ready  # a device that never switched


def test_windows_without_invocations_are_not_evidence():
    gates = G(max_error_rate=0.05, telemetry_windows=2)
    idle = [w("a", count=0, errors=0), w("a", count=0)]
    assert not judge_telemetry(gates, NEW, idle, [], ["a"], {"a": 0.0}).ready
    assert judge_telemetry(gates, NEW, [*idle, w("a"), w("a")], [], ["a"], {"a": 0.0}).ready


def test_default_gates_want_three_windows_and_thirty_invocations_per_device():
    gates = Gates(max_error_rate=0.05)
    assert (gates.telemetry_windows, gates.min_invocations) == (3, 30)
    rows = [w("a", count=5)] * 3
    assert not judge_telemetry(gates, NEW, rows, [], ["a"], {"a": 0.0}).ready  # 15 invocations
    assert judge_telemetry(gates, NEW, [*rows, w("a", count=15)], [], ["a"], {"a": 0.0}).ready


def test_malformed_windows_are_refused_at_ingest():
    from edgekit import protocol

    base = {"seq": 1, "ts": 1.0, "window_s": 10, "count": 5}
    for bad in (
        {"latency": {"p50_ms": 1.0}},  # no p90: the rollout loop failed twice a second on it
        {"latency": {"p50_ms": 1.0, "p90_ms": float("nan"), "p99_ms": 2.0}},
        {"latency": "fast"},
        {"errors": -1},
        {"count": -3},
        {"power": {"watts": -2.0}},
        {"power": 5},
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode("telemetry", json.dumps({"schema": 1, **base, **bad}).encode())
    good = {"latency": {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0}, "power": {"watts": None}}
    assert protocol.decode("telemetry", json.dumps({"schema": 1, **base, **good}).encode())["count"] == 5


def raw(device: str, **payload) -> tuple[str, str]:
    """A row with exactly these fields (no defaults filled in)."""
    return device, json.dumps({"sha256": NEW, **payload})


def test_gates_are_frozen_and_their_documented_defaults_hold():
    import dataclasses

    gates = Gates()
    with pytest.raises(dataclasses.FrozenInstanceError):
        gates.max_failures = 1.0  # type: ignore[misc]
    assert gates.wave_timeout_s == 900.0 and gates.max_failures == 0.1
    assert (gates.telemetry_windows, gates.min_invocations) == (3, 30)
    for share in (0, 1):  # the ends of [0, 1] are allowed
        Gates(max_failures=share, max_error_rate=share)


def test_without_telemetry_gates_a_wave_passes_and_without_devices_it_is_not_ready():
    verdict = judge_telemetry(Gates(), NEW, [], [], ["a"])
    assert (verdict.ready, verdict.passed) == (True, True)
    verdict = judge_telemetry(G(max_power_w=5.0), NEW, [], [], [])
    assert (verdict.ready, verdict.passed) == (False, False)
    assert verdict.reasons == ["no device of the wave committed the new model"]


def test_failed_invocations_count_toward_the_minimum():
    gates = G(max_error_rate=1.0, min_invocations=30)
    # 21 that succeeded + 9 that raised = 30 (21 | 9 = 29, 21 ^ 9 = 28)
    assert judge_telemetry(gates, NEW, [raw("a", count=21, errors=9)], [], ["a"]).ready
    assert not judge_telemetry(gates, NEW, [raw("a", count=21, errors=8)], [], ["a"]).ready
    # a field left out counts as zero
    assert not judge_telemetry(gates, NEW, [raw("a", errors=29)], [], ["a"]).ready
    assert judge_telemetry(gates, NEW, [raw("a", errors=30)], [], ["a"]).ready
    assert not judge_telemetry(gates, NEW, [raw("a", count=29)], [], ["a"]).ready
    assert judge_telemetry(gates, NEW, [raw("a", count=30)], [], ["a"]).ready


def test_error_rate_with_fields_left_out_and_with_no_evidence():
    gates = G(max_error_rate=0.5)
    verdict = judge_telemetry(gates, NEW, [raw("a", count=10)], [], ["a"])
    assert verdict.figures == {"error_rate": 0.0} and verdict.passed
    verdict = judge_telemetry(gates, NEW, [raw("a", errors=5)], [], ["a"])
    assert verdict.figures == {"error_rate": 1.0} and not verdict.passed
    verdict = judge_telemetry(gates, NEW, [], [], ["a"])
    assert verdict.figures == {"error_rate": 0.0} and not verdict.ready


def test_a_figure_equal_to_its_limit_passes():
    assert judge_telemetry(G(max_error_rate=0.1), NEW, [w("a", count=9, errors=1)], [], ["a"]).passed
    lat = {"p90_ms": 12.0}
    rows, before = [w("a", latency=lat)], [w("a", OLD, latency={"p90_ms": 10.0})]
    verdict = judge_telemetry(G(max_latency_regression=1.2), NEW, rows, before, ["a"])
    assert verdict.figures["p90_ratio"] == 1.2 and verdict.passed
    verdict = judge_telemetry(G(max_power_w=6.0), NEW, [w("a", power=power(6.0))], [], ["a"])
    assert verdict.figures["watts"] == 6.0 and verdict.passed


def test_only_windows_of_the_new_model_with_invocations_are_evidence():
    gates = G(max_error_rate=1.0, telemetry_windows=2)
    other = "a" * 64  # sorts before NEW: an ordering comparison would take it
    assert not judge_telemetry(gates, NEW, [w("a"), w("a", other)], [], ["a"]).ready
    assert not judge_telemetry(gates, NEW, [w("a"), w("a", count=0)], [], ["a"]).ready
    assert not judge_telemetry(gates, NEW, [w("a"), w("a", count=-1)], [], ["a"]).ready
    assert judge_telemetry(G(max_error_rate=1.0), NEW, [w("a", count=1)], [], ["a"]).ready


def test_the_baseline_is_every_other_model_and_never_the_new_one():
    gates = G(max_latency_regression=1.5)
    rows = [w("a", latency={"p90_ms": 20.0})]
    for sha in ("a" * 64, OLD):
        verdict = judge_telemetry(gates, NEW, rows, [w("a", sha, latency={"p90_ms": 10.0})], ["a"])
        assert verdict.figures == {"p90_ratio": 2.0} and not verdict.passed
    before = [w("a", OLD, latency={"p90_ms": 10.0}), w("a", NEW, latency={"p90_ms": 40.0})]
    before.append(w("a", NEW, latency={"p90_ms": 40.0}))
    assert judge_telemetry(gates, NEW, rows, before, ["a"]).figures == {"p90_ratio": 2.0}


def test_the_switch_time_against_windows_with_fields_left_out():
    gates = G(max_error_rate=1.0)

    def ready(row, switched):
        return judge_telemetry(gates, NEW, [row], [], ["a"], switched_at={"a": switched}).ready

    assert ready(raw("a", count=5), 0.0)  # no ts, no window_s: it started at 0
    assert not ready(raw("a", count=5), 0.5)
    assert ready(raw("a", count=5, ts=10.0), 10.0)  # no window_s: it started at ts
    assert not ready(raw("a", count=5, ts=10.0), 10.5)


def test_the_reason_names_at_most_five_devices_and_counts_them_all():
    devices = ["a", "b", "c", "d", "e", "f"]
    verdict = judge_telemetry(G(max_error_rate=1.0), NEW, [], [], devices)
    (reason,) = verdict.reasons
    assert reason.startswith("no verdict yet: 6 of 6 devices (a, b, c, d, e) have not sent")


def test_estimates_ignored_are_counted():
    rows = [w("a", power=power(5.0)), w("a", power=power(4.0, estimated=False))]
    verdict = judge_telemetry(G(max_power_w=6.0, power_measured_only=True), NEW, rows, [], ["a"])
    assert verdict.figures == {"power_estimates_ignored": 1, "watts": 4.0, "watts_estimated": 0}


# --- issue 22: the telemetry gates are a registry --------------------------------------------------


def test_each_telemetry_gate_is_registered_under_its_limit_in_report_order():
    from dataclasses import fields

    assert list(GATES) == ["max_error_rate", "max_latency_regression", "max_power_w"]
    assert set(GATES) <= {f.name for f in fields(Gates)}
    for limit in GATES:  # setting a gate's limit is what makes a rollout wait for telemetry
        assert Gates(**{limit: 1.0}).needs_telemetry
    assert not Gates().needs_telemetry
    with pytest.raises(ValueError, match="not a field of Gates"):
        gate("max_temperature_c")


def test_a_registered_gate_judges_the_evidence_of_the_wave_only(monkeypatch):
    """A gate sees the new model's windows of the wave's devices after their switch, and the
    other models' windows of the same devices as the baseline; its finding joins the verdict."""
    seen = []

    def thermal(gates: Gates, evidence: Evidence) -> Finding:
        seen.append(evidence)
        return Finding(failures=["too hot"], figures={"temp_c": 90.0})

    monkeypatch.setitem(GATES, "max_power_w", thermal)
    after = [w("a", ts=100.0, temp_c=90.0), w("a", ts=50.0), w("b", ts=100.0), w("a", OLD, ts=100.0)]
    before = [w("a", OLD, seq=7), w("c", OLD)]
    verdict = judge_telemetry(G(max_power_w=5.0), NEW, after, before, ["a"], {"a": 60.0})
    (evidence,) = seen
    assert [x["temp_c"] for x in evidence.new] == [90.0]  # not b (outside the wave), not before the switch
    assert [x["seq"] for x in evidence.previous] == [7]  # a's other model only, never c's
    assert verdict.ready and not verdict.passed
    assert (verdict.failures, verdict.figures) == (["too hot"], {"temp_c": 90.0})
    # a gate whose limit is not set is not asked
    assert judge_telemetry(G(max_error_rate=1.0), NEW, after, before, ["a"], {"a": 60.0}).passed and len(seen) == 1
