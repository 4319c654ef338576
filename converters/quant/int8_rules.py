"""The writer's self-check: TFLite's int8 rules (TFLITE_INT8.md) that its kernels never check
at load time and would answer with wrong numbers. A model breaking any is refused."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgekit.converters.ir.graph import Graph
from edgekit.converters.quant.quantizer import FIXED_OUTPUT, SHARED, WEIGHTED
from edgekit.errors import UnsupportedModelError

INT8 = np.dtype(np.int8)


class Int8RuleError(UnsupportedModelError):
    """The quantized graph breaks a rule of TFLite's int8 kernels."""


def _quant_shape_rule(graph: Graph) -> list[str]:
    problems = []
    for t in graph.tensors.values():
        q = t.quant
        if q is None:
            continue
        if q.scale.size != q.zero_point.size:
            problems.append(f"{t.name}: {q.scale.size} scales but {q.zero_point.size} zero points")
        if t.shape and not 0 <= q.axis < len(t.shape):
            problems.append(f"{t.name}: quantized_dimension {q.axis} outside [0, {len(t.shape)})")
        elif q.scale.size != 1 and (not t.shape or q.scale.size != t.shape[q.axis]):
            size = t.shape[q.axis] if t.shape else 1
            problems.append(f"{t.name}: {q.scale.size} scales for a dimension of size {size}")
        if np.any(q.scale <= 0) or not np.all(np.isfinite(q.scale)):
            problems.append(f"{t.name}: scales must be finite and positive")
    return problems


def _activation_rule(graph: Graph) -> list[str]:
    problems = []
    for t in graph.tensors.values():
        if t.is_const or t.dtype != INT8:
            continue
        if t.quant is None:
            problems.append(f"{t.name}: int8 activation without quantization parameters")
        elif t.quant.scale.size != 1:
            problems.append(f"{t.name}: activations must be quantized per tensor")
        elif not -128 <= int(t.quant.zero_point[0]) <= 127:
            problems.append(f"{t.name}: zero point {int(t.quant.zero_point[0])} outside [-128, 127]")
    return problems


def _weight_and_bias_rule(graph: Graph) -> list[str]:
    problems = []
    for n in graph.nodes:
        if n.op not in WEIGHTED:
            continue
        w_index, axis, b_index = WEIGHTED[n.op]
        w = graph.tensors[n.inputs[w_index]]
        if w.dtype != INT8:
            continue
        q = w.quant
        if q is None or np.any(q.zero_point != 0):
            problems.append(f"{n.name}: weights must be symmetric (zero point 0)")
            continue
        if w.data is not None and (w.data.min() < -127 or w.data.max() > 127):
            problems.append(f"{n.name}: int8 weights must lie in [-127, 127]")
        if q.per_channel and q.axis != axis:
            problems.append(f"{n.name}: {n.op} weights are per channel along axis {axis}, not {q.axis}")
        data = graph.tensors[n.inputs[2] if n.op == "TRANSPOSE_CONV" else n.inputs[0]]
        if data.dtype != INT8 and graph.tensors[n.outputs[0]].dtype == INT8:
            problems.append(f"{n.name}: int8 weights and output need an int8 input, not {data.dtype}")
        if len(n.inputs) <= b_index or not n.inputs[b_index]:
            continue
        b = graph.tensors[n.inputs[b_index]]
        x = graph.tensors[n.inputs[2] if n.op == "TRANSPOSE_CONV" else n.inputs[0]]
        if b.dtype != np.int32 or b.quant is None:
            problems.append(f"{n.name}: bias must be int32 with quantization parameters")
            continue
        if b.quant.axis != 0 or np.any(b.quant.zero_point != 0):
            problems.append(f"{n.name}: bias must be quantized along axis 0 with zero point 0")
        if x.quant is not None:
            if b.quant.scale.size != q.scale.size:
                problems.append(f"{n.name}: bias has {b.quant.scale.size} scales, the weights {q.scale.size}")
            elif not np.allclose(b.quant.scale, x.quant.scale[0] * q.scale, rtol=1e-5):
                problems.append(f"{n.name}: bias scale must be input_scale * weight_scale per channel")
    return problems


def _fixed_output_rule(graph: Graph) -> list[str]:
    problems = []
    for n in graph.nodes:
        out = graph.tensors[n.outputs[0]]
        if n.op in FIXED_OUTPUT and out.dtype == INT8:
            scale, zero_point = FIXED_OUTPUT[n.op]
            q = out.quant
            if q is None or not np.isclose(q.scale[0], scale) or int(q.zero_point[0]) != zero_point:
                problems.append(f"{n.name}: int8 {n.op} output must be (scale {scale:g}, zero point {zero_point})")
    return problems


def _shared_rule(graph: Graph) -> list[str]:
    problems = []
    for n in graph.nodes:
        if n.op not in SHARED:
            continue
        out = graph.tensors[n.outputs[0]]
        if out.dtype != INT8:
            continue
        indices = SHARED[n.op]
        for k, name in enumerate(n.inputs):
            if not name or (indices is not None and k not in indices):
                continue
            t = graph.tensors[name]
            if t.dtype == INT8 and not (t.quant is not None and t.quant.same_as(out.quant)):
                problems.append(f"{n.name}: {n.op} input '{name}' and output must share quantization parameters")
    return problems


def _fixed_range_forced_rule(graph: Graph) -> list[str]:
    """A shared-parameter op that joins a fixed-parameter op's output (LOGISTIC: 1/256) with
    values from any other producer forces that fixed range on them: a YOLO head's boxes
    (0..640) concatenated with sigmoid scores were clipped to [0, 1]. The quantizer
    requantizes the fixed output first; a model where it did not is refused."""
    origins: dict[str, frozenset] = {}  # tensor -> the fixed ops its values come from (None: any other)
    for n in graph.nodes:  # topological order: inputs first
        for out in n.outputs:
            if n.op in FIXED_OUTPUT:
                origins[out] = frozenset({n.op})
            elif n.op in SHARED and graph.tensors[out].dtype == INT8:
                ins = _shared_data_inputs(graph, n)
                origins[out] = frozenset().union(*(origins.get(i, frozenset({None})) for i in ins))
            else:
                origins[out] = frozenset({None})

    problems = []
    for n in graph.nodes:
        if n.op not in SHARED or graph.tensors[n.outputs[0]].dtype != INT8:
            continue
        kinds = origins[n.outputs[0]]
        fixed = sorted(k for k in kinds if k is not None)
        if fixed and len(kinds) > 1:
            problems.append(
                f"{n.name}: {n.op} puts {'/'.join(fixed)}'s fixed output range on values from other ops; "
                "requantize the fixed output first"
            )
    return problems


def _shared_data_inputs(graph: Graph, node) -> list[str]:
    indices = SHARED[node.op]
    return [
        i
        for k, i in enumerate(node.inputs)
        if i and (indices is None or k in indices) and not graph.tensors[i].is_const and graph.tensors[i].dtype == INT8
    ]


RULES: dict[str, Callable[[Graph], list[str]]] = {
    "quantization parameters well formed": _quant_shape_rule,
    "activations per tensor": _activation_rule,
    "weights and bias": _weight_and_bias_rule,
    "fixed output parameters": _fixed_output_rule,
    "shared parameters": _shared_rule,
    "fixed range kept to its op": _fixed_range_forced_rule,
}


def distinct_weight_values(graph: Graph) -> dict[str, int]:
    """Weighted op name -> the most distinct values one output channel of its constant weights
    holds (2 for binary weights, 3 for ternary, up to 255 for int8)."""
    found = {}
    for n in graph.nodes:
        if n.op not in WEIGHTED:
            continue
        w_index, axis, _ = WEIGHTED[n.op]
        data = graph.tensors[n.inputs[w_index]].data
        if data is None:
            continue
        channels = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
        found[n.name] = max(len(np.unique(c)) for c in channels)
    return found


def _weight_values_rule(graph: Graph, limits: int | dict[str, int]) -> list[str]:
    """``limits``: one bound for every weighted op, or bounds by op name or source (ONNX) node name."""
    problems = []
    counts = distinct_weight_values(graph)
    for n in graph.nodes:
        if n.name not in counts:
            continue
        limit = limits if isinstance(limits, int) else limits.get(n.name, limits.get(n.attrs.get("_source", "")))
        if limit is not None and counts[n.name] > limit:
            problems.append(f"{n.name}: {counts[n.name]} distinct weight values in an output channel, at most {limit}")
    return problems


def check_int8(graph: Graph, max_weight_values: int | dict[str, int] | None = None) -> None:
    """Raise Int8RuleError naming every broken rule. ``max_weight_values`` (asked for by models
    with binary or ternary weights) also bounds the distinct int8 values per output channel."""
    problems = [f"[{rule}] {p}" for rule, check in RULES.items() for p in check(graph)]
    if max_weight_values is not None:
        problems += [f"[distinct weight values] {p}" for p in _weight_values_rule(graph, max_weight_values)]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise Int8RuleError("refusing to write a model TFLite would run wrongly: " + "; ".join(problems[:5]) + more)


__all__ = ["RULES", "Int8RuleError", "check_int8", "distinct_weight_values"]
