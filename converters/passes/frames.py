"""Rewrite a strided 1-D convolution on few channels (an audio front-end: silero-vad's STFT is a
Conv1d from 1 channel, kernel 256, stride 128) as a stride-1 convolution over frames of
``stride`` samples, the samples of a frame becoming channels (ONNX level, before lowering).

Why: int8 GEMM kernels pack the input channels of each kernel tap in groups (4 or 8 bytes on
Arm dot-product and x86 VNNI kernels), so one channel per tap leaves most of every group
padding: silero-vad's STFT convolution ran 7x slower in int8 than in float32 on a Xeon (0.095
against 0.014 ms) and made the whole int8 model slower than float32. Over frames the same
convolution reads ``stride * C`` channels per tap and ``ceil(kernel / stride)`` taps: the same
sums of the same products (exact in float; in int8 the one convolution is quantized the same
way, per output channel). Float32 kernels do not pad channels; for them it changes little.

Frames: ``frame[q, b] = x_padded[q * stride + b]``, so with the kernel zero-padded to whole
frames, ``y[t] = sum over taps a and offsets b of w[a * stride + b] * frame[t + a, b]``."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, Node

MAX_CHANNELS = 4


def _frameable(graph: Graph, node: Node) -> bool:
    if node.op != "Conv" or graph.const(node.inputs[1]) is None:
        return False
    if len(node.inputs) > 2 and node.inputs[2] and graph.const(node.inputs[2]) is None:
        return False
    x_shape = graph.shape(node.inputs[0])
    if len(x_shape) != 3 or int(node.attrs.get("group", 1)) != 1 or x_shape[1] > MAX_CHANNELS:
        return False
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return False
    if list(node.attrs.get("dilations", [1])) != [1]:
        return False
    stride = int(node.attrs.get("strides", [1])[0])
    return stride >= 2 and _frames(graph, node)[1] >= 1


def _frames(graph: Graph, node: Node) -> tuple[int, int, int]:
    """(taps over frames, frames, samples to append to the input: zeros, or when negative the
    samples at its end no output reads, to drop)."""
    stride = int(node.attrs["strides"][0])
    kernel = graph.const(node.inputs[1]).shape[2]
    pads = [0, 0] if node.attrs.get("auto_pad") == "VALID" else list(node.attrs.get("pads", [0, 0]))
    taps = -(-kernel // stride)
    frames = graph.shape(node.outputs[0])[2] + taps - 1
    # the frames end where the last output's last tap does; samples after that are never read
    extra = frames * stride - (pads[0] + graph.shape(node.inputs[0])[2])
    return taps, frames, extra


def frame_strided_convs(graph: Graph) -> Graph:
    """Rewrite every 1-D Conv on at most 4 channels with stride >= 2 (no dilation, no groups)."""
    for node in [n for n in graph.nodes if _frameable(graph, n)]:
        _rewrite(graph, node)
    graph.toposort()
    graph.remove_unused()
    return graph


def _rewrite(graph: Graph, node: Node) -> None:
    weights = graph.const(node.inputs[1])
    filters, channels, kernel = weights.shape
    stride = int(node.attrs["strides"][0])
    taps, frames, _ = _frames(graph, node)
    x, name = _whole_frames(graph, node), node.name
    n, dtype = graph.shape(x)[0], graph.dtype(x)
    split = graph.add_tensor(f"{x}_frames", (n, channels, frames, stride), dtype, unique=True)
    shape = graph.add_const(np.array([n, channels, frames, stride], np.int64), f"{name}_frame_shape")
    graph.add_node("Reshape", [x, shape], [split], name=f"{name}_frames")
    # channel b * C + c holds sample b of the frame in channel c: in NWC the frames are then a
    # reshape of the input, and the layout pass cancels this transpose with the convolution's
    moved = graph.add_tensor(f"{x}_frames_t", (n, stride, channels, frames), dtype, unique=True)
    graph.add_node("Transpose", [split], [moved], {"perm": [0, 3, 1, 2]}, name=f"{name}_frames_t")
    framed = graph.add_tensor(f"{x}_framed", (n, channels * stride, frames), dtype, unique=True)
    shape = graph.add_const(np.array([n, channels * stride, frames], np.int64), f"{name}_framed_shape")
    graph.add_node("Reshape", [moved, shape], [framed], name=f"{name}_framed")
    whole = np.zeros((filters, channels, taps * stride), weights.dtype)
    whole[:, :, :kernel] = weights
    folded = whole.reshape(filters, channels, taps, stride).transpose(0, 3, 1, 2).reshape(filters, -1, taps)
    node.inputs = [framed, graph.add_const(np.ascontiguousarray(folded), f"{name}_w_frames"), *node.inputs[2:]]
    node.attrs = {"kernel_shape": [taps], "strides": [1], "pads": [0, 0], "dilations": [1], "group": 1}


def _whole_frames(graph: Graph, node: Node) -> str:
    """The convolution's input padded (its left padding, zeros after) or cut (samples no output
    reads) to whole frames."""
    x, name = node.inputs[0], node.name
    n, channels, length = graph.shape(x)
    _, frames, extra = _frames(graph, node)
    left = 0 if node.attrs.get("auto_pad") == "VALID" else int(node.attrs.get("pads", [0, 0])[0])
    if extra < 0:
        cut = graph.add_tensor(f"{x}_frame_cut", (n, channels, length + extra), graph.dtype(x), unique=True)
        bounds = [graph.add_const(np.array([v], np.int64), f"{name}_frame_cut") for v in (0, length + extra, 2)]
        graph.add_node("Slice", [x, *bounds], [cut], name=f"{name}_frame_cut")
        x, length, extra = cut, length + extra, 0
    if left or extra:
        padded = graph.add_tensor(f"{x}_frame_pad", (n, channels, left + length + extra), graph.dtype(x), unique=True)
        amounts = graph.add_const(np.array([0, 0, left, 0, 0, extra], np.int64), f"{name}_frame_pads")
        graph.add_node("Pad", [x, amounts], [padded], {"mode": "constant"}, name=f"{name}_frame_pad")
        x = padded
    return x
