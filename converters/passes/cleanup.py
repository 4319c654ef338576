"""Identity removal, constant folding, arithmetic on zero constants and no-op reshape removal."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, Node


def bypass(graph: Graph, node: Node) -> bool:
    """Remove a single-input, single-output no-op node by pointing its readers at its input.

    A graph output keeps its position; when the input is also a graph input/output the
    node stays (TFLite needs distinct tensors there)."""
    src, dst = node.inputs[0], node.outputs[0]
    if dst in graph.outputs and (src in graph.inputs or src in graph.outputs or graph.is_const(src)):
        return False
    graph.replace_uses(dst, src)
    graph.nodes.remove(node)
    return True


def remove_identities(graph: Graph) -> Graph:
    """Drop ONNX Identity and Dropout (inference mode) nodes."""
    for node in [n for n in graph.nodes if n.op in ("Identity", "Dropout")]:
        if len(node.outputs) > 1 and node.outputs[1] and any(node.outputs[1] in n.inputs for n in graph.nodes):
            continue  # the Dropout mask is read: keep the node
        node.outputs = node.outputs[:1]
        bypass(graph, node)
    graph.remove_unused()
    return graph


def _transpose(x, perm):
    return np.transpose(x, perm)


def _fully_connected(node: Node, xs: list) -> np.ndarray:
    x, weights, bias = (xs + [None])[:3]
    units = weights.shape[0]
    y = x.reshape(-1, weights.shape[1]) @ weights.T + (0 if bias is None else bias)
    return y.reshape((*x.shape[:-1], units) if node.attrs.get("keep_num_dims") else (-1, units))


# TFLite op -> numpy evaluation from constant inputs (only what lowering leaves behind)
CONST_EVALUATORS = {
    "TRANSPOSE": lambda node, xs: np.transpose(xs[0], xs[1].tolist()),
    "RESHAPE": lambda node, xs: xs[0].reshape([int(d) for d in node.attrs.get("new_shape", xs[1])]),
    "CAST": None,
    "MUL": lambda node, xs: xs[0] * xs[1],
    "ADD": lambda node, xs: xs[0] + xs[1],
    "SUB": lambda node, xs: xs[0] - xs[1],
    "DIV": lambda node, xs: xs[0] / xs[1],
    # a recurrent layer's first step on a zero initial state: left in, int8 would feed it a float constant
    "FULLY_CONNECTED": _fully_connected,
}


def fold_constants(graph: Graph) -> Graph:
    """Evaluate TFLite nodes whose inputs are all constants."""
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            fn = CONST_EVALUATORS.get(node.op)
            if fn is None or len(node.outputs) != 1 or not node.inputs:
                continue
            if node.attrs.get("fused_activation_function", "NONE") != "NONE":
                continue
            values = [graph.const(i) if i else None for i in node.inputs]  # "": an optional input left out
            if any(v is None for i, v in zip(node.inputs, values, strict=True) if i):
                continue
            out = graph.tensors[node.outputs[0]]
            if out.quant is not None or out.name in graph.outputs:
                continue
            result = np.ascontiguousarray(fn(node, values).astype(out.dtype))
            out.data = result
            out.shape = tuple(result.shape)
            graph.nodes.remove(node)
            changed = True
    graph.remove_unused()
    return graph


def _is_zero_constant(graph: Graph, name: str) -> bool:
    value = graph.const(name) if name else None
    return value is not None and not value.any()


def drop_zero_arithmetic(graph: Graph) -> Graph:
    """x + 0 and x - 0 -> x, x * 0 -> a zero constant (output shape kept): what a recurrent layer
    without an initial state leaves on its first step. Quantized, each zero constant is a tensor
    whose range is empty, and XNNPACK refuses the op that reads it."""
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if node.op not in ("ADD", "SUB", "MUL") or node.attrs.get("fused_activation_function", "NONE") != "NONE":
                continue
            out = node.outputs[0]
            if out in graph.outputs or graph.tensors[out].quant is not None:
                continue
            zeros = [k for k, name in enumerate(node.inputs) if _is_zero_constant(graph, name)]
            if not zeros:
                continue
            if node.op == "MUL":
                graph.tensors[out].data = np.zeros(graph.shape(out), graph.dtype(out))
                graph.nodes.remove(node)
                changed = True
                continue
            keep = [name for k, name in enumerate(node.inputs) if k not in zeros]
            if len(keep) == 1 and (node.op == "ADD" or zeros == [1]) and graph.shape(keep[0]) == graph.shape(out):
                node.inputs = keep
                changed |= bypass(graph, node)
    graph.remove_unused()
    return graph


def remove_noop_reshapes(graph: Graph) -> Graph:
    """Merge RESHAPE chains and drop RESHAPEs that change nothing."""
    changed = True
    while changed:
        changed = False
        producers = graph.producers()
        for node in list(graph.nodes):
            if node.op != "RESHAPE":
                continue
            src = node.inputs[0]
            p = producers.get(src)
            if p is not None and p.op == "RESHAPE" and graph.tensors[src].quant is None:
                node.inputs[0] = p.inputs[0]
                changed = True
                src = node.inputs[0]
            if graph.shape(src) == graph.shape(node.outputs[0]):
                a, b = graph.tensors[src], graph.tensors[node.outputs[0]]
                if (a.quant is None) == (b.quant is None) and (a.quant is None or a.quant.same_as(b.quant)):
                    changed |= bypass(graph, node)
        graph.remove_unused()
    return graph
