"""Comparisons, boolean logic and Where: the masks exporters write (tf2onnx's div_no_nan as
``Where(Equal(d, 0), 0, n / d)``, jax's one_hot as an Equal against an iota). Their outputs are
bool tensors; when every input is a constant the frontend has already folded them."""

from __future__ import annotations

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering

COMPARISONS = {
    "Equal": "EQUAL",
    "Greater": "GREATER",
    "Less": "LESS",
    "GreaterOrEqual": "GREATER_EQUAL",
    "LessOrEqual": "LESS_EQUAL",
}
LOGICAL = {"And": "LOGICAL_AND", "Or": "LOGICAL_OR", "Not": "LOGICAL_NOT"}


@lowers(*COMPARISONS, *LOGICAL)
def compare(ctx: Lowering, node) -> None:
    """The broadcasting builtin of the same name (int64 operands read as int32, as everywhere)."""
    op = COMPARISONS.get(node.op) or LOGICAL[node.op]
    ctx.op_to(op, [ctx.use(i) for i in node.inputs], node.outputs[0])


@lowers("Where")
def where(ctx: Lowering, node) -> None:
    """SELECT_V2, which broadcasts its three inputs as ONNX's Where does."""
    ctx.op_to("SELECT_V2", [ctx.use(i) for i in node.inputs], node.outputs[0])
