"""Activation equalization across a HardSwish, for int8 (SmoothQuant's idea, Xiao et al. 2022,
applied to the depthwise convolutions of MobileNetV3 / PP-LCNet backbones).

In ``Conv -> HardSwish -> [Mul/Add by constants] -> depthwise Conv`` the tensors between the
two convolutions hold channels whose ranges differ by 8-22x on PP-OCRv4's recogniser, and int8
gives each tensor one scale: the small channels keep a few levels, and the depthwise weights,
which amplify exactly those channels, amplify their rounding error. Dividing channel j by s_j
(s_j ~ its measured range) in the first convolution and multiplying the depthwise weights by
s_j equalizes them; both are per-channel int8 weights, so the weights lose nothing. HardSwish
is not homogeneous, so its gate is computed on the restored values: with ``x' = x / s``,
``HardSwish(x) / (s / 6) = x' * relu6(s * x' + 3)``, exact in float. ``s * x' + 3`` is a 1x1
depthwise convolution (its per-channel int8 weight holds s exactly) and the Mul/Add after the
HardSwish become one more (per-channel scale and shift): per chain two ops fewer, but
per-channel ops cost XNNPACK more than ops by a scalar (see :data:`RANGE_FLOOR`'s figures).
Only the gate input carries the unequal ranges, and the gate is insensitive to them.

The channel ranges come from the calibration samples run through the source model on
onnxruntime (:mod:`edgekit.converters.harness`), so the pass runs only for calibrated int8."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgekit.converters.ir.graph import Graph, Node

# Ranges below this share of the tensor's widest channel are raised to it. Nearly dead channels
# (a constant offset after the HardSwish) would otherwise be scaled up until their offset sets
# the tensor's range. Measured on PP-OCRv4's recogniser, lines read as onnxruntime reads them
# (96 held-out lines, three calibration sets of 24): 0.02 -> 67-81%, 0.05 -> 83-99%,
# 0.1 -> 70-79%; without the pass 56-72%. Its int8 latency: 0.42x -> 0.61-0.66x of float32.
RANGE_FLOOR = 0.05


@dataclass(frozen=True)
class HardSwishChain:
    """``conv -> hard_swish -> affine... -> depthwise``: the nodes the equalization rewrites."""

    conv: Node
    hard_swish: Node
    affine: tuple[Node, ...]  # Mul/Add by a constant scalar or per-channel vector, in order
    depthwise: Node

    @property
    def equalized(self) -> str:
        """The tensor whose channel ranges set the scales: what the depthwise convolution reads."""
        return self.depthwise.inputs[0]


def _channel_vector(graph: Graph, node: Node, channels: int) -> tuple[str, np.ndarray] | None:
    """(the data input, the constant as a [channels] vector) of a Mul/Add by a scalar or by a
    vector along the channel axis of a 4-D tensor; None for anything else."""
    if node.op not in ("Mul", "Add") or len(node.inputs) != 2:
        return None
    consts = [name for name in node.inputs if graph.const(name) is not None]
    if len(consts) != 1:
        return None
    value = graph.const(consts[0])
    data = node.inputs[1] if node.inputs[0] == consts[0] else node.inputs[0]
    if value.size == 1:
        return data, np.full(channels, float(value.reshape(())))
    if value.ndim <= 4 and (1,) * (4 - value.ndim) + value.shape == (1, channels, 1, 1):
        return data, value.reshape(channels).astype(np.float64)
    return None


def _depthwise_channels(graph: Graph, node: Node) -> int | None:
    weights = graph.const(node.inputs[1]) if node.op == "Conv" and len(node.inputs) > 1 else None
    if weights is None or weights.ndim != 4 or weights.shape[1] != 1:
        return None
    return weights.shape[0] if int(node.attrs.get("group", 1)) == weights.shape[0] else None


def hard_swish_chains(graph: Graph) -> list[HardSwishChain]:
    """Every ``Conv -> HardSwish -> [Mul/Add by constants] -> depthwise Conv`` whose
    intermediate tensors feed nothing else."""
    producers, consumers = graph.producers(), graph.consumers()

    def private(tensor: str) -> bool:
        return len(consumers.get(tensor, [])) == 1 and tensor not in graph.outputs

    chains = []
    for depthwise in graph.nodes:
        channels = _depthwise_channels(graph, depthwise)
        if channels is None or not private(depthwise.inputs[0]):
            continue
        affine, node = [], producers.get(depthwise.inputs[0])
        while node is not None and (found := _channel_vector(graph, node, channels)) and private(found[0]):
            affine.append(node)
            node = producers.get(found[0])
        if node is None or node.op != "HardSwish" or not private(node.inputs[0]):
            continue
        conv = producers.get(node.inputs[0])
        weights = graph.const(conv.inputs[1]) if conv is not None and conv.op == "Conv" else None
        if weights is None or weights.shape[0] != channels:
            continue
        chains.append(HardSwishChain(conv, node, tuple(affine[::-1]), depthwise))
    return chains


def channel_ranges(model, names: Sequence[str], samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |value| per channel (axis 1) of the tensors ``names`` of the ONNX ``model`` over
    ``samples`` (feeds by input name), on onnxruntime; names the model does not hold are left out."""
    from edgekit.converters.harness import OnnxRunner, exposing

    held = {o for node in model.graph.node for o in node.output}
    wanted = [name for name in dict.fromkeys(names) if name in held]
    if not wanted:
        return {}
    runner = OnnxRunner(exposing(model, wanted), optimization="none")
    ranges: dict[str, np.ndarray] = {}
    for feeds in samples:
        for name, value in runner(feeds).items():
            if value.ndim == 4:
                peak = np.abs(value).max(axis=(0, 2, 3)).astype(np.float64)
                ranges[name] = np.maximum(ranges.get(name, peak), peak)
    return ranges


def channel_scales(ranges: np.ndarray, floor: float = RANGE_FLOOR) -> np.ndarray:
    """s_j: the channel's range, at least ``floor`` times the widest, over their geometric mean."""
    raised = np.maximum(ranges, floor * ranges.max())
    if not raised.max() > 0:
        return np.ones_like(raised)
    return raised / np.exp(np.log(raised).mean())


def _scaled(graph: Graph, name: str, scale: np.ndarray, hint: str) -> str:
    """A constant ``name`` times ``scale`` along its first axis."""
    value = graph.const(name).astype(np.float64)
    return graph.add_const((value * scale.reshape((-1,) + (1,) * (value.ndim - 1))).astype(np.float32), hint)


def _renamed_output(graph: Graph, node: Node) -> str:
    """Give ``node`` a new output tensor: the values change, and per-layer comparisons with the
    source model match tensors by name."""
    old = node.outputs[0]
    new = graph.add_tensor(f"{old}_equalized", graph.shape(old), np.float32, unique=True)
    graph.replace_uses(old, new)
    node.outputs[0] = new
    return new


def equalize_chain(graph: Graph, chain: HardSwishChain, s: np.ndarray) -> None:
    """Rewrite one chain: the first convolution's output divided by ``s``, the tensors after the
    HardSwish by ``s / 6`` (the gate's 1/6 moves into the depthwise weights)."""
    conv, hard_swish = chain.conv, chain.hard_swish
    conv.inputs[1] = _scaled(graph, conv.inputs[1], 1 / s, f"{conv.name}_w_equalized")
    if len(conv.inputs) > 2 and conv.inputs[2]:
        conv.inputs[2] = _scaled(graph, conv.inputs[2], 1 / s, f"{conv.name}_b_equalized")
    x = _renamed_output(graph, conv)
    gate_in = graph.add_tensor(f"{x}_gate_in", graph.shape(x), np.float32, unique=True)
    gate = graph.add_tensor(f"{x}_gate", graph.shape(x), np.float32, unique=True)
    # relu6(s * x' + 3) as a 1x1 depthwise convolution: per-channel int8 weights hold s exactly
    restore = [graph.add_const(s.reshape(-1, 1, 1, 1).astype(np.float32), f"{hard_swish.name}_scales")]
    restore.append(graph.add_const(np.full(s.size, 3.0, np.float32), f"{hard_swish.name}_three"))
    at = graph.nodes.index(hard_swish)
    graph.nodes[at : at + 1] = [
        Node(
            "Conv", [x, *restore], [gate_in], {"group": s.size, "kernel_shape": [1, 1]}, name=f"{hard_swish.name}_gate"
        ),
        Node("Clip", [gate_in], [gate], {"min": 0.0, "max": 6.0}, name=f"{hard_swish.name}_relu6"),
        Node("Mul", [x, gate], list(hard_swish.outputs), {}, name=hard_swish.name),
    ]
    _renamed_output(graph, graph.nodes[at + 2])
    t = s / 6
    if chain.affine:  # one per-channel affine, (m * v + c) / t = m * (v / t) + c / t: one op instead of several
        m, c = _composed_affine(graph, chain.affine, s.size)
        last = chain.affine[-1]
        h = graph.nodes[at + 2].outputs[0]
        weights = graph.add_const(m.reshape(-1, 1, 1, 1).astype(np.float32), f"{last.name}_scales")
        shift = graph.add_const((c / t).astype(np.float32), f"{last.name}_shifts")
        attrs = {"group": s.size, "kernel_shape": [1, 1]}
        affine = Node("Conv", [h, weights, shift], list(last.outputs), attrs, name=last.name)
        for node in chain.affine:
            graph.nodes.remove(node)
        graph.nodes.insert(at + 3, affine)
        _renamed_output(graph, affine)
    chain.depthwise.inputs[1] = _scaled(graph, chain.depthwise.inputs[1], t, f"{chain.depthwise.name}_w_equalized")


def _composed_affine(graph: Graph, nodes: Sequence[Node], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, c): the Mul/Add chain ``nodes`` as v -> m * v + c per channel."""
    m, c = np.ones(channels), np.zeros(channels)
    for node in nodes:
        _, vector = _channel_vector(graph, node, channels)
        m, c = (m * vector, c * vector) if node.op == "Mul" else (m, c + vector)
    return m, c


def smooth_activations(graph: Graph, ranges: Mapping[str, np.ndarray], floor: float = RANGE_FLOOR) -> Graph:
    """Equalize every :func:`hard_swish_chains` chain whose depthwise input has measured
    ``ranges`` (tensor name -> max |value| per channel, e.g. from :func:`channel_ranges`)."""
    for chain in hard_swish_chains(graph):
        measured = ranges.get(chain.equalized)
        if measured is not None and measured.size == _depthwise_channels(graph, chain.depthwise):
            equalize_chain(graph, chain, channel_scales(np.asarray(measured, np.float64), floor))
    graph.remove_unused()
    return graph
