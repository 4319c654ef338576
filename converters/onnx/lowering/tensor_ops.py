"""Shape and data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat,
Split, Slice, Pad, Resize, Gather, reductions, and the no-ops Identity/Dropout."""

from __future__ import annotations

import numpy as np

from edgekit.converters.onnx.lowering import lowers
from edgekit.converters.onnx.lowering.context import NHWC_TO_NCHW, Lowering, NotLowerable
from edgekit.converters.onnx.lowering.pooling import FLOAT_LOWEST, subsample


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


@lowers("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
def reshape(ctx: Lowering, node) -> None:
    # the output shape is static and known: every reshape-like op is a RESHAPE to it
    out = node.outputs[0]
    ctx.reshape(ctx.use(node.inputs[0]), ctx.shape(out), out=out)


@lowers("Transpose")
def transpose(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    rank = len(ctx.shape(x))
    perm = list(node.attrs.get("perm", list(range(rank))[::-1]))
    ctx.op_to("TRANSPOSE", [x, ctx.constant(np.array(perm, np.int32), "perm")], node.outputs[0])


@lowers("Concat")
def concat(ctx: Lowering, node) -> None:
    inputs = [ctx.use(i) for i in node.inputs if i and np.prod(ctx.shape(i)) > 0]
    out = node.outputs[0]
    axis = _axis(int(node.attrs["axis"]), len(ctx.shape(out)))
    if len(inputs) == 1:
        ctx.reshape(inputs[0], ctx.shape(out), out=out)
        return
    ctx.op_to("CONCATENATION", inputs, out, axis=axis, fused_activation_function="NONE")


@lowers("Split")
def split(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    rank = len(ctx.shape(x))
    axis = _axis(int(node.attrs.get("axis", 0)), rank)
    sizes = [ctx.shape(o)[axis] for o in node.outputs]
    outs = [ctx.declare(o) for o in node.outputs]
    axis_const = ctx.constant(np.array(axis, np.int32), "axis")
    if len(set(sizes)) == 1:
        ctx.emit("SPLIT", [axis_const, x], outs, num_splits=len(outs))
        return
    # unequal parts: one SLICE each (XNNPACK runs SLICE, not SPLIT_V, which split the graph)
    start = 0
    for out, size in zip(outs, sizes, strict=True):
        begin, extent = [0] * rank, list(ctx.shape(x))
        begin[axis], extent[axis] = start, size
        ctx.emit(
            "SLICE",
            [x, ctx.constant(np.array(begin, np.int32), "begin"), ctx.constant(np.array(extent, np.int32), "size")],
            [out],
        )
        start += size


def _slice_bounds(ctx: Lowering, node, shape) -> tuple[list[int], list[int], list[int]]:
    """Slice's (begin, end, stride) for every axis of the input."""
    rank = len(shape)
    if "starts" in node.attrs:  # opset < 10
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = ctx.require_const(node.inputs[1], "Slice starts").tolist()
        ends = ctx.require_const(node.inputs[2], "Slice ends").tolist()
        axes = (
            ctx.require_const(node.inputs[3], "Slice axes").tolist()
            if len(node.inputs) > 3 and node.inputs[3]
            else list(range(len(starts)))
        )
        steps = (
            ctx.require_const(node.inputs[4], "Slice steps").tolist()
            if len(node.inputs) > 4 and node.inputs[4]
            else [1] * len(starts)
        )
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = _axis(int(a), rank)
        s, e = slice(int(s), int(e), int(st)).indices(shape[a])[:2]
        begin[a], end[a], stride[a] = s, e, int(st)
    return begin, end, stride


def _emit_slice(ctx: Lowering, x: str, begin, size, out: str | None) -> str:
    """SLICE of ``size`` from ``begin``: into the source tensor ``out``, or a new tensor."""
    inputs = [x, ctx.constant(np.array(begin, np.int32), "begin"), ctx.constant(np.array(size, np.int32), "size")]
    if out is not None:
        return ctx.op_to("SLICE", inputs, out)
    return ctx.op_new("SLICE", inputs, tuple(size), f"{x}_slice", ctx.out.tensors[x].dtype)


@lowers("Slice")
def slice_(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    shape = ctx.shape(x)
    begin, end, stride = _slice_bounds(ctx, node, shape)
    out = node.outputs[0]
    size = [max(e - b, 0) for b, e in zip(begin, end, strict=True)]
    if all(s == 1 for s in stride):
        _emit_slice(ctx, x, begin, size, out)
        return
    channel_axis = _subsampling_channel_axis(ctx, x, stride)
    if channel_axis is not None and all(size):
        if begin != [0] * len(shape) or size != list(shape):
            x = _emit_slice(ctx, x, begin, size, None)
        subsample(ctx, x, stride, out, channel_axis)
        return
    end_mask = 0
    for a in range(len(shape)):
        if stride[a] < 0 and end[a] < 0:
            end_mask |= 1 << a  # slice to the very start
    ctx.op_to(
        "STRIDED_SLICE",
        [
            x,
            ctx.constant(np.array(begin, np.int32), "begin"),
            ctx.constant(np.array(end, np.int32), "end"),
            ctx.constant(np.array(stride, np.int32), "strides"),
        ],
        out,
        begin_mask=0,
        end_mask=end_mask,
        ellipsis_mask=0,
        new_axis_mask=0,
        shrink_axis_mask=0,
    )


def _subsampling_channel_axis(ctx: Lowering, x: str, stride) -> int | None:
    """The axis a strided Slice of ``x`` can run as the channels of a subsampling depthwise
    convolution (:func:`subsample`): a 4-D tensor, positive steps on at most two of the axes
    after the batch. Axis 1 when ``x`` is an NHWC result seen as NCHW (the layout pass then
    cancels the transposes), otherwise the last axis when it is not strided."""
    if len(stride) != 4 or stride[0] != 1 or any(s < 1 for s in stride):
        return None
    free = [a for a in (1, 2, 3) if stride[a] == 1]
    if not free:
        return None
    producer = ctx.out.producers().get(x)
    perm = ctx.out.const(producer.inputs[1]) if producer is not None and producer.op == "TRANSPOSE" else None
    nhwc_underneath = perm is not None and tuple(int(p) for p in perm) == NHWC_TO_NCHW
    if 1 in free and nhwc_underneath:
        return 1
    return 3 if 3 in free else free[0]


@lowers("Pad")
def pad(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    rank = len(ctx.shape(x))
    mode = node.attrs.get("mode", "constant")
    if "pads" in node.attrs:  # opset < 11
        pads = list(node.attrs["pads"])
        value = float(node.attrs.get("value", 0.0))
    else:
        pads = ctx.require_const(node.inputs[1], "Pad pads").tolist()
        value_const = ctx.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        value = float(value_const) if value_const is not None else 0.0
        if len(node.inputs) > 3 and node.inputs[3]:
            axes = [_axis(int(a), rank) for a in ctx.require_const(node.inputs[3], "Pad axes")]
            full = [0] * (2 * rank)
            for i, a in enumerate(axes):
                full[a], full[a + rank] = pads[i], pads[i + len(axes)]
            pads = full
    if any(p < 0 for p in pads):
        raise NotLowerable("unsupported_attribute", "negative padding")
    paddings = ctx.constant(np.array([[pads[i], pads[i + rank]] for i in range(rank)], np.int32), "paddings")
    out = node.outputs[0]
    if mode == "constant":
        if value == 0.0:
            ctx.op_to("PAD", [x, paddings], out)
        else:
            _pad_with_value(ctx, x, paddings, pads, value, out)
    elif mode in ("reflect", "edge"):
        if mode == "edge" and any(p > 1 for p in pads):
            raise NotLowerable("unsupported_attribute", "edge padding wider than 1")
        ctx.op_to("MIRROR_PAD", [x, paddings], out, mode="REFLECT" if mode == "reflect" else "SYMMETRIC")
    else:
        raise NotLowerable("unsupported_attribute", f"Pad mode '{mode}'")


def _pad_with_value(ctx: Lowering, x: str, paddings: str, pads: list[int], value: float, out: str) -> None:
    """Constant padding with a non-zero value: PAD with zeros, then ADD a constant that holds
    ``value`` on the border and 0 inside (exact in float). XNNPACK runs both, not PADV2."""
    if ctx.declare_dtype(out) != np.float32 or value >= -FLOAT_LOWEST:
        # no float ADD, or a border int8 could not hold next to the values: PADV2 as it is
        ctx.op_to("PADV2", [x, paddings, ctx.constant(np.array(value, ctx.declare_dtype(out)), "pad_value")], out)
        return
    rank = len(ctx.shape(x))
    out_shape = ctx.shape(out)
    padded = [bool(pads[a] or pads[a + rank]) for a in range(rank)]
    mask = np.full([out_shape[a] if padded[a] else 1 for a in range(rank)], value, np.float32)
    mask[tuple(slice(pads[a], out_shape[a] - pads[a + rank]) for a in range(rank))] = 0.0
    zero_padded = ctx.op_new("PAD", [x, paddings], out_shape, f"{out}_zero_padded")
    # a border far below any value (-inf before a max pool) is a mask: int8 saturates it to
    # the minimum of its input's range, as for the max pool's own padding
    role = {"_role": "pool_mask"} if value <= FLOAT_LOWEST else {}
    ctx.op_to(
        "ADD", [zero_padded, ctx.constant(mask, f"{out}_pad_value")], out, fused_activation_function="NONE", **role
    )


@lowers("Resize", "Upsample")
def resize(ctx: Lowering, node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    if len(ctx.shape(x)) != 4:
        raise NotLowerable("unsupported_rank", "Resize of a tensor that is not 4-D")
    n, c, h, w = ctx.shape(x)
    on, oc, oh, ow = ctx.shape(out)
    if (on, oc) != (n, c):
        raise NotLowerable("unsupported_attribute", "Resize of the batch or channel dimension")
    mode = node.attrs.get("mode", "nearest")
    transform = node.attrs.get("coordinate_transformation_mode", "half_pixel" if node.op == "Resize" else "asymmetric")
    if ctx.src.metadata.get("opset", 13) < 11 and node.op == "Resize":
        transform = "asymmetric"
    size = ctx.constant(np.array([oh, ow], np.int32), "size")
    flags = dict(
        align_corners=transform == "align_corners", half_pixel_centers=transform in ("half_pixel", "pytorch_half_pixel")
    )
    if transform not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
        raise NotLowerable("unsupported_attribute", f"Resize coordinate_transformation_mode '{transform}'")
    if transform == "pytorch_half_pixel" and (oh == 1 or ow == 1):
        raise NotLowerable("unsupported_attribute", "pytorch_half_pixel resize to a size of 1")
    if mode == "nearest":
        nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
        if (
            oh % h == 0
            and ow % w == 0
            and all(_repeats(size, factor, transform, nearest) for size, factor in ((h, oh // h), (w, ow // w)))
        ):
            _upsample_by_repeat(ctx, x, out, oh // h, ow // w)
            return
        if transform == "asymmetric" and nearest != "floor" and not (oh % h == 0 and ow % w == 0):
            raise NotLowerable("unsupported_attribute", f"nearest resize with nearest_mode '{nearest}'")
        op = "RESIZE_NEAREST_NEIGHBOR"
    elif mode in ("linear", "bilinear"):
        op = "RESIZE_BILINEAR"
    else:
        raise NotLowerable("unsupported_attribute", f"Resize mode '{mode}'")
    ctx.nhwc_result(op, [ctx.nhwc(x), size], out, **flags)


def _repeats(size: int, factor: int, transform: str, nearest: str) -> bool:
    """Whether ONNX's nearest resize by an integer ``factor`` picks source index i // factor for
    every output index (then it is a repeat of each pixel, whatever the modes say)."""
    out = np.arange(size * factor)
    if transform == "asymmetric":
        x = out / factor
    elif transform in ("half_pixel", "pytorch_half_pixel"):
        x = (out + 0.5) / factor - 0.5
    else:
        return False
    rounding = {
        "floor": np.floor(x),
        "ceil": np.ceil(x),
        "round_prefer_floor": np.ceil(x - 0.5),
        "round_prefer_ceil": np.floor(x + 0.5),
    }.get(nearest)
    return rounding is not None and np.array_equal(np.clip(rounding, 0, size - 1), out // factor)


def _upsample_by_repeat(ctx: Lowering, x: str, out: str, sh: int, sw: int) -> None:
    """Nearest upsampling by integer factors as RESHAPE to 6-D, a broadcasting ADD of zeros and a
    RESHAPE back: XNNPACK runs all three (it has no fp32 RESIZE_NEAREST_NEIGHBOR), exact in float,
    and in int8 an ADD of zero on one scale changes nothing."""
    from edgekit.converters.onnx.lowering.context import NCHW_TO_NHWC, NHWC_TO_NCHW

    n, c, h, w = ctx.shape(x)
    six = ctx.reshape(ctx.nhwc(x), (n, h, 1, w, 1, c))
    zeros = ctx.constant(np.zeros((1, 1, sh, 1, sw, 1), np.float32), "repeat")
    spread = ctx.op_new("ADD", [six, zeros], (n, h, sh, w, sw, c), f"{out}_repeat", fused_activation_function="NONE")
    y = ctx.reshape(spread, (n, h * sh, w * sw, c))
    ctx.out.metadata.setdefault("layouts", {})[y] = [out, list(NCHW_TO_NHWC)]
    ctx.declare(out)
    ctx.emit("TRANSPOSE", [y, ctx.constant(np.array(NHWC_TO_NCHW, np.int32), "perm")], [out])


_REDUCERS = {
    "ReduceMean": "MEAN",
    "ReduceMax": "REDUCE_MAX",
    "ReduceMin": "REDUCE_MIN",
    "ReduceSum": "SUM",
    "ReduceProd": "REDUCE_PROD",
}


def _reduction_axes(ctx: Lowering, node, rank: int) -> list[int]:
    if "axes" in node.attrs:
        axes = list(node.attrs["axes"])
    elif len(node.inputs) > 1 and node.inputs[1]:
        axes = ctx.require_const(node.inputs[1], "reduction axes").tolist()
    else:
        axes = [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(_axis(int(a), rank) for a in axes)


@lowers("ReduceL2")
def reduce_l2(ctx: Lowering, node) -> None:
    """sqrt(sum(x * x)) over the axes (exporters' torch.norm / F.normalize)."""
    x = ctx.use(node.inputs[0])
    rank = len(ctx.shape(x))
    axes = _reduction_axes(ctx, node, rank)
    out = node.outputs[0]
    if not axes:  # noop_with_empty_axes: the input as it is
        ctx.reshape(x, ctx.shape(out), out=out)
        return
    keep = bool(node.attrs.get("keepdims", 1))
    square = ctx.op_new("MUL", [x, x], ctx.shape(x), f"{out}_square", fused_activation_function="NONE")
    total = ctx.op_new(
        "SUM", [square, ctx.constant(np.array(axes, np.int32), "axes")], ctx.shape(out), f"{out}_sum", keep_dims=keep
    )
    ctx.op_to("SQRT", [total], out)


@lowers("Expand")
def expand(ctx: Lowering, node) -> None:
    """Broadcast to the (static) output shape as an ADD of zeros: XNNPACK broadcasts in ADD, it
    has no BROADCAST_TO."""
    x = ctx.use(node.inputs[0])
    out = node.outputs[0]
    zeros = ctx.constant(np.zeros(ctx.shape(out), ctx.dtype(node.inputs[0])), f"{out}_zeros")
    ctx.op_to("ADD", [x, zeros], out, fused_activation_function="NONE")


@lowers("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum")
def reduce(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    axes = _reduction_axes(ctx, node, len(ctx.shape(x)))
    out = node.outputs[0]
    if not axes:
        ctx.reshape(x, ctx.shape(out), out=out)
        return
    keep = bool(node.attrs.get("keepdims", 1))
    ctx.op_to(_REDUCERS[node.op], [x, ctx.constant(np.array(axes, np.int32), "axes")], out, keep_dims=keep)


@lowers("ArgMax", "ArgMin")
def arg_extreme(ctx: Lowering, node) -> None:
    """ARG_MAX / ARG_MIN along one axis (segmentation heads, classifiers ending in their decision).
    The indices are int32, as every integer tensor the converter writes (ONNX's are int64);
    keepdims adds the axis back with a RESHAPE."""
    if node.attrs.get("select_last_index", 0):
        raise NotLowerable("unsupported_attribute", f"{node.op} with select_last_index=1 (TFLite takes the first)")
    x = ctx.use(node.inputs[0])
    shape = ctx.shape(x)
    axis = _axis(int(node.attrs.get("axis", 0)), len(shape))
    op = "ARG_MAX" if node.op == "ArgMax" else "ARG_MIN"
    axis_const = ctx.constant(np.array([axis], np.int32), "axis")
    out = node.outputs[0]
    if not node.attrs.get("keepdims", 1):
        ctx.op_to(op, [x, axis_const], out, output_type="INT32")
        return
    reduced = tuple(d for i, d in enumerate(shape) if i != axis)
    indices = ctx.op_new(op, [x, axis_const], reduced, f"{out}_indices", dtype=np.int32, output_type="INT32")
    ctx.reshape(indices, ctx.shape(out), out=out)


@lowers("Gather")
def gather(ctx: Lowering, node) -> None:
    x = ctx.use(node.inputs[0])
    rank = len(ctx.shape(x))
    axis = _axis(int(node.attrs.get("axis", 0)), rank)
    indices = ctx.const(node.inputs[1])
    if indices is None:
        _gather_runtime(ctx, x, node.inputs[1], axis, node.outputs[0])
        return
    indices = np.where(indices < 0, indices + ctx.shape(x)[axis], indices).astype(np.int32)
    out = node.outputs[0]
    flat = indices.reshape(-1)
    if flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size)):
        # consecutive indices (one index; every index in order, as torch's dynamo exporter
        # writes as_strided): a SLICE and a RESHAPE, which XNNPACK runs, not GATHER
        if flat.size != ctx.shape(x)[axis]:
            begin, size = [0] * rank, list(ctx.shape(x))
            begin[axis], size[axis] = int(flat[0]), int(flat.size)
            x = _emit_slice(ctx, x, begin, size, None)
        ctx.reshape(x, ctx.shape(out), out=out)
        return
    ctx.op_to("GATHER", [x, ctx.constant(indices, "indices")], out, axis=axis, batch_dims=0)


# ops whose integer output is never negative: the indices they make need no wrapping
NONNEGATIVE_INDEX_PRODUCERS = frozenset({"ArgMax", "ArgMin"})


def _gather_runtime(ctx: Lowering, x: str, indices: str, axis: int, out: str) -> None:
    """GATHER with indices computed at run time (an embedding lookup). ONNX counts a negative
    index from the end, TFLite's GATHER refuses it: unless the indices cannot be negative, a
    FLOOR_MOD by the axis size wraps them first (exact for every index ONNX allows)."""
    index = ctx.use(indices)  # int32, as every integer the converter writes
    if not _nonnegative_indices(ctx, indices):
        size = ctx.constant(np.array(ctx.shape(x)[axis], np.int32), "axis_size")
        index = ctx.op_new("FLOOR_MOD", [index, size], ctx.shape(indices), f"{indices}_wrapped", np.int32)
    ctx.op_to("GATHER", [x, index], out, axis=axis, batch_dims=0)


def _nonnegative_indices(ctx: Lowering, name: str) -> bool:
    """Whether the integer source tensor ``name`` provably holds no negative value: unsigned or
    bool data, or an op making positions, seen through Casts and reshapes."""
    producers = ctx.src.producers()
    while True:
        if np.dtype(ctx.dtype(name)).kind in "ub":
            return True
        producer = producers.get(name)
        if producer is None:
            return False
        if producer.op in NONNEGATIVE_INDEX_PRODUCERS:
            return True
        if producer.op not in ("Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
            return False
        name = producer.inputs[0]


@lowers("SpaceToDepth", "DepthToSpace")
def space_depth(ctx: Lowering, node) -> None:
    """ONNX's SpaceToDepth and DepthToSpace in DCR mode order channels as (row in block, column in
    block, channel): TFLite's NHWC SPACE_TO_DEPTH / DEPTH_TO_SPACE order them the same way."""
    if len(ctx.shape(node.inputs[0])) != 4:
        raise NotLowerable("unsupported_rank", f"{node.op} on a {len(ctx.shape(node.inputs[0]))}-D tensor")
    if node.op == "DepthToSpace" and node.attrs.get("mode", "DCR") != "DCR":
        raise NotLowerable("unsupported_attribute", "DepthToSpace in CRD mode")
    op = "SPACE_TO_DEPTH" if node.op == "SpaceToDepth" else "DEPTH_TO_SPACE"
    ctx.nhwc_result(op, [ctx.nhwc(node.inputs[0])], node.outputs[0], block_size=int(node.attrs["blocksize"]))
