"""Gemm and MatMul: FULLY_CONNECTED for constant weights, BATCH_MATMUL otherwise."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable


def fully_connected(
    ctx: Lowering, x: str, weights: np.ndarray, bias: np.ndarray | None, out: str, keep_num_dims: bool = False
) -> None:
    """``out = x @ weights.T + bias`` with weights [out_features, in_features]."""
    w = ctx.constant(weights.astype(np.float32), f"{out}_weights")
    b = ctx.constant((bias if bias is not None else np.zeros(weights.shape[0])).astype(np.float32), f"{out}_bias")
    attrs = dict(fused_activation_function="NONE")
    if keep_num_dims:
        attrs["keep_num_dims"] = True
    ctx.op_to("FULLY_CONNECTED", [x, w, b], out, **attrs)


@lowers("Gemm")
def gemm(ctx: Lowering, node) -> None:
    a, b_name = node.inputs[0], node.inputs[1]
    c_name = node.inputs[2] if len(node.inputs) > 2 else ""
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    if node.attrs.get("transA", 0):
        raise NotLowerable("unsupported_attribute", "Gemm with transA=1")
    weights = ctx.const(b_name)
    out = node.outputs[0]
    if weights is None:
        raise NotLowerable("requires_constant_input", "Gemm with a non-constant B")
    weights = weights if node.attrs.get("transB", 0) else weights.T
    weights = weights * alpha
    bias = None
    extra_c = None
    if c_name:
        c = ctx.const(c_name)
        n = weights.shape[0]
        if c is not None and (c.size == 1 or (c.size == n and c.shape[-1] == n)):
            bias = np.broadcast_to(c.reshape(-1), (n,)) * beta
        else:
            extra_c = c_name
    x = ctx.use(a)
    if extra_c is None:
        fully_connected(ctx, x, weights, bias, out)
        return
    tmp = ctx.new(f"{out}_mm", ctx.shape(out))
    w = ctx.constant(weights.astype(np.float32), f"{out}_weights")
    ctx.emit("FULLY_CONNECTED", [x, w, ""], [tmp], fused_activation_function="NONE")
    c = ctx.use(extra_c)
    if beta != 1.0:
        c = ctx.op_new(
            "MUL",
            [c, ctx.constant(np.array(beta, np.float32), "beta")],
            ctx.shape(extra_c),
            f"{out}_c",
            fused_activation_function="NONE",
        )
    ctx.op_to("ADD", [tmp, c], out, fused_activation_function="NONE")


@lowers("MatMul")
def matmul(ctx: Lowering, node) -> None:
    """A third input is the bias ``fold_batchnorm`` gave a MatMul by a constant matrix."""
    a, b = node.inputs[:2]
    out = node.outputs[0]
    weights = ctx.const(b)
    if weights is not None and weights.ndim == 2:
        bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 else None
        fully_connected(ctx, ctx.use(a), weights.T, bias, out, keep_num_dims=len(ctx.shape(a)) > 2)
        return
    if len(ctx.shape(a)) < 2 or len(ctx.shape(b)) < 2:
        raise NotLowerable("unsupported_rank", "MatMul with a 1-D operand")
    ctx.op_to("BATCH_MATMUL", [ctx.use(a), ctx.use(b)], out, adj_x=False, adj_y=False)
