"""Rewrite a strided convolution on few input channels (the stem of most CNNs: 3 channels in,
stride 2) as SpaceToDepth -> stride-1 convolution -> DepthToSpace (ONNX level, before lowering).

Why: int8 GEMM kernels pack input channels per kernel tap in tiles (4 on Arm dot-product kernels,
64 on x86 AMX), so a 7x7 convolution on 3 channels fills 3/64 of each AMX tile and runs at a
fifteenth of the MAC rate of the layers after it. Folding a ``block`` x ``block`` patch into
channels gives ``block**2 * C`` channels per tap and fewer taps; computing ``r = block / stride``
outputs per row and column in channels (DepthToSpace puts them back) makes the convolution
stride 1. The arithmetic is the same sums of the same products (exact in float; in int8 the
one convolution is quantized the same way, per output channel).

The rewrite pays on CPUs with wide channel tiles; on Arm dot-product kernels it does about the
same work or more, so it is opt-in (``convert(..., stem_block=4)``)."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, Node
from edgekit.errors import ParameterError

MAX_CHANNELS = 4
_ELEMENTWISE = ("Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid")


def _rewritable(graph: Graph, node: Node, block: int) -> bool:
    if node.op != "Conv" or graph.const(node.inputs[1]) is None:
        return False
    if len(node.inputs) > 2 and node.inputs[2] and graph.const(node.inputs[2]) is None:
        return False
    x_shape, y_shape = graph.shape(node.inputs[0]), graph.shape(node.outputs[0])
    if len(x_shape) != 4 or int(node.attrs.get("group", 1)) != 1:
        return False
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return False
    if list(node.attrs.get("dilations", [1, 1])) != [1, 1]:
        return False
    strides = list(node.attrs.get("strides", [1, 1]))
    if strides[0] != strides[1] or strides[0] < 2 or block % strides[0]:
        return False
    r = block // strides[0]
    _, c, h, w = x_shape
    return c <= MAX_CHANNELS and h % block == 0 and w % block == 0 and y_shape[2] % r == 0 and y_shape[3] % r == 0


def _folded_weights(weights: np.ndarray, block: int, stride: int, pads_begin) -> tuple[np.ndarray, list, list]:
    """(stride-1 weights over the space-to-depth input, first tap offset per dim, taps per dim)."""
    f, c, kh, kw = weights.shape
    r = block // stride
    lo = [-((p + block - 1) // block) for p in pads_begin]  # floor(-p / block)
    hi = [(stride * (r - 1) - p + k - 1) // block for p, k in zip(pads_begin, (kh, kw), strict=True)]
    taps = [b - a + 1 for a, b in zip(lo, hi, strict=True)]
    folded = np.zeros((r * r * f, block * block * c, taps[0], taps[1]), weights.dtype)
    for i in range(r):
        for j in range(r):
            for u in range(block):
                for v in range(block):
                    for dy in range(taps[0]):
                        ky = block * (dy + lo[0]) + u - stride * i + pads_begin[0]
                        if not 0 <= ky < kh:
                            continue
                        for dx in range(taps[1]):
                            kx = block * (dx + lo[1]) + v - stride * j + pads_begin[1]
                            if not 0 <= kx < kw:
                                continue
                            out = slice((i * r + j) * f, (i * r + j + 1) * f)
                            inp = slice((u * block + v) * c, (u * block + v + 1) * c)
                            folded[out, inp, dy, dx] = weights[:, :, ky, kx]
    return folded, lo, taps


def space_to_depth_stem(graph: Graph, block: int = 4) -> Graph:
    """Rewrite every Conv on at most 4 channels with stride ``s`` >= 2 dividing ``block`` (and
    input sides divisible by ``block``); other convolutions are left alone. A model with none
    is refused: the option would do nothing."""
    rewritten = [_rewrite(graph, node, block) for node in [n for n in graph.nodes if _rewritable(graph, n, block)]]
    if not any(rewritten):
        raise ParameterError(
            f"{{stem_block}} changes nothing here: no convolution on at most {MAX_CHANNELS} channels has a stride "
            f"of 2 or more dividing {block}, with input sides divisible by {block}; leave it out",
            stem_block=block,
        )
    graph.toposort()
    graph.remove_unused()
    return graph


def _rewrite(graph: Graph, node: Node, block: int) -> bool:
    """Rewrite ``node``; False when its padding cannot be expressed over blocks."""
    weights = graph.const(node.inputs[1])
    stride = int(node.attrs["strides"][0])
    r = block // stride
    x, y = node.inputs[0], node.outputs[0]
    n, c, h, w = graph.shape(x)
    _, f, oh, ow = graph.shape(y)
    pads = [0, 0, 0, 0] if node.attrs.get("auto_pad") == "VALID" else list(node.attrs.get("pads", [0, 0, 0, 0]))
    folded, lo, taps = _folded_weights(weights, block, stride, pads[:2])
    sh, sw, th, tw = h // block, w // block, oh // r, ow // r
    new_pads = [-lo[0], -lo[1], th - 1 + taps[0] - sh + lo[0], tw - 1 + taps[1] - sw + lo[1]]
    if min(new_pads) < 0:
        return False
    bias = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.zeros(f, weights.dtype)
    s2d = graph.add_tensor(f"{x}_space_to_depth", (n, block * block * c, sh, sw), graph.dtype(x), unique=True)
    graph.add_node("SpaceToDepth", [x], [s2d], {"blocksize": block}, name=f"{node.name}_space_to_depth")
    conv_out = graph.add_tensor(f"{y}_blocks", (n, r * r * f, th, tw), graph.dtype(y), unique=True)
    node.inputs = [
        s2d,
        graph.add_const(folded, f"{node.name}_w_s2d"),
        graph.add_const(np.tile(bias, r * r), f"{node.name}_b_s2d"),
    ]
    node.outputs = [conv_out]
    node.attrs = {"kernel_shape": taps, "strides": [1, 1], "pads": new_pads, "group": 1}
    if r == 1:
        graph.replace_uses(y, conv_out)
        return True
    # an elementwise activation right after the conv commutes with DepthToSpace: keep it next to
    # the conv, where the lowering fuses it
    last = conv_out
    readers = graph.consumers().get(y, [])
    if len(readers) == 1 and readers[0].op in _ELEMENTWISE and y not in graph.outputs:
        act = readers[0]
        y = act.outputs[0]
        act_out = graph.add_tensor(f"{y}_blocks", (n, r * r * f, th, tw), graph.dtype(y), unique=True)
        act.inputs = [conv_out, *act.inputs[1:]]
        act.outputs = [act_out]
        last = act_out
    graph.add_node("DepthToSpace", [last], [y], {"blocksize": r, "mode": "DCR"}, name=f"{node.name}_depth_to_space")
    return True
