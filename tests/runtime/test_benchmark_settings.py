"""benchmark() refuses counts and times its loops cannot honour before it loads anything: NaN
or infinite seconds (a ValueError/OverflowError from math.ceil before), a negative warm-up, a run
count nobody means (no onnx here: this also runs with tflite-runtime)."""

from __future__ import annotations

import math

import pytest

from edgekit.runtime.benchmark import MAX_RUNS, BenchmarkSettingError, benchmark

GOOD = {"runs": 3, "warmup": 1, "min_secs": 0.0}


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("min_secs", math.nan),
        ("min_secs", math.inf),
        ("min_secs", 1e300),  # past max_secs: the runs would stop before it anyway
        ("min_secs", -1.0),
        ("warmup", -1),
        ("warmup", 2.5),
        ("runs", 0),
        ("runs", MAX_RUNS + 1),
        ("runs", 10**20),
        ("runs", True),
        ("max_secs", math.nan),
        ("max_secs", 0.0),
    ],
)
def test_settings_out_of_range_are_refused_before_the_model_loads(parameter, value):
    with pytest.raises(BenchmarkSettingError, match=f"^{parameter} must be") as error:
        benchmark("no-such-model.tflite", **{**GOOD, parameter: value})  # refused before load would fail
    assert error.value.parameter == parameter and isinstance(error.value, ValueError)


def test_the_edges_of_the_ranges_are_taken(tmp_path):
    from tests.runtime.models import float_model

    path = tmp_path / "float.tflite"
    path.write_bytes(float_model())
    result = benchmark(path, threads=1, runs=1, warmup=0, min_secs=0.0)
    assert result.count >= 1 and math.isfinite(result.mean_ms)
