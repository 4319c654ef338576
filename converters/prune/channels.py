"""Structured channel pruning on an ONNX model: fewer channels, smaller convolutions.

A prunable group is a convolution's output channels together with everything that must
shrink with them: the BatchNormalization and element-wise activation after it, a depthwise
convolution (and its BatchNormalization/activation) in between, and the input channels of the
convolution or Gemm that reads the result. Tensors that feed an Add, a Concat or a graph output
are left alone (their channel count is tied to other branches), so residual and concatenated
channels keep their size."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.errors import InputError, UnsupportedModelError

# ops the channels pass through one to one (Flatten only matters after a global pool: a Gemm
# that reads more features than there are channels is not taken as the group's consumer)
ELEMENTWISE = frozenset(
    {
        "Relu",
        "Clip",
        "LeakyRelu",
        "HardSwish",
        "HardSigmoid",
        "Sigmoid",
        "Elu",
        "Tanh",
        "PRelu",
        "Identity",
        "Dropout",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Flatten",
    }
)


@dataclass
class ChannelGroup:
    """One prunable set: ``producer``'s output channels and what follows them."""

    producer: onnx.NodeProto
    channels: int
    batchnorms: list[onnx.NodeProto] = field(default_factory=list)
    depthwise: list[onnx.NodeProto] = field(default_factory=list)
    consumer: onnx.NodeProto | None = None

    @property
    def name(self) -> str:
        return self.producer.name or self.producer.output[0]


# importance criteria: weights [O, ...] -> one score per output channel (low = pruned first)
def _l1(w: np.ndarray) -> np.ndarray:
    return np.abs(w.reshape(w.shape[0], -1)).sum(1)


def _l2(w: np.ndarray) -> np.ndarray:
    return np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(1))


def _fpgm(w: np.ndarray) -> np.ndarray:
    """Filter pruning via geometric median: filters close to all others are redundant."""
    flat = w.reshape(w.shape[0], -1)
    distances = np.sqrt(((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1))
    return distances.sum(1)


CRITERIA: dict[str, Callable[[np.ndarray], np.ndarray]] = {"l1": _l1, "l2": _l2, "fpgm": _fpgm}


def constants_to_initializers(model: onnx.ModelProto) -> None:
    """Exporters emit some weights as Constant nodes, or as Identity of a shared initializer;
    pruning edits initializers only, so both become initializers of their own."""
    inits = {i.name: i for i in model.graph.initializer}
    foldable = [
        n
        for n in model.graph.node
        if (n.op_type == "Constant" and any(a.name == "value" for a in n.attribute))
        or (n.op_type == "Identity" and n.input[0] in inits)
    ]
    if not foldable:
        return  # (rebuilding the node list would orphan NodeProto references held elsewhere)
    kept = []
    for node in model.graph.node:
        if node in foldable:
            if node.op_type == "Constant":
                value = numpy_helper.to_array(next(a for a in node.attribute if a.name == "value").t)
            else:
                value = numpy_helper.to_array(inits[node.input[0]])
            model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


class _Model:
    def __init__(self, model: onnx.ModelProto) -> None:
        constants_to_initializers(model)
        self.model = model
        self.inits = {i.name: i for i in model.graph.initializer}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in model.graph.output}

    def array(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def set_input(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        """Give ``node`` a new value for its constant input ``index``; an initializer other
        nodes share (exporters deduplicate equal tensors) is copied, not changed for all."""
        name = node.input[index]
        value = value.astype(numpy_helper.to_array(self.inits[name]).dtype)
        if len(self.consumers.get(name, [])) > 1:
            new = f"{name}__pruned_{len(self.inits)}"
            self.model.graph.initializer.append(numpy_helper.from_array(value, new))
            self.inits[new] = self.model.graph.initializer[-1]
            self.consumers[name].remove(node)
            self.consumers[new] = [node]
            node.input[index] = new
        else:
            self.inits[name].CopyFrom(numpy_helper.from_array(value, name))

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def find_groups(model: onnx.ModelProto, exclude: set[str] | frozenset[str] = frozenset()) -> list[ChannelGroup]:
    m = _Model(model)
    groups = []
    for node in model.graph.node:
        if node.op_type != "Conv" or int(_attr(node, "group", 1)) != 1 or m.array(node.input[1]) is None:
            continue
        if node.name in exclude or node.output[0] in exclude:
            continue
        group = ChannelGroup(node, m.array(node.input[1]).shape[0])
        tensor, ok = node.output[0], False
        while True:
            nxt = m.only_consumer(tensor)
            if nxt is None:
                break
            if nxt.op_type == "BatchNormalization":
                group.batchnorms.append(nxt)
            elif nxt.op_type in ELEMENTWISE and nxt.input[0] == tensor:
                if nxt.op_type == "PRelu" and (m.array(nxt.input[1]) is None or m.array(nxt.input[1]).size != 1):
                    break
            elif nxt.op_type == "Conv" and nxt.input[0] == tensor and m.array(nxt.input[1]) is not None:
                g = int(_attr(nxt, "group", 1))
                if g == group.channels and m.array(nxt.input[1]).shape[:2] == (group.channels, 1):
                    group.depthwise.append(nxt)  # the channels run through it
                elif g == 1:
                    group.consumer, ok = nxt, True
                    break
                else:
                    break
            elif nxt.op_type == "Gemm" and nxt.input[0] == tensor and m.array(nxt.input[1]) is not None:
                w = m.array(nxt.input[1])
                if w.shape[1 if int(_attr(nxt, "transB", 0)) else 0] == group.channels:
                    group.consumer, ok = nxt, True
                break
            else:
                break
            tensor = nxt.output[0]
        if ok:
            groups.append(group)
    return groups


def kept_count(channels: int, ratio: float, min_channels: int = 1, round_to: int = 1) -> int:
    """How many of ``channels`` a group pruned by ``ratio`` keeps: at least ``min_channels``, and
    for groups wider than ``round_to`` a multiple of it (the nearest; XNNPACK packs channels in
    tiles of 8, 16 or 32, so a partial tile costs about as much as a full one)."""
    count = int(round(channels * (1 - ratio)))
    if round_to > 1 and channels > round_to:
        count = max(round_to, int(count / round_to + 0.5) * round_to)
    return min(max(count, min_channels, 1), channels)


def _keep(
    group: ChannelGroup, m: _Model, ratio: float, criterion: str, min_channels: int, round_to: int = 1
) -> np.ndarray:
    scores = CRITERIA[criterion](m.array(group.producer.input[1]))
    count = kept_count(group.channels, ratio, min_channels, round_to)
    return np.sort(np.argsort(-scores)[:count])


# kept channel counts are rounded to a multiple of this in groups wider than it (1: no rounding);
# measured by bench/prune.py: MobileNetV2 at 50% MACs runs 1.5x faster than dense without, 1.8x with
ROUND_TO = 8

# metadata key under which a pruned model records, per pruned tensor, which of the original
# channels it kept (what bias correction needs to line the pruned model up with the dense one)
KEPT_KEY = "edgekit.pruned_channels"


def kept_channels(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Tensor name -> indices of the original channels kept, as recorded by :func:`prune_channels`
    (empty for a model it did not write)."""
    for prop in model.metadata_props:
        if prop.key == KEPT_KEY:
            return {k: list(v) for k, v in json.loads(prop.value).items()}
    return {}


def _record_kept(model: onnx.ModelProto, kept: dict[str, list[int]]) -> None:
    """Merge ``kept`` (indices into the model's current channels) into its record, composing with
    an earlier pruning so the indices always refer to the original model."""
    record = kept_channels(model)
    for tensor, keep in kept.items():
        before = record.get(tensor)
        record[tensor] = [int(before[i]) for i in keep] if before else [int(i) for i in keep]
    for prop in list(model.metadata_props):
        if prop.key == KEPT_KEY:
            model.metadata_props.remove(prop)
    model.metadata_props.add(key=KEPT_KEY, value=json.dumps(record, separators=(",", ":")))


def group_tensors(group: ChannelGroup, m: _Model) -> list[str]:
    """The tensors that carry the group's channels (from the producer to the consumer's input)."""
    tensors, tensor = [], group.producer.output[0]
    while True:
        tensors.append(tensor)
        nxt = m.only_consumer(tensor)
        if nxt is None or nxt is group.consumer:
            return tensors
        tensor = nxt.output[0]


def _apply(group: ChannelGroup, m: _Model, keep: np.ndarray) -> None:
    def take(node: onnx.NodeProto, index: int, axis: int = 0) -> None:
        m.set_input(node, index, np.take(m.array(node.input[index]), keep, axis=axis))

    p = group.producer
    take(p, 1)
    if len(p.input) > 2 and p.input[2]:
        take(p, 2)
    for bn in group.batchnorms:
        for index in range(1, 5):
            take(bn, index)
    for dw in group.depthwise:
        take(dw, 1)
        if len(dw.input) > 2 and dw.input[2]:
            take(dw, 2)
        for a in dw.attribute:
            if a.name == "group":
                a.i = int(len(keep))
    c = group.consumer
    if c.op_type == "Conv":
        take(c, 1, axis=1)
        return
    trans_b = int(_attr(c, "transB", 0))  # Gemm: the input features are the channels
    if m.array(c.input[1]).shape[1 if trans_b else 0] != group.channels:
        raise UnsupportedModelError(f"cannot prune {group.name}: its Gemm reads more than the channels")
    take(c, 1, axis=1 if trans_b else 0)


def prune_channels(
    model: onnx.ModelProto,
    ratio: float | dict[str, float],
    criterion: str = "l1",
    min_channels: int = 1,
    exclude: set[str] | frozenset[str] = frozenset(),
    round_to: int = ROUND_TO,
) -> onnx.ModelProto:
    """A copy of ``model`` with ``ratio`` of each prunable group's channels removed (a float
    for every group, or group name -> ratio); ``round_to`` N keeps a multiple of N channels in
    groups wider than N."""
    if criterion not in CRITERIA:
        raise InputError(f"unknown criterion '{criterion}'; choose {', '.join(CRITERIA)}")
    if round_to < 1:
        raise InputError(f"--round-to {round_to} must be a positive channel count, e.g. 8")
    ratios = ratio.values() if isinstance(ratio, dict) else [ratio]
    if any(not 0 < r < 1 for r in ratios):
        raise InputError("pruning ratios must lie strictly between 0 and 1, e.g. --ratio 0.5")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    constants_to_initializers(out)
    groups = find_groups(out, exclude)
    if not groups:
        why = "every prunable layer is excluded" if exclude and find_groups(model) else "nothing is prunable"
        raise InputError(f"cannot prune: {why} (channel pruning needs Conv -> [BN/activation] -> Conv/Gemm chains)")
    m = _Model(out)
    kept: dict[str, list[int]] = {}
    for group in groups:
        r = ratio.get(group.name) if isinstance(ratio, dict) else ratio
        if r:
            keep = _keep(group, m, r, criterion, min_channels, round_to)
            kept.update({t: keep.tolist() for t in group_tensors(group, m)})
            _apply(group, m, keep)
    _record_kept(out, kept)
    del out.graph.value_info[:]
    return out
