"""BatchNormalization (when not folded), LRN, LayerNormalization, InstanceNormalization,
LpNormalization."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable


def channel_shape(rank: int, channels: int) -> tuple[int, ...]:
    """Broadcast shape of a per-channel constant for an NC... tensor."""
    return (1, channels) + (1,) * (rank - 2)


def scale_shift(ctx: Lowering, x: str, scale: np.ndarray, shift: np.ndarray, out: str) -> None:
    shape = ctx.out.tensors[x].shape
    cshape = channel_shape(len(shape), shape[1])
    s = ctx.constant(scale.reshape(cshape).astype(np.float32), f"{out}_scale")
    b = ctx.constant(shift.reshape(cshape).astype(np.float32), f"{out}_shift")
    y = ctx.op_new("MUL", [x, s], shape, f"{out}_scaled", fused_activation_function="NONE")
    ctx.op_to("ADD", [y, b], out, fused_activation_function="NONE")


def batchnorm_affine(gamma, beta, mean, var, eps) -> tuple[np.ndarray, np.ndarray]:
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


@lowers("BatchNormalization")
def batch_norm(ctx: Lowering, node) -> None:
    gamma, beta, mean, var = (
        ctx.require_const(n, "BatchNormalization statistics").astype(np.float64) for n in node.inputs[1:5]
    )
    scale, shift = batchnorm_affine(gamma, beta, mean, var, float(node.attrs.get("epsilon", 1e-5)))
    scale_shift(ctx, ctx.use(node.inputs[0]), scale, shift, node.outputs[0])


@lowers("LRN")
def lrn(ctx: Lowering, node) -> None:
    """y = x / (bias + alpha/size * sum over a channel window of x^2) ^ beta.

    The channel-window sum is a 1x1 convolution with a band matrix, and x^-0.75 is
    rsqrt * sqrt(rsqrt): every piece is an op XNNPACK takes."""
    x, out = node.inputs[0], node.outputs[0]
    n, c, h, w = ctx.shape(x)
    size = int(node.attrs["size"])
    alpha = float(node.attrs.get("alpha", 1e-4))
    beta = float(node.attrs.get("beta", 0.75))
    bias = float(node.attrs.get("bias", 1.0))
    xh = ctx.nhwc(x)
    shape = (n, h, w, c)
    sq = ctx.op_new("MUL", [xh, xh], shape, f"{out}_sq", fused_activation_function="NONE")
    band = np.zeros((c, 1, 1, c), np.float32)
    lo, hi = (size - 1) // 2, size // 2  # floor and ceil of (size - 1) / 2
    for o in range(c):
        band[o, 0, 0, max(0, o - lo) : min(c, o + hi + 1)] = alpha / size
    denom = ctx.op_new(
        "CONV_2D",
        [sq, ctx.constant(band, f"{out}_band"), ctx.constant(np.full(c, bias, np.float32), f"{out}_bias")],
        shape,
        f"{out}_denom",
        padding="VALID",
        stride_w=1,
        stride_h=1,
        dilation_w_factor=1,
        dilation_h_factor=1,
        fused_activation_function="NONE",
    )
    if beta == 0.75:
        r = ctx.op_new("RSQRT", [denom], shape, f"{out}_rsqrt")
        r4 = ctx.op_new("SQRT", [r], shape, f"{out}_rsqrt_sqrt")
        factor = ctx.op_new("MUL", [r, r4], shape, f"{out}_factor", fused_activation_function="NONE")
    elif beta == 0.5:
        factor = ctx.op_new("RSQRT", [denom], shape, f"{out}_factor")
    elif beta == 1.0:
        one = ctx.constant(np.array(1.0, np.float32), "one")
        factor = ctx.op_new("DIV", [one, denom], shape, f"{out}_factor", fused_activation_function="NONE")
    else:
        exponent = ctx.constant(np.array(-beta, np.float32), f"{out}_exponent")
        factor = ctx.op_new("POW", [denom, exponent], shape, f"{out}_factor")
    ctx.nhwc_result("MUL", [xh, factor], out, fused_activation_function="NONE")


def _normalize(ctx: Lowering, x: str, axes: list[int], eps: float, out_hint: str) -> str:
    shape = ctx.out.tensors[x].shape
    reduced = tuple(1 if i in axes else d for i, d in enumerate(shape))
    ax = ctx.constant(np.array(axes, np.int32), "axes")
    mean = ctx.op_new("MEAN", [x, ax], reduced, f"{out_hint}_mean", keep_dims=True)
    centered = ctx.op_new("SUB", [x, mean], shape, f"{out_hint}_centered", fused_activation_function="NONE")
    sq = ctx.op_new("MUL", [centered, centered], shape, f"{out_hint}_sq", fused_activation_function="NONE")
    var = ctx.op_new("MEAN", [sq, ax], reduced, f"{out_hint}_var", keep_dims=True)
    var_eps = ctx.op_new(
        "ADD",
        [var, ctx.constant(np.array(eps, np.float32), "eps")],
        reduced,
        f"{out_hint}_var_eps",
        fused_activation_function="NONE",
    )
    inv = ctx.op_new("RSQRT", [var_eps], reduced, f"{out_hint}_inv_std")
    return ctx.op_new("MUL", [centered, inv], shape, f"{out_hint}_normalized", fused_activation_function="NONE")


@lowers("LayerNormalization")
def layer_norm(ctx: Lowering, node) -> None:
    x, out = ctx.use(node.inputs[0]), node.outputs[0]
    rank = len(ctx.shape(x))
    axis = int(node.attrs.get("axis", -1))
    axis = axis + rank if axis < 0 else axis
    normalized = _normalize(ctx, x, list(range(axis, rank)), float(node.attrs.get("epsilon", 1e-5)), out)
    shape = ctx.shape(x)
    gamma = ctx.require_const(node.inputs[1], "LayerNormalization scale")
    y = ctx.op_new(
        "MUL",
        [normalized, ctx.constant(gamma.astype(np.float32), f"{out}_gamma")],
        shape,
        f"{out}_gamma_mul",
        fused_activation_function="NONE",
    )
    beta = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if beta is None:
        ctx.reshape(y, shape, out=out)
        return
    ctx.op_to("ADD", [y, ctx.constant(beta.astype(np.float32), f"{out}_beta")], out, fused_activation_function="NONE")


@lowers("InstanceNormalization")
def instance_norm(ctx: Lowering, node) -> None:
    x, out = ctx.use(node.inputs[0]), node.outputs[0]
    shape = ctx.shape(x)
    if len(shape) < 3:
        raise NotLowerable("unsupported_rank", "InstanceNormalization on a tensor of rank < 3")
    normalized = _normalize(ctx, x, list(range(2, len(shape))), float(node.attrs.get("epsilon", 1e-5)), out)
    scale = ctx.require_const(node.inputs[1], "InstanceNormalization scale")
    shift = ctx.require_const(node.inputs[2], "InstanceNormalization bias")
    scale_shift(ctx, normalized, scale, shift, out)


@lowers("LpNormalization")
def lp_normalization(ctx: Lowering, node) -> None:
    """y = x / ||x||_2 along ``axis``: TFLite's L2_NORMALIZATION, which normalizes the innermost
    axis. The channels of an NCHW tensor get there through NHWC (the layout pass cancels those
    transposes in a CNN); any other axis through a swap with the last."""
    p = int(node.attrs.get("p", 2))
    if p != 2:
        raise NotLowerable("unsupported_attribute", f"LpNormalization p={p}: only p=2 (L2_NORMALIZATION) converts")
    x, out = node.inputs[0], node.outputs[0]
    rank = len(ctx.shape(x))
    if rank > 4:
        raise NotLowerable("unsupported_rank", f"LpNormalization of a {rank}-D tensor (L2_NORMALIZATION takes 4-D)")
    axis = int(node.attrs.get("axis", -1)) % rank
    none = {"fused_activation_function": "NONE"}
    if axis == rank - 1:
        ctx.op_to("L2_NORMALIZATION", [ctx.use(x)], out, **none)
    elif rank == 4 and axis == 1:
        ctx.nhwc_result("L2_NORMALIZATION", [ctx.nhwc(x)], out, **none)
    else:
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        t = ctx.transpose(ctx.use(x), perm)
        y = ctx.op_new("L2_NORMALIZATION", [t], ctx.out.tensors[t].shape, f"{out}_last", **none)
        ctx.declare(out)
        ctx.emit("TRANSPOSE", [y, ctx.constant(np.array(perm, np.int32), "perm")], [out])
