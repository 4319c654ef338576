"""Conv and ConvTranspose."""

from __future__ import annotations

import math

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import Lowering, NotLowerable


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TFLite's SAME: (output size, pad before, pad after)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return out, total // 2, total - total // 2


def window_padding(
    ctx: Lowering, node, in_hw: tuple[int, int], out_hw: tuple[int, int], kernel, strides, dilations
) -> tuple[str, list[tuple[int, int]]]:
    """Pick SAME/VALID, or VALID after explicit padding; returns (padding, [(before, after)] per dim).

    Explicit pads are trimmed to what the output really reads (ceil_mode or oversized pads)."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    rank = len(kernel)
    pads = list(node.attrs.get("pads", [0] * (2 * rank)))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(rank):
            _, before, after = same_padding(in_hw[i], kernel[i], strides[i], dilations[i])
            pads.append((after, before) if auto_pad == "SAME_LOWER" else (before, after))
        pads = [p[0] for p in pads] + [p[1] for p in pads]
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    per_dim = []
    for i in range(rank):
        before = pads[i]
        needed_after = (out_hw[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_hw[i] - before
        per_dim.append((before, max(needed_after, 0)))
    if all(b == 0 and a == 0 for b, a in per_dim):
        return "VALID", per_dim
    same = [same_padding(in_hw[i], kernel[i], strides[i], dilations[i]) for i in range(rank)]
    if all(out_hw[i] == same[i][0] and per_dim[i] == (same[i][1], same[i][2]) for i in range(rank)):
        return "SAME", per_dim
    return "EXPLICIT", per_dim


def pad_nhwc(ctx: Lowering, x_nhwc: str, per_dim, value: float | None = None) -> str:
    n, h, w, c = ctx.out.tensors[x_nhwc].shape
    (t, b), (l, r) = per_dim
    paddings = ctx.constant(np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32), "paddings")
    shape = (n, h + t + b, w + l + r, c)
    if value is None or value == 0.0:
        return ctx.op_new("PAD", [x_nhwc, paddings], shape, f"{x_nhwc}_pad")
    fill = ctx.constant(np.array(value, np.float32), "pad_value")
    return ctx.op_new("PADV2", [x_nhwc, paddings, fill], shape, f"{x_nhwc}_pad")


def _conv_attrs(node, kernel_rank: int):
    strides = list(node.attrs.get("strides", [1] * kernel_rank))
    dilations = list(node.attrs.get("dilations", [1] * kernel_rank))
    return strides, dilations


def _as_2d(ctx: Lowering, node, weights: np.ndarray):
    """Conv1d runs as a 2-D conv over [N, C, 1, L]."""
    if weights.ndim == 4:
        return node.inputs[0], weights, node.attrs, node.outputs[0], None
    if weights.ndim != 3:
        raise NotLowerable("unsupported_rank", f"{weights.ndim - 2}-D convolution")
    x = node.inputs[0]
    n, c, length = ctx.shape(x)
    ctx.use(x)
    x4 = ctx.reshape(x, (n, c, 1, length))
    attrs = dict(node.attrs)
    for key, one in (("strides", 1), ("dilations", 1), ("kernel_shape", 1)):
        if key in attrs:
            attrs[key] = [one] + list(attrs[key])
    if "pads" in attrs:
        p = list(attrs["pads"])
        attrs["pads"] = [0, p[0], 0, p[1]]
    n_o, c_o, l_o = ctx.shape(node.outputs[0])
    return x4, weights[:, :, None, :], attrs, node.outputs[0], (n_o, c_o, 1, l_o)


@lowers("Conv")
def conv(ctx: Lowering, node) -> None:
    weights = ctx.require_const(node.inputs[1], "the convolution weight")
    x, weights, attrs, out, out4 = _as_2d(ctx, node, weights)
    conv_node = type(node)(node.op, node.inputs, node.outputs, attrs, node.name)
    strides, dilations = _conv_attrs(conv_node, 2)
    n, c, h, w = ctx.out.tensors[x].shape if out4 else ctx.shape(x)
    cout, cin_per_group, kh, kw = weights.shape
    oh, ow = (out4 or ctx.shape(out))[2:]
    group = int(attrs.get("group", 1))
    bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if len(node.inputs) > 2 and node.inputs[2] and bias is None:
        raise NotLowerable("requires_constant_input", "the convolution bias must be a constant")
    bias = np.zeros(cout, np.float32) if bias is None else bias.astype(np.float32)

    padding, per_dim = window_padding(ctx, conv_node, (h, w), (oh, ow), (kh, kw), strides, dilations)
    xh = ctx.transpose(x, (0, 2, 3, 1), f"{x}_nhwc") if out4 else ctx.nhwc(x)
    if padding == "EXPLICIT":
        xh = pad_nhwc(ctx, xh, per_dim)
        padding = "VALID"
    common = dict(
        padding=padding,
        stride_w=strides[1],
        stride_h=strides[0],
        dilation_w_factor=dilations[1],
        dilation_h_factor=dilations[0],
        fused_activation_function="NONE",
    )
    b = ctx.constant(bias, f"{out}_bias")
    if group == 1:
        wt = ctx.constant(weights.transpose(0, 2, 3, 1).astype(np.float32), f"{out}_weights")
        op = "CONV_2D"
        attrs_out = common
    elif group == c and cin_per_group == 1:
        wt = ctx.constant(weights[:, 0].transpose(1, 2, 0)[None].astype(np.float32), f"{out}_weights")
        op = "DEPTHWISE_CONV_2D"
        attrs_out = dict(common, depth_multiplier=cout // c)
    else:
        wt = ctx.constant(weights.transpose(0, 2, 3, 1).astype(np.float32), f"{out}_weights")
        op = "CONV_2D"
        attrs_out = common
    if out4 is None:
        ctx.nhwc_result(op, [xh, wt, b], out, **attrs_out)
    else:
        y = ctx.op_new(op, [xh, wt, b], (out4[0], out4[2], out4[3], out4[1]), f"{out}_nhwc", **attrs_out)
        y = ctx.transpose(y, (0, 3, 1, 2), f"{out}_nchw4")
        ctx.reshape(y, ctx.shape(out), out=out)


@lowers("ConvTranspose")
def conv_transpose(ctx: Lowering, node) -> None:
    weights = ctx.require_const(node.inputs[1], "the transposed convolution weight")
    if weights.ndim != 4:
        raise NotLowerable("unsupported_rank", f"{weights.ndim - 2}-D transposed convolution")
    if int(node.attrs.get("group", 1)) != 1:
        raise NotLowerable("unsupported_attribute", "grouped ConvTranspose")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise NotLowerable("unsupported_attribute", "dilated ConvTranspose")
    x, out = node.inputs[0], node.outputs[0]
    n, _, h, w = ctx.shape(x)
    cin, cout, kh, kw = weights.shape
    sh, sw = node.attrs.get("strides", [1, 1])
    full = (n, (h - 1) * sh + kh, (w - 1) * sw + kw, cout)
    _, _, oh, ow = ctx.shape(out)
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total_h, total_w = full[1] - oh, full[2] - ow
        first = (lambda t: t - t // 2) if auto_pad == "SAME_LOWER" else (lambda t: t // 2)
        pads = [first(total_h), first(total_w), total_h - first(total_h), total_w - first(total_w)]
    top, left = pads[0], pads[1]
    if top + oh > full[1] or left + ow > full[2]:
        raise NotLowerable("unsupported_attribute", "ConvTranspose output_padding beyond the kernel footprint")
    bias = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    xh = ctx.nhwc(x)
    if kh == kw == sh == sw and (oh, ow) == full[1:3]:
        _upsample_as_depth_to_space(ctx, xh, weights, bias, out)
        return
    wt = ctx.constant(weights.transpose(1, 2, 3, 0).astype(np.float32), f"{out}_weights")
    shape = ctx.constant(np.array(full, np.int32), f"{out}_output_shape")
    inputs = [shape, wt, xh]
    if bias is not None:
        inputs.append(ctx.constant(bias.astype(np.float32), f"{out}_bias"))
    attrs = dict(padding="VALID", stride_w=sw, stride_h=sh, fused_activation_function="NONE")
    if (oh, ow) == full[1:3]:
        ctx.nhwc_result("TRANSPOSE_CONV", inputs, out, **attrs)
        return
    y = ctx.op_new("TRANSPOSE_CONV", inputs, full, f"{out}_full", **attrs)
    begin = ctx.constant(np.array([0, top, left, 0], np.int32), "begin")
    size = ctx.constant(np.array([n, oh, ow, cout], np.int32), "size")
    ctx.nhwc_result("SLICE", [y, begin, size], out)


def _upsample_as_depth_to_space(ctx: Lowering, xh: str, weights: np.ndarray, bias, out: str) -> None:
    """A transposed convolution whose kernel equals its stride (the 2x2/2 upsampling of U-Nets and
    text detectors) writes each input pixel's block alone: it is exactly a 1x1 convolution to
    block x block x Cout channels, in DEPTH_TO_SPACE's (row, column, channel) order, then
    DEPTH_TO_SPACE. XNNPACK runs that pair far faster than its int8 TRANSPOSE_CONV and no slower
    in float (the PP-OCR detector's row in docs/benchmarks.md)."""
    cin, cout, block, _ = weights.shape
    n, h, w, _ = ctx.out.tensors[xh].shape
    as_1x1 = weights.transpose(2, 3, 1, 0).reshape(block * block * cout, 1, 1, cin)
    bias = np.zeros(cout, np.float32) if bias is None else bias.astype(np.float32)
    wt = ctx.constant(as_1x1.astype(np.float32), f"{out}_weights")
    b = ctx.constant(np.tile(bias, block * block), f"{out}_bias")
    conv = dict(padding="VALID", stride_w=1, stride_h=1, dilation_w_factor=1, dilation_h_factor=1)
    shape = (n, h, w, block * block * cout)
    y = ctx.op_new("CONV_2D", [xh, wt, b], shape, f"{out}_blocks", **conv, fused_activation_function="NONE")
    ctx.nhwc_result("DEPTH_TO_SPACE", [y], out, block_size=block)
