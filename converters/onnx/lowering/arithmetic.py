"""Broadcasting arithmetic: Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable

BINARY = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV", "Max": "MAXIMUM", "Min": "MINIMUM"}
HAS_ACTIVATION = {"ADD", "SUB", "MUL", "DIV"}


def operand(ctx: Lowering, name: str) -> str:
    """A binary-op operand; float64/int64 constants become float32/int32."""
    return ctx.use(name)


def binary(ctx: Lowering, op: str, a: str, b: str, out: str | None, shape=None) -> str:
    attrs = {"fused_activation_function": "NONE"} if op in HAS_ACTIVATION else {}
    if out is not None:
        return ctx.op_to(op, [a, b], out, **attrs)
    return ctx.op_new(op, [a, b], shape, f"{a}_{op.lower()}", **attrs)


@lowers("Add", "Sub", "Mul", "Div")
def arithmetic(ctx: Lowering, node) -> None:
    a, b = node.inputs
    if node.op == "Div" and ctx.const(b) is not None and np.issubdtype(ctx.const(b).dtype, np.floating):
        # x / c == x * (1/c): MUL is cheaper and quantizes better
        ctx.op_to(
            "MUL",
            [operand(ctx, a), ctx.constant(1.0 / ctx.const(b), "reciprocal")],
            node.outputs[0],
            fused_activation_function="NONE",
        )
        return
    binary(ctx, BINARY[node.op], operand(ctx, a), operand(ctx, b), node.outputs[0])


def _nary(ctx: Lowering, node, op: str) -> None:
    names = [operand(ctx, i) for i in node.inputs if i]
    out = node.outputs[0]
    if len(names) == 1:
        ctx.reshape(names[0], ctx.shape(out), out=out)
        return
    acc = names[0]
    for i, name in enumerate(names[1:], start=1):
        last = i == len(names) - 1
        acc = binary(ctx, op, acc, name, out if last else None, ctx.shape(out))


@lowers("Sum")
def sum_(ctx: Lowering, node) -> None:
    _nary(ctx, node, "ADD")


@lowers("Max", "Min")
def max_min(ctx: Lowering, node) -> None:
    _nary(ctx, node, BINARY[node.op])


@lowers("Mean")
def mean(ctx: Lowering, node) -> None:
    names = [i for i in node.inputs if i]
    out = node.outputs[0]
    total = ctx.use(names[0])
    for name in names[1:]:
        total = binary(ctx, "ADD", total, operand(ctx, name), None, ctx.shape(out))
    ctx.op_to(
        "MUL",
        [total, ctx.constant(np.array(1.0 / len(names), np.float32), "inv_n")],
        out,
        fused_activation_function="NONE",
    )


@lowers("Pow")
def pow_(ctx: Lowering, node) -> None:
    x, out = ctx.use(node.inputs[0]), node.outputs[0]
    exponent = ctx.const(node.inputs[1])
    if exponent is not None and exponent.size == 1:
        e = float(exponent)
        if e == 2.0:
            ctx.op_to("MUL", [x, x], out, fused_activation_function="NONE")
            return
        if e == 1.0:
            ctx.reshape(x, ctx.shape(out), out=out)
            return
        if e == 0.5:
            ctx.op_to("SQRT", [x], out)
            return
        if e == -0.5:
            ctx.op_to("RSQRT", [x], out)
            return
    ctx.op_to("POW", [x, operand(ctx, node.inputs[1])], out)


@lowers("Cast")
def cast(ctx: Lowering, node) -> None:
    x, out = ctx.use(node.inputs[0]), node.outputs[0]
    if ctx.out.tensors[x].dtype == np.dtype(ctx.declare_dtype(out)):
        ctx.reshape(x, ctx.shape(out), out=out)
        return
    if ctx.out.tensors[x].dtype not in (np.float32, np.int32, np.int8, np.uint8, np.bool_):
        raise NotLowerable("unsupported_dtype", f"Cast from {ctx.out.tensors[x].dtype}")
    ctx.op_to("CAST", [x], out)
