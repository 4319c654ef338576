"""Run every node of an ONNX-level graph through its lowering."""

from __future__ import annotations

from collections import Counter
from typing import NoReturn

from edgekit.converters.ir.graph import Graph
from edgekit.converters.onnx.lowering import LOWERINGS, _load_all
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable
from edgekit.errors import UnsupportedOpsError


def unsupported_nodes(graph: Graph) -> list[tuple[str, int, str, str]]:
    """(op, count, first node name, reason) for every op type that has no lowering."""
    _load_all()
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for node in graph.nodes:
        if node.op not in LOWERINGS:
            counts[node.op] += 1
            first.setdefault(node.op, node.name)
    return [(op, n, first[op], "unsupported_onnx_op") for op, n in counts.most_common()]


def describe(problems: list[tuple[str, int, str, str]]) -> str:
    return "; ".join(f"{op} x{n} (first: '{name}', {reason})" for op, n, name, reason in problems)


def refuse(what: str, problems: list[tuple[str, int, str, str]]) -> NoReturn:
    """Raise the one error that names every problem, and how to convert what comes before them."""
    said = f"{what}: {describe(problems)}".replace("{", "{{").replace("}", "}}")
    raise UnsupportedOpsError(
        said + "; to convert the part before them, cut the graph at the tensors they read ({outputs:NAME ...})"
    )


def lower(src: Graph) -> Graph:
    problems = unsupported_nodes(src)
    if problems:
        refuse("the model uses ops edgekit cannot convert", problems)
    ctx = Lowering(src)
    for name in src.inputs:
        ctx.use(name)
    failures: list[tuple[str, int, str, str]] = []
    for node in src.nodes:
        ctx.node = node
        try:
            LOWERINGS[node.op](ctx, node)
        except NotLowerable as exc:
            failures.append((node.op, 1, node.name, f"{exc.reason}: {exc.detail}"))
    if failures:
        refuse("some nodes cannot be converted", failures)
    ctx.out.inputs = list(src.inputs)
    ctx.out.outputs = list(src.outputs)
    for name in ctx.out.outputs:
        ctx.use(name)
    return ctx.out
