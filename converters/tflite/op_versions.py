"""Minimum TFLite kernel versions (ported from TFLite's op_version.cc for the operators edgekit
emits). Each rule sees the node and a lookup for tensor dtypes/shapes and returns what
op_version.cc computes for that signature; :mod:`edgekit.converters.tflite.op_table` says which rule
each op takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

VersionRule = Callable[[Any, Callable[[str], Any]], int]


def _in_type(node, tensor, i: int = 0) -> np.dtype | None:
    if i >= len(node.inputs) or not node.inputs[i]:
        return None
    return tensor(node.inputs[i]).dtype


def _is(dtype, *types) -> bool:
    return dtype is not None and any(dtype == np.dtype(t) for t in types)


def conv2d(node, tensor) -> int:
    x, w = tensor(node.inputs[0]), tensor(node.inputs[1])
    if x.shape and w.shape and x.shape[-1] != w.shape[-1]:
        return 6  # grouped convolution
    if _is(x.dtype, np.int16):
        return 4
    if _is(x.dtype, np.float32) and _is(w.dtype, np.int8):
        return 5 if w.quant is not None and w.quant.per_channel else 2
    if _is(x.dtype, np.int8):
        return 3
    return 1


def depthwise(node, tensor) -> int:
    x, w = tensor(node.inputs[0]), tensor(node.inputs[1])
    if _is(x.dtype, np.int16):
        return 5
    if _is(x.dtype, np.float32) and _is(w.dtype, np.int8):
        return 6 if w.quant is not None and w.quant.per_channel else 4
    if _is(x.dtype, np.int8):
        return 3
    if node.attrs.get("dilation_w_factor", 1) != 1 or node.attrs.get("dilation_h_factor", 1) != 1:
        return 2
    return 1


def fully_connected(node, tensor) -> int:
    if len(node.inputs) == 2 or not node.inputs[2]:
        return 6
    if node.attrs.get("keep_num_dims"):
        return 5
    x, w = tensor(node.inputs[0]), tensor(node.inputs[1])
    if _is(x.dtype, np.int16):
        return 7
    if _is(x.dtype, np.float32) and _is(w.dtype, np.int8):
        return 3
    if _is(x.dtype, np.int8):
        return 4
    return 1


def int8_is(version_int8: int, version_int16: int | None = None) -> VersionRule:
    def rule(node, tensor) -> int:
        t = _in_type(node, tensor)
        if version_int16 is not None and _is(t, np.int16):
            return version_int16
        return version_int8 if _is(t, np.int8) else 1

    return rule


def mul(node, tensor) -> int:
    a = tensor(node.inputs[0])
    if _is(a.dtype, np.int16):
        return 4
    if _is(a.dtype, np.int8):
        b, out = tensor(node.inputs[1]), tensor(node.outputs[0])
        if a.quant and b.quant and out.quant and float(a.quant.scale[0] * b.quant.scale[0] / out.quant.scale[0]) >= 1:
            return 3
        return 2
    return 1


def transpose(node, tensor) -> int:
    rank = len(tensor(node.inputs[0]).shape)
    if rank > 5:
        return 6
    if rank > 4:
        return 5
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def transpose_conv(node, tensor) -> int:
    has_bias = len(node.inputs) > 3 and bool(node.inputs[3])
    if has_bias:
        return 3
    return 2 if _is(_in_type(node, tensor, 2), np.int8) else 1


def resize(node, tensor) -> int:
    if node.attrs.get("half_pixel_centers"):
        return 3
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def strided_slice(node, tensor) -> int:
    if len(tensor(node.inputs[0]).shape) > 4:
        return 4
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def pad(node, tensor) -> int:
    if len(tensor(node.inputs[0]).shape) > 4:
        return 4
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def dequantize(node, tensor) -> int:
    t = _in_type(node, tensor)
    if _is(t, np.float16):
        return 3
    return 2 if _is(t, np.int8) else 1


def batch_matmul(node, tensor) -> int:
    t = _in_type(node, tensor)
    if _is(t, np.int16):
        return 3
    return 2 if _is(t, np.int8) else 1
