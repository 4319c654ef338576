"""ONNX-level pattern fusion: the Erf form of GELU, and HardSwish written out."""

from __future__ import annotations

import math

import numpy as np

from edgekit.converters.ir.graph import Graph, Node


def _scalar(graph: Graph, name: str) -> float | None:
    value = graph.const(name)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(()))


def _other(node: Node, name: str) -> str | None:
    """The input of a binary node that is not ``name``."""
    if len(node.inputs) != 2 or name not in node.inputs:
        return None
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _only_consumer(consumers, name: str) -> Node | None:
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 else None


def fuse_gelu(graph: Graph) -> Graph:
    """x * 0.5 * (1 + erf(x / sqrt(2))) -> Gelu, in the orders exporters write it: torch's
    TorchScript exporter (x * 0.5) * (1 + erf) or (x * (1 + erf)) * 0.5, its dynamo exporter
    (0.5 * (1 + erf)) * x."""
    for erf in [n for n in graph.nodes if n.op == "Erf"]:
        producers, consumers = graph.producers(), graph.consumers()
        scaled = producers.get(erf.inputs[0])
        if scaled is None or scaled.op not in ("Div", "Mul"):
            continue
        x = scaled.inputs[0]
        c = _scalar(graph, scaled.inputs[1])
        if c is None or not math.isclose(c if scaled.op == "Div" else 1 / c, math.sqrt(2), rel_tol=1e-3):
            continue
        add = _only_consumer(consumers, erf.outputs[0])
        if add is None or add.op != "Add" or _scalar(graph, _other(add, erf.outputs[0]) or "") != 1.0:
            continue
        mul1 = _only_consumer(consumers, add.outputs[0])
        if mul1 is None or mul1.op != "Mul":
            continue
        partner = _other(mul1, add.outputs[0])
        half_node = producers.get(partner)
        if partner == x:  # (x * (1 + erf)) * 0.5
            mul2 = _only_consumer(consumers, mul1.outputs[0])
            if mul2 is None or mul2.op != "Mul" or _scalar(graph, _other(mul2, mul1.outputs[0]) or "") != 0.5:
                continue
            remove, out = [scaled, erf, add, mul1, mul2], mul2.outputs[0]
        elif (
            half_node is not None
            and half_node.op == "Mul"
            and x in half_node.inputs
            and _scalar(graph, _other(half_node, x) or "") == 0.5
        ):  # (x * 0.5) * (1 + erf)
            remove, out = [scaled, erf, add, mul1], mul1.outputs[0]
        elif _scalar(graph, partner or "") == 0.5:  # (0.5 * (1 + erf)) * x
            mul2 = _only_consumer(consumers, mul1.outputs[0])
            if mul2 is None or mul2.op != "Mul" or _other(mul2, mul1.outputs[0]) != x:
                continue
            remove, out = [scaled, erf, add, mul1, mul2], mul2.outputs[0]
        else:
            continue
        for n in remove:
            graph.nodes.remove(n)
        graph.add_node("Gelu", [x], [out], {"approximate": "none"}, name=f"{erf.name}_gelu")
    graph.toposort()
    graph.remove_unused()
    return graph


def _clip_bounds(graph: Graph, node: Node) -> tuple[float | None, float | None]:
    """A Clip's constant bounds, from inputs (opset 11+) or attributes (older)."""
    if len(node.inputs) > 1 or "min" in node.attrs or "max" in node.attrs:
        low = _scalar(graph, node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else node.attrs.get("min")
        high = _scalar(graph, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else node.attrs.get("max")
        return (None if low is None else float(low)), (None if high is None else float(high))
    return None, None


def _fuse_written_hardswish(graph: Graph) -> None:
    """x * Clip(x + 3, 0, 6) / 6 (paddle2onnx's and others' HardSwish, Div or Mul by 1/6) -> HardSwish.
    Left as four ops it is four int8 requantizations, one of them of x * (x + 3) at 6x the range."""
    for add in [n for n in graph.nodes if n.op == "Add"]:
        if add not in graph.nodes:
            continue
        x = next((i for i in add.inputs if _scalar(graph, i) == 3.0), None)
        x = _other(add, x) if x is not None else None
        if x is None or graph.const(x) is not None:
            continue
        consumers = graph.consumers()
        clip = _only_consumer(consumers, add.outputs[0])
        if (
            clip is None
            or clip.op != "Clip"
            or clip.inputs[0] != add.outputs[0]
            or _clip_bounds(graph, clip) != (0.0, 6.0)
        ):
            continue
        mul = _only_consumer(consumers, clip.outputs[0])
        if mul is None or mul.op != "Mul" or _other(mul, clip.outputs[0]) != x:
            continue
        last = _only_consumer(consumers, mul.outputs[0])
        if last is None or {add.outputs[0], clip.outputs[0], mul.outputs[0]} & set(graph.outputs):
            continue
        divides = last.op == "Div" and last.inputs[0] == mul.outputs[0] and _scalar(graph, last.inputs[1]) == 6.0
        sixth = _scalar(graph, _other(last, mul.outputs[0]) or "") if last.op == "Mul" else None
        if not (divides or (sixth is not None and np.isclose(sixth, 1 / 6))):
            continue
        for n in (add, clip, mul, last):
            graph.nodes.remove(n)
        graph.add_node("HardSwish", [x], [last.outputs[0]], name=f"{add.name}_hardswish")


def fuse_hardswish(graph: Graph) -> Graph:
    """x * HardSigmoid(x) (alpha 1/6, beta 0.5) -> HardSwish; x * Clip(x + 3, 0, 6) / 6 too."""
    _fuse_written_hardswish(graph)
    for hs in [n for n in graph.nodes if n.op == "HardSigmoid"]:
        alpha = float(hs.attrs.get("alpha", 0.2))
        beta = float(hs.attrs.get("beta", 0.5))
        if not (np.isclose(alpha, 1 / 6) and np.isclose(beta, 0.5)):
            continue
        consumers = graph.consumers()
        mul = _only_consumer(consumers, hs.outputs[0])
        x = hs.inputs[0]
        if mul is None or mul.op != "Mul" or _other(mul, hs.outputs[0]) != x:
            continue
        graph.nodes.remove(hs)
        graph.nodes.remove(mul)
        graph.add_node("HardSwish", [x], [mul.outputs[0]], name=f"{hs.name}_hardswish")
    graph.toposort()
    graph.remove_unused()
    return graph
