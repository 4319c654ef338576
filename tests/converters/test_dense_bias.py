"""A Dense layer written as MatMul by a constant matrix + Add of a bias (tf2onnx's Keras Dense, and
transformers' [B, T, C] x [C, D] + [D]) converts like its Gemm form: one FULLY_CONNECTED with the
bias in it, no ADD, and in int8 the numbers of the Gemm form. An Add that is not a bias stays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from tests.converters.onnx_models import model, rand

N = helper.make_node
C, H, D = 32, 32, 16
WEIGHTS = rand(C, H, seed=1, scale=C**-0.5)
BIAS = rand(H, seed=2, scale=2.0)  # as wide as the product: rounding the product alone shows in int8
HEAD = rand(H, D, seed=3, scale=H**-0.5)


@dataclass(frozen=True)
class Dense:
    input_shape: tuple[int, ...]
    bias_shape: tuple[int, ...]
    bias_first: bool = False  # Add(b, MatMul) rather than Add(MatMul, b)


FOLDED = {
    "2d": Dense((4, C), (H,)),
    "2d_bias_first": Dense((4, C), (H,), bias_first=True),
    "2d_row_bias": Dense((4, C), (1, H)),
    "3d": Dense((1, 6, C), (H,)),
    "3d_bias_first_broadcast": Dense((1, 6, C), (1, 1, H), bias_first=True),
}


def matmul_add(dense: Dense) -> onnx.ModelProto:
    """The Dense, a Relu and a head without bias, as MTCNN ONet's dense_3 before its heads: a
    Dense at the very end would keep its ADD in float on a CPU target, which hides the loss."""
    add = ["b", "mm"] if dense.bias_first else ["mm", "b"]
    return model(
        [
            N("MatMul", ["x", "w"], ["mm"]),
            N("Add", add, ["h"]),
            N("Relu", ["h"], ["r"]),
            N("MatMul", ["r", "head"], ["y"]),
        ],
        {"x": dense.input_shape},
        {"y": None},
        {"w": WEIGHTS, "b": BIAS.reshape(dense.bias_shape), "head": HEAD},
    )


def gemm_form(rows: int) -> onnx.ModelProto:
    """The same layers with the Dense as a Gemm, on the input's rows."""
    return model(
        [N("Gemm", ["x", "w", "b"], ["h"]), N("Relu", ["h"], ["r"]), N("MatMul", ["r", "head"], ["y"])],
        {"x": (rows, C)},
        {"y": None},
        {"w": WEIGHTS, "b": BIAS, "head": HEAD},
    )


def normal(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def int8_sqnr(m: onnx.ModelProto, shape: tuple[int, ...], path) -> tuple[float, dict[str, int]]:
    """int8 with minmax calibration on seeded normal samples; SQNR on others; ``shape`` may be
    the input's rows: the same values either way."""
    result = convert(m, path, quantize="int8", calibration=normal(shape, 32, seed=4))
    assert result.partitions == 1, result.ops
    return verify(m, path, data=normal(shape, 16, seed=5)).min_sqnr_db, result.ops


@pytest.mark.parametrize("case", sorted(FOLDED))
def test_bias_add_folds_into_fully_connected(case, tmp_path):
    m = matmul_add(FOLDED[case])
    result = convert(m, tmp_path / "m.tflite")
    assert "ADD" not in result.ops and result.ops.get("FULLY_CONNECTED") == 2, result.ops
    assert verify(m, tmp_path / "m.tflite").min_sqnr_db >= 60


@pytest.mark.parametrize("case", sorted(FOLDED))
def test_int8_matmul_add_matches_its_gemm_form(case, tmp_path):
    """Left as an ADD, int8 rounds the product without its bias, then the sum: 1.5 dB here, 2-5 dB
    on the regression heads of MTCNN's ONet exported by tf2onnx."""
    dense = FOLDED[case]
    rows = int(np.prod(dense.input_shape[:-1]))
    folded, ops = int8_sqnr(matmul_add(dense), dense.input_shape, tmp_path / "mm.tflite")
    gemm, _ = int8_sqnr(gemm_form(rows), (rows, C), tmp_path / "gemm.tflite")
    assert folded >= gemm - 0.5, (folded, gemm)
    assert "ADD" not in ops, ops


def full_constant_add() -> onnx.ModelProto:
    """An Add of a [4, H] constant to a [4, H] product: one value per row, not a bias."""
    return model(
        [N("MatMul", ["x", "w"], ["mm"]), N("Add", ["mm", "c"], ["y"])],
        {"x": (4, C)},
        {"y": None},
        {"w": WEIGHTS, "c": rand(4, H, seed=6)},
    )


def per_token_add() -> onnx.ModelProto:
    """A [1, T, H] constant on a [1, T, C] x [C, H] product: a position embedding, not a bias."""
    return model(
        [N("MatMul", ["x", "w"], ["mm"]), N("Add", ["c", "mm"], ["y"])],
        {"x": (1, 6, C)},
        {"y": None},
        {"w": WEIGHTS, "c": rand(1, 6, H, seed=6)},
    )


def product_read_twice() -> onnx.ModelProto:
    """The product without the bias is read by a second op: folding would change what it reads."""
    return model(
        [N("MatMul", ["x", "w"], ["mm"]), N("Add", ["mm", "b"], ["y"]), N("Relu", ["mm"], ["z"])],
        {"x": (4, C)},
        {"y": None, "z": None},
        {"w": WEIGHTS, "b": BIAS},
    )


NOT_A_BIAS = {"full_constant": full_constant_add, "per_token": per_token_add, "read_twice": product_read_twice}


@pytest.mark.parametrize("case", sorted(NOT_A_BIAS))
def test_add_that_is_not_a_bias_stays(case, tmp_path):
    m = NOT_A_BIAS[case]()
    shape = tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim)
    result = convert(m, tmp_path / "m.tflite")
    assert result.ops.get("ADD") == 1, result.ops
    assert verify(m, tmp_path / "m.tflite").min_sqnr_db >= 60
    sqnr, ops = int8_sqnr(m, shape, tmp_path / "int8.tflite")
    assert ops.get("ADD") == 1, ops
    assert sqnr >= 25


def test_batchnorm_over_tokens_after_3d_matmul_stays(tmp_path):
    """BatchNormalization on [1, T, H] normalizes axis 1, the tokens, not the MatMul's columns."""
    tokens = 6
    m = model(
        [N("MatMul", ["x", "w"], ["mm"]), N("BatchNormalization", ["mm", "g", "be", "mu", "var"], ["y"])],
        {"x": (1, tokens, C)},
        {"y": None},
        {
            "w": WEIGHTS,
            "g": rand(tokens, seed=6),
            "be": rand(tokens, seed=7),
            "mu": rand(tokens, seed=8),
            "var": np.abs(rand(tokens, seed=9)) + 0.5,
        },
    )
    convert(m, tmp_path / "m.tflite")
    assert verify(m, tmp_path / "m.tflite").min_sqnr_db >= 60


def test_scale_and_bias_after_3d_matmul_fold_into_one_fully_connected(tmp_path):
    """Mul by a per-column constant, then the bias: both on the last axis of a [1, T, H] product."""
    m = model(
        [N("MatMul", ["x", "w"], ["mm"]), N("Mul", ["mm", "s"], ["scaled"]), N("Add", ["scaled", "b"], ["y"])],
        {"x": (1, 6, C)},
        {"y": None},
        {"w": WEIGHTS, "s": rand(H, seed=10), "b": BIAS},
    )
    result = convert(m, tmp_path / "m.tflite")
    assert result.ops == {"FULLY_CONNECTED": 1}, result.ops
    assert verify(m, tmp_path / "m.tflite").min_sqnr_db >= 60
