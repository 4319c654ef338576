"""MaxPool, AveragePool and their global forms."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable
from edgekit.converters.onnx.lowering.conv import pad_nhwc, window_padding

FLOAT_LOWEST = float(np.finfo(np.float32).min)


def _pool(ctx: Lowering, node, op: str) -> None:
    x, out = node.inputs[0], node.outputs[0]
    if len(ctx.shape(x)) != 4:
        raise NotLowerable("unsupported_rank", f"{len(ctx.shape(x)) - 2}-D pooling")
    kernel = list(node.attrs["kernel_shape"])
    strides = list(node.attrs.get("strides", [1, 1]))
    dilations = list(node.attrs.get("dilations", [1, 1]))
    if dilations != [1, 1]:
        raise NotLowerable("unsupported_attribute", "dilated pooling")
    _, c, h, w = ctx.shape(x)
    _, _, oh, ow = ctx.shape(out)
    padding, per_dim = window_padding(ctx, node, (h, w), (oh, ow), kernel, strides, dilations)
    if kernel == [1, 1] and padding == "VALID" and strides != [1, 1]:
        subsample(ctx, ctx.use(x), (1, 1, *strides), out, channel_axis=1)
        return
    xh = ctx.nhwc(x)
    attrs = dict(
        padding="VALID",
        stride_w=strides[1],
        stride_h=strides[0],
        filter_width=kernel[1],
        filter_height=kernel[0],
        fused_activation_function="NONE",
    )
    if padding != "EXPLICIT":
        ctx.nhwc_result(op, [xh], out, **dict(attrs, padding=padding))
        return
    if op == "MAX_POOL_2D":
        ctx.nhwc_result(op, [_pad_for_max(ctx, x, xh, per_dim)], out, **attrs)
        return
    # average pool over explicit pads: zero-pad, pool, then rescale the border windows when
    # the padding must not count (count_include_pad=0, ONNX's default)
    pooled_nchw_shape = ctx.shape(out)
    n = pooled_nchw_shape[0]
    y = ctx.op_new(op, [pad_nhwc(ctx, xh, per_dim)], (n, oh, ow, c), f"{out}_padded_avg", **attrs)
    if int(node.attrs.get("count_include_pad", 0)):
        ctx.declare(out)
        perm = ctx.constant(np.array((0, 3, 1, 2), np.int32), "perm")
        ctx.emit("TRANSPOSE", [y, perm], [out])
        return
    ones = np.pad(np.ones((h, w), np.float32), per_dim)
    counts = np.zeros((oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            window = ones[i * strides[0] : i * strides[0] + kernel[0], j * strides[1] : j * strides[1] + kernel[1]]
            counts[i, j] = window.sum()
    correction = (kernel[0] * kernel[1] / counts).reshape(1, oh, ow, 1)
    scale = ctx.constant(correction, f"{out}_count_correction")
    ctx.nhwc_result("MUL", [y, scale], out, fused_activation_function="NONE")


def subsample(ctx: Lowering, x: str, steps, out: str, channel_axis: int) -> None:
    """The source tensor ``out`` = the 4-D ``x`` (a tensor of the output graph) taking every
    ``steps[a]``-th element along each axis a, from the first: a 1x1 DEPTHWISE_CONV_2D of unit
    weights with the steps as strides over ``channel_axis``. XNNPACK refuses a STRIDED_SLICE with
    steps and a 1x1 pooling with a stride, and runs this; in float and in int8 (a weight of 1 is
    exact) it moves the values as they are."""
    spatial = [a for a in (1, 2, 3) if a != channel_axis]
    if steps[0] != 1 or steps[channel_axis] != 1:
        raise ValueError(f"subsample: steps {list(steps)} move the batch or channel axis {channel_axis}")
    perm = (0, *spatial, channel_axis)
    x_channels_last = x if perm == (0, 1, 2, 3) else ctx.transpose(x, perm, f"{x}_channels_last")
    channels = ctx.out.tensors[x].shape[channel_axis]
    weights = ctx.constant(np.ones((1, 1, 1, channels), np.float32), f"{out}_subsample_weights")
    bias = ctx.constant(np.zeros(channels, np.float32), f"{out}_subsample_bias")
    ctx.permuted_result(
        "DEPTHWISE_CONV_2D",
        [x_channels_last, weights, bias],
        out,
        perm,
        padding="VALID",
        stride_h=int(steps[spatial[0]]),
        stride_w=int(steps[spatial[1]]),
        depth_multiplier=1,
        dilation_h_factor=1,
        dilation_w_factor=1,
        fused_activation_function="NONE",
    )


NONNEGATIVE_PRODUCERS = frozenset({"Relu", "Sigmoid", "Softmax", "HardSigmoid"})
# ops that only move values: their output is non-negative when their input is
REARRANGING = frozenset({"DepthToSpace", "SpaceToDepth", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"})


def _nonnegative(ctx: Lowering, name: str) -> bool:
    producer = ctx.src.producers().get(name)
    while producer is not None and producer.op in REARRANGING:
        producer = ctx.src.producers().get(producer.inputs[0])
    if producer is None:
        return False
    if producer.op in NONNEGATIVE_PRODUCERS:
        return True
    if producer.op == "Clip":
        low = producer.attrs.get("min")
        if low is None and len(producer.inputs) > 1 and producer.inputs[1]:
            value = ctx.const(producer.inputs[1])
            low = None if value is None else float(value)
        return low is not None and low >= 0.0
    return False


def _pad_for_max(ctx: Lowering, x: str, xh: str, per_dim) -> str:
    """Pad for max pooling: the padding must never win. Zero padding is exact after a ReLU;
    otherwise the border is pushed to the float minimum by adding a constant mask (PAD and
    ADD stay inside XNNPACK, PADV2 would not)."""
    padded = pad_nhwc(ctx, xh, per_dim)
    if _nonnegative(ctx, x):
        return padded
    n, h, w, c = ctx.out.tensors[padded].shape
    (t, b), (l, r) = per_dim
    mask = np.full((1, h, w, 1), FLOAT_LOWEST, np.float32)
    mask[:, t : h - b, l : w - r, :] = 0.0
    masked = ctx.new(f"{x}_masked", (n, h, w, c))
    # tagged: the quantizer gives the mask a scale that saturates the border to the int8 minimum
    ctx.emit(
        "ADD",
        [padded, ctx.constant(mask, f"{x}_pool_mask")],
        [masked],
        fused_activation_function="NONE",
        _role="pool_mask",
    )
    return masked


@lowers("MaxPool")
def max_pool(ctx: Lowering, node) -> None:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise NotLowerable("unsupported_attribute", "MaxPool with an Indices output")
    _pool(ctx, node, "MAX_POOL_2D")


@lowers("AveragePool")
def average_pool(ctx: Lowering, node) -> None:
    _pool(ctx, node, "AVERAGE_POOL_2D")


@lowers("GlobalAveragePool")
def global_average_pool(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    axes = ctx.constant(np.arange(2, len(ctx.shape(x)), dtype=np.int32), "axes")
    ctx.op_to("MEAN", [x, axes], node.outputs[0], keep_dims=True)


@lowers("GlobalMaxPool")
def global_max_pool(ctx: Lowering, node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    if len(ctx.shape(x)) != 4:
        # 1-D or 3-D pooling: REDUCE_MAX over every axis after the channels, as GlobalAveragePool
        axes = ctx.constant(np.arange(2, len(ctx.shape(x)), dtype=np.int32), "axes")
        ctx.op_to("REDUCE_MAX", [ctx.use(x), axes], out, keep_dims=True)
        return
    _, _, h, w = ctx.shape(x)
    ctx.nhwc_result(
        "MAX_POOL_2D",
        [ctx.nhwc(x)],
        out,
        padding="VALID",
        stride_w=1,
        stride_h=1,
        filter_width=w,
        filter_height=h,
        fused_activation_function="NONE",
    )
