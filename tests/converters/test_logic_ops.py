"""Masks and lookups exporters write with runtime inputs (issue 21): comparisons and boolean
logic, Where, Gather with computed indices and GlobalMaxPool on 3-D tensors, each checked
against onnxruntime. The patterns come from trained models: tf2onnx's div_no_nan in
basic-pitch, jax's one_hot and embedding lookup and a 1-D global max pool in magika."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.converters import convert, verify
from edgekit.converters.harness import TFLiteRunner
from edgekit.converters.tflite.importer import read_graph
from edgekit.converters.verification import sqnr_db
from tests.converters.onnx_models import model, rand

N = helper.make_node
F, I64, I32, U8, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.UINT8, TensorProto.BOOL


def typed_model(nodes, inputs: dict, outputs: dict, initializers: dict | None = None) -> onnx.ModelProto:
    """A model whose inputs and outputs are ``name: (TensorProto type, shape)``."""
    graph = helper.make_graph(
        nodes,
        "logic",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def run_both(m: onnx.ModelProto, feed: dict, tmp_path, **options) -> tuple[list, list, dict]:
    """(onnxruntime's outputs, the converted model's outputs, the ops it holds)."""
    out = tmp_path / "model.tflite"
    result = convert(m, out, **options)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = session.run(None, feed)
    got = TFLiteRunner(out.read_bytes())(feed)
    return reference, [got[o.name] for o in m.graph.output], result.ops


def grid_values(*shape: int, seed: int) -> np.ndarray:
    """Small integers as floats: comparisons see ties as often as wins and losses."""
    return np.random.default_rng(seed).integers(-2, 3, shape).astype(np.float32)


COMPARISONS = {
    "Equal": "EQUAL",
    "Greater": "GREATER",
    "Less": "LESS",
    "GreaterOrEqual": "GREATER_EQUAL",
    "LessOrEqual": "LESS_EQUAL",
}


@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_comparison_of_runtime_tensors_broadcasts_and_equals_onnxruntime(op, tmp_path):
    m = typed_model(
        [N(op, ["a", "b"], ["y"])],
        {"a": (F, (2, 3, 4, 5)), "b": (F, (1, 3, 1, 5))},
        {"y": (B, (2, 3, 4, 5))},
    )
    feed = {"a": grid_values(2, 3, 4, 5, seed=1), "b": grid_values(1, 3, 1, 5, seed=2)}
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert ops.get(COMPARISONS[op]) == 1, ops
    assert got.dtype == np.bool_ and np.array_equal(got, reference)
    assert 0 < reference.sum() < reference.size  # both answers occur


def test_logic_ops_and_where_with_broadcasting_condition(tmp_path):
    """Where(And(a > 0, Not(a > 1)) Or b == 0, x, y): the condition [1,1,4,5] broadcasts
    against x [1,3,4,5] and y [1,3,1,1]."""
    m = model(
        [
            N("Greater", ["a", "zero"], ["positive"]),
            N("Greater", ["a", "one"], ["above_one"]),
            N("Not", ["above_one"], ["at_most_one"]),
            N("And", ["positive", "at_most_one"], ["in_range"]),
            N("Equal", ["b", "zero"], ["b_zero"]),
            N("Or", ["in_range", "b_zero"], ["condition"]),
            N("Where", ["condition", "x", "y_in"], ["y"]),
        ],
        {"a": (1, 1, 4, 5), "b": (1, 1, 4, 5), "x": (1, 3, 4, 5), "y_in": (1, 3, 1, 1)},
        {"y": None},
        {"zero": np.float32(0.0), "one": np.float32(1.0)},
    )
    feed = {
        "a": grid_values(1, 1, 4, 5, seed=3) / 2,
        "b": grid_values(1, 1, 4, 5, seed=4),
        "x": rand(1, 3, 4, 5, seed=5),
        "y_in": rand(1, 3, 1, 1, seed=6),
    }
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert {"LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SELECT_V2"} <= set(ops), ops
    assert np.array_equal(got, reference)


def div_no_nan() -> onnx.ModelProto:
    """tf2onnx's div_no_nan(n, d) as basic-pitch holds it: Where(Equal(d, 0), 0, n / d)."""
    return model(
        [
            N("Equal", ["d", "zero"], ["d_zero"]),
            N("Div", ["n", "d"], ["q"]),
            N("Where", ["d_zero", "zero", "q"], ["y"]),
        ],
        {"n": (1, 16, 8), "d": (1, 1, 8)},
        {"y": None},
        {"zero": np.float32(0.0)},
    )


def test_div_no_nan_is_zero_where_the_denominator_is(tmp_path):
    d = rand(1, 1, 8, seed=8)
    d[..., ::3] = 0.0
    feed = {"n": rand(1, 16, 8, seed=7), "d": d}
    (reference,), (got,), ops = run_both(div_no_nan(), feed, tmp_path)
    assert ops.get("SELECT_V2") == 1 and ops.get("EQUAL") == 1, ops
    assert np.all(got[..., ::3] == 0.0) and np.all(np.isfinite(got))
    assert sqnr_db(reference, got) >= 60


def test_where_equal_in_int8_selects_int8_values_and_matches_onnxruntime(tmp_path):
    """In int8, EQUAL reads the float input (no int8 rule: a comparison has no parameters to
    keep) and SELECT_V2 between two int8 convolutions copies int8 bytes, both values on the
    output's parameters."""
    m = model(
        [
            N("Conv", ["x", "wa"], ["a"], pads=[1, 1, 1, 1]),
            N("Conv", ["x", "wb"], ["b"], pads=[1, 1, 1, 1]),
            N("Equal", ["x", "zero"], ["x_zero"]),
            N("Where", ["x_zero", "a", "b"], ["chosen"]),
            N("Conv", ["chosen", "wc"], ["y"]),
        ],
        {"x": (1, 4, 8, 8)},
        {"y": None},
        {
            "wa": rand(4, 4, 3, 3, seed=1, scale=0.3),
            "wb": rand(4, 4, 3, 3, seed=2, scale=0.3),
            "wc": rand(4, 4, 1, 1, seed=3, scale=0.5),
            "zero": np.float32(0),
        },
    )

    def samples(count: int, seed: int) -> np.ndarray:
        # values kept away from zero, a fifth of them exactly zero: the mask does not hang on rounding
        x = rand(count, 4, 8, 8, seed=seed)
        x = np.sign(x) * (0.5 + np.abs(x))
        x[np.random.default_rng(seed).random(x.shape) < 0.2] = 0.0
        return x.astype(np.float32)

    out = tmp_path / "where_int8.tflite"
    result = convert(m, out, quantize="int8", calibration=samples(32, 3))
    assert result.ops.get("SELECT_V2") == 1 and result.ops.get("EQUAL") == 1, result.ops
    report = verify(m, out, data={"x": samples(8, 4)})
    assert report.min_sqnr_db >= 25, report.table()
    graph = read_graph(out.read_bytes())
    select = next(n for n in graph.nodes if n.op == "SELECT_V2")
    assert [graph.tensors[t].dtype for t in select.inputs[1:] + select.outputs] == [np.int8] * 3


def test_jax_one_hot_embedding_matches_onnxruntime(tmp_path):
    """magika's one_hot(bytes, 257) @ W: Equal of the int32 input against a constant iota, Cast
    to float, MatMul."""
    rows = 9
    m = typed_model(
        [
            N("Unsqueeze", ["bytes", "last"], ["column"]),
            N("Equal", ["column", "iota"], ["hot"]),
            N("Cast", ["hot"], ["hot_f"], to=F),
            N("MatMul", ["hot_f", "w"], ["y"]),
        ],
        {"bytes": (I32, (1, 12))},
        {"y": (F, (1, 12, 4))},
        {"last": np.array([2], np.int64), "iota": np.arange(rows, dtype=np.int32), "w": rand(rows, 4, seed=1)},
    )
    feed = {"bytes": np.random.default_rng(2).integers(0, rows + 1, (1, 12)).astype(np.int32)}
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert ops.get("EQUAL") == 1, ops
    assert sqnr_db(reference, got) >= 60


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_with_runtime_negative_indices_wraps_them_as_onnx(axis, tmp_path):
    """ONNX counts a negative index from the end; TFLite's GATHER refuses one, so the indices
    are wrapped (FLOOR_MOD) before it."""
    shape = (7, 5, 3)
    m = typed_model(
        [N("Gather", ["x", "indices"], ["y"], axis=axis)],
        {"x": (F, shape), "indices": (I64, (2, 4))},
        {"y": (F, (*shape[:axis], 2, 4, *shape[axis + 1 :]))},
    )
    size = shape[axis]
    indices = np.random.default_rng(3).integers(-size, size, (2, 4)).astype(np.int64)
    assert (indices < 0).any() and (indices >= 0).any()
    feed = {"x": rand(*shape, seed=4), "indices": indices}
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert ops.get("GATHER") == 1 and ops.get("FLOOR_MOD") == 1, ops
    assert np.array_equal(got, reference)


def test_embedding_lookup_of_byte_indices_needs_no_wrapping(tmp_path):
    """Indices cast from uint8 cannot be negative: a lone GATHER from the constant table."""
    table = rand(256, 6, seed=5)
    m = typed_model(
        [N("Cast", ["bytes"], ["indices"], to=I64), N("Gather", ["table", "indices"], ["y"], axis=0)],
        {"bytes": (U8, (1, 10))},
        {"y": (F, (1, 10, 6))},
        {"table": table},
    )
    feed = {"bytes": np.random.default_rng(6).integers(0, 256, (1, 10)).astype(np.uint8)}
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert ops.get("GATHER") == 1 and "FLOOR_MOD" not in ops, ops
    assert np.array_equal(got, reference)


def test_global_max_pool_of_a_3d_tensor_matches_onnxruntime(tmp_path):
    m = model(
        [N("Conv", ["x", "w"], ["c"]), N("GlobalMaxPool", ["c"], ["y"])],
        {"x": (1, 4, 20)},
        {"y": None},
        {"w": rand(6, 4, 3, seed=1)},
    )
    out = tmp_path / "pool1d.tflite"
    result = convert(m, out)
    assert result.ops.get("REDUCE_MAX") == 1, result.ops
    assert verify(m, out, samples=4).min_sqnr_db >= 60


def test_comparison_of_constants_is_folded(tmp_path):
    """Equal of two constants is computed at conversion: only the SELECT_V2 remains, on a constant
    condition."""
    m = model(
        [N("Equal", ["c1", "c2"], ["same"]), N("Where", ["same", "x", "y_in"], ["y"])],
        {"x": (1, 3, 4), "y_in": (1, 3, 4)},
        {"y": None},
        {"c1": grid_values(3, 4, seed=1), "c2": grid_values(3, 4, seed=2)},
    )
    feed = {"x": rand(1, 3, 4, seed=3), "y_in": rand(1, 3, 4, seed=4)}
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert ops == {"SELECT_V2": 1}, ops
    assert np.array_equal(got, reference)


def test_gather_at_argmax_positions_needs_no_wrapping(tmp_path):
    """ArgMax makes positions, never negative: GATHER reads them as they are."""
    m = typed_model(
        [N("ArgMax", ["scores"], ["best"], axis=1, keepdims=0), N("Gather", ["table", "best"], ["y"], axis=0)],
        {"scores": (F, (3, 5))},
        {"y": (F, (3, 4))},
        {"table": rand(5, 4, seed=1)},
    )
    feed = {"scores": rand(3, 5, seed=2)}
    (reference,), (got,), ops = run_both(m, feed, tmp_path)
    assert ops.get("GATHER") == 1 and "FLOOR_MOD" not in ops, ops
    assert np.array_equal(got, reference)
