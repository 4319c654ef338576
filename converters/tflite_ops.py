"""Data about TFLite builtin operators: which options table each takes, how its option
fields are encoded, and the minimum kernel version (ported from TFLite's op_version.cc for
the operators edgekit emits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# op -> name of its options table in the schema (BuiltinOptions union member)
OPTIONS_TABLE: dict[str, str] = {
    "ADD": "AddOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "BATCH_MATMUL": "BatchMatMulOptions",
    "CAST": "CastOptions",
    "CONCATENATION": "ConcatenationOptions",
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "DEQUANTIZE": "DequantizeOptions",
    "DIV": "DivOptions",
    "EXP": "ExpOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "GATHER": "GatherOptions",
    "GELU": "GeluOptions",
    "HARD_SWISH": "HardSwishOptions",
    "L2_NORMALIZATION": "L2NormOptions",
    "LEAKY_RELU": "LeakyReluOptions",
    "LOCAL_RESPONSE_NORMALIZATION": "LocalResponseNormalizationOptions",
    "LOG_SOFTMAX": "LogSoftmaxOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MEAN": "ReducerOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "MIRROR_PAD": "MirrorPadOptions",
    "MUL": "MulOptions",
    "PACK": "PackOptions",
    "PAD": "PadOptions",
    "PADV2": "PadV2Options",
    "POW": "PowOptions",
    "QUANTIZE": "QuantizeOptions",
    "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions",
    "REDUCE_PROD": "ReducerOptions",
    "RESHAPE": "ReshapeOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "SLICE": "SliceOptions",
    "SOFTMAX": "SoftmaxOptions",
    "SPACE_TO_DEPTH": "SpaceToDepthOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
    "SPLIT": "SplitOptions",
    "SPLIT_V": "SplitVOptions",
    "SQUARE": "SquareOptions",
    "SQUARED_DIFFERENCE": "SquaredDifferenceOptions",
    "SQUEEZE": "SqueezeOptions",
    "STRIDED_SLICE": "StridedSliceOptions",
    "SUB": "SubOptions",
    "SUM": "ReducerOptions",
    "TRANSPOSE": "TransposeOptions",
    "TRANSPOSE_CONV": "TransposeConvOptions",
    "UNPACK": "UnpackOptions",
}

# option field -> schema enum class name (values given as member names, e.g. "SAME")
ENUM_FIELDS: dict[str, str] = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "mode": "MirrorPadMode",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
    "in_data_type": "TensorType",
    "out_data_type": "TensorType",
}

# ops whose output may carry a fused activation
FUSABLE_ACTIVATION_OPS = frozenset(
    {
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "TRANSPOSE_CONV",
        "AVERAGE_POOL_2D",
        "MAX_POOL_2D",
    }
)

TENSOR_TYPE: dict[np.dtype, str] = {
    np.dtype(np.float32): "FLOAT32",
    np.dtype(np.float16): "FLOAT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int64): "INT64",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int8): "INT8",
}

# --- minimum kernel versions --------------------------------------------------------------
# Each function sees the node and a lookup for tensor dtypes/shapes, and returns what
# op_version.cc computes for that signature. Ops absent here are version 1.
VersionRule = Callable[[Any, Callable[[str], Any]], int]


def _in_type(node, tensor, i: int = 0) -> np.dtype | None:
    if i >= len(node.inputs) or not node.inputs[i]:
        return None
    return tensor(node.inputs[i]).dtype


def _is(dtype, *types) -> bool:
    return dtype is not None and any(dtype == np.dtype(t) for t in types)


def _conv2d(node, tensor) -> int:
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


def _depthwise(node, tensor) -> int:
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


def _fully_connected(node, tensor) -> int:
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


def _int8_is(version_int8: int, version_int16: int | None = None) -> VersionRule:
    def rule(node, tensor) -> int:
        t = _in_type(node, tensor)
        if version_int16 is not None and _is(t, np.int16):
            return version_int16
        return version_int8 if _is(t, np.int8) else 1

    return rule


def _mul(node, tensor) -> int:
    a = tensor(node.inputs[0])
    if _is(a.dtype, np.int16):
        return 4
    if _is(a.dtype, np.int8):
        b, out = tensor(node.inputs[1]), tensor(node.outputs[0])
        if a.quant and b.quant and out.quant and float(a.quant.scale[0] * b.quant.scale[0] / out.quant.scale[0]) >= 1:
            return 3
        return 2
    return 1


def _transpose(node, tensor) -> int:
    rank = len(tensor(node.inputs[0]).shape)
    if rank > 5:
        return 6
    if rank > 4:
        return 5
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def _transpose_conv(node, tensor) -> int:
    has_bias = len(node.inputs) > 3 and bool(node.inputs[3])
    if has_bias:
        return 3
    return 2 if _is(_in_type(node, tensor, 2), np.int8) else 1


def _resize(node, tensor) -> int:
    if node.attrs.get("half_pixel_centers"):
        return 3
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def _strided_slice(node, tensor) -> int:
    if len(tensor(node.inputs[0]).shape) > 4:
        return 4
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def _pad(node, tensor) -> int:
    if len(tensor(node.inputs[0]).shape) > 4:
        return 4
    return 2 if _is(_in_type(node, tensor), np.int8) else 1


def _dequantize(node, tensor) -> int:
    t = _in_type(node, tensor)
    if _is(t, np.float16):
        return 3
    return 2 if _is(t, np.int8) else 1


def _batch_matmul(node, tensor) -> int:
    t = _in_type(node, tensor)
    if _is(t, np.int16):
        return 3
    return 2 if _is(t, np.int8) else 1


OP_VERSION: dict[str, VersionRule] = {
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _int8_is(2, 3),
    "SUB": _int8_is(2, 3),
    "MUL": _mul,
    "AVERAGE_POOL_2D": _int8_is(2, 3),
    "MAX_POOL_2D": _int8_is(2, 3),
    "CONCATENATION": _int8_is(2, 3),
    "MEAN": _int8_is(2, 3),
    "SUM": _int8_is(2),
    "REDUCE_MAX": _int8_is(2, 3),
    "SOFTMAX": _int8_is(2, 3),
    "LOGISTIC": _int8_is(2, 3),
    "TANH": _int8_is(2, 3),
    "RELU": _int8_is(2, 3),
    "RELU6": _int8_is(2, 3),
    "LEAKY_RELU": _int8_is(1, 2),
    "PRELU": _int8_is(1),
    "HARD_SWISH": _int8_is(1),
    "MAXIMUM": _int8_is(2),
    "MINIMUM": _int8_is(2),
    "PAD": _pad,
    "PADV2": _pad,
    "RESHAPE": _int8_is(1),
    "SQUEEZE": _int8_is(1),
    "TRANSPOSE": _transpose,
    "TRANSPOSE_CONV": _transpose_conv,
    "RESIZE_BILINEAR": _resize,
    "RESIZE_NEAREST_NEIGHBOR": _resize,
    "STRIDED_SLICE": _strided_slice,
    "SLICE": _int8_is(2, 3),
    "SPLIT": _int8_is(2, 3),
    "SPLIT_V": _int8_is(2),
    "GATHER": _int8_is(2),
    "QUANTIZE": _int8_is(1),
    "DEQUANTIZE": _dequantize,
    "BATCH_MATMUL": _batch_matmul,
    "GELU": _int8_is(1),
    "ELU": _int8_is(1),
    "DIV": _int8_is(1),
    "SPACE_TO_DEPTH": _int8_is(2),
    "DEPTH_TO_SPACE": _int8_is(2),
}


def op_version(node, tensor: Callable[[str], Any]) -> int:
    rule = OP_VERSION.get(node.op)
    return rule(node, tensor) if rule else 1
