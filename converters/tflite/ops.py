"""What the writer and the importer need about TFLite builtin operators: which options table
each takes and its minimum kernel version (views of :mod:`edgekit.converters.tflite.op_table`), how
option fields are encoded, and the tensor types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit.converters.tflite.op_table import OPS, facts

# op -> name of its options table in the schema (BuiltinOptions union member)
OPTIONS_TABLE: dict[str, str] = {name: f.options for name, f in OPS.items() if f.options}

# option field -> schema enum class name (values given as member names, e.g. "SAME"): the
# enum-typed fields of TFLite's builtin options tables (StableHLO's aside), so an op added to
# the op table finds its options' enums here already
ENUM_FIELDS: dict[str, str] = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "mode": "MirrorPadMode",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
    "kernel_type": "LSTMKernelType",
    "combiner": "CombinerType",
    "type": "LSHProjectionType",
    **dict.fromkeys(
        ("in_data_type", "out_data_type", "output_type", "out_type", "idx_out_type", "quantized_bias_type"),
        "TensorType",
    ),
}

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


def op_version(node, tensor: Callable[[str], Any]) -> int:
    """The minimum kernel version of ``node`` (1 for ops with no version rule)."""
    rule = facts(node.op).version
    return rule(node, tensor) if rule else 1
