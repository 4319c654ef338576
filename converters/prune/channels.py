"""Structured channel pruning on an ONNX model: fewer channels, smaller convolutions.

A prunable group is a set of channels that must shrink together, found by following each
convolution's output channels through the graph (a dependency graph, as in DepGraph):
- the BatchNormalization, element-wise activations and pools they pass through, and depthwise
  convolutions (whose channels are the same channels);
- residual joins: an Add, Sub, Mul, Div, Max or Min of two tensors carrying channels makes them
  one group, so a ResNet stage's stem or downsample convolution, every block's last convolution
  and the blocks' inputs are pruned together with the same channel indices (and an SE block's
  scale with the tensor it scales);
- the input channels of every Conv and Gemm (after a global pool) that reads them.
Channels that reach a Concat, a Reshape or Transpose, a grouped convolution, a graph input or
output, a per-channel constant or any other op are tied to something pruning cannot follow, and
their whole group is left as it is."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.errors import InputError, UnsupportedModelError

# ops the channels pass through one to one
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
# element-wise binary ops: two tensors carrying channels become one group; a scalar constant
# operand passes
JOINS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min"})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})


@dataclass
class ChannelGroup:
    """One prunable set of ``channels``: the convolutions that produce them, what they pass
    through, and the layers that read them."""

    producers: list[onnx.NodeProto]
    channels: int
    batchnorms: list[onnx.NodeProto] = field(default_factory=list)
    depthwise: list[onnx.NodeProto] = field(default_factory=list)
    consumers: list[onnx.NodeProto] = field(default_factory=list)
    joins: list[onnx.NodeProto] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)
    tied: str = ""  # why the group cannot be pruned ("" when it can)

    @property
    def producer(self) -> onnx.NodeProto:
        return self.producers[0]

    @property
    def name(self) -> str:
        return self.producer.name or self.producer.output[0]

    def merge(self, other: ChannelGroup) -> None:
        for attr in ("producers", "batchnorms", "depthwise", "consumers", "joins", "tensors"):
            mine = getattr(self, attr)
            mine.extend(x for x in getattr(other, attr) if not any(x is y for y in mine))
        self.tied = self.tied or other.tied


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


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _reduce_axes(node: onnx.NodeProto, m: _Model) -> set[int] | None:
    axes = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = m.array(node.input[1])
        axes = None if value is None else value.tolist()
    return None if axes is None else {int(a) % 4 for a in axes}


def find_groups(model: onnx.ModelProto, exclude: set[str] | frozenset[str] = frozenset()) -> list[ChannelGroup]:
    """The prunable channel groups of ``model``, in graph order of their first producer."""
    return [g for g in _all_groups(model) if not g.tied and not _excluded(g, exclude)]


def _excluded(group: ChannelGroup, exclude: set[str] | frozenset[str]) -> bool:
    return any(p.name in exclude or p.output[0] in exclude for p in group.producers)


def _all_groups(model: onnx.ModelProto) -> list[ChannelGroup]:
    """Every channel group, prunable or tied, by following channels from each Conv through the
    graph (nodes are in topological order, as ONNX requires)."""
    m = _Model(model)
    parent: dict[int, int] = {}
    groups: dict[int, ChannelGroup] = {}
    of_tensor: dict[str, int] = {}  # tensor -> its group's id (before finding the root)
    pooled: set[str] = set()  # tensors whose spatial size is 1x1 (after a global pool)

    def root(gid: int) -> int:
        while parent[gid] != gid:
            parent[gid] = parent[parent[gid]]
            gid = parent[gid]
        return gid

    def group_of(tensor: str) -> ChannelGroup | None:
        gid = of_tensor.get(tensor)
        return None if gid is None else groups[root(gid)]

    ids: dict[int, int] = {}  # id(group) -> its root id

    def join(tensor: str, group: ChannelGroup) -> None:
        of_tensor[tensor] = ids[id(group)]
        group.tensors.append(tensor)

    def union(a: ChannelGroup, b: ChannelGroup) -> ChannelGroup:
        ra, rb = ids[id(a)], ids[id(b)]
        if ra == rb:
            return a
        parent[rb] = ra
        a.merge(b)
        del groups[rb], ids[id(b)]
        return a

    def tie(tensor: str, why: str) -> None:
        g = group_of(tensor)
        if g is not None and not g.tied:
            g.tied = why

    for node in model.graph.node:
        op = node.op_type
        ins = [t for t in node.input if t]
        carried = [t for t in ins if group_of(t) is not None]
        w = m.array(ins[1]) if op == "Conv" and len(ins) > 1 else None
        if w is not None:
            g = int(_attr(node, "group", 1))
            source = group_of(ins[0])
            if g > 1 and source is not None and g == source.channels and w.shape[:2] == (source.channels, 1):
                source.depthwise.append(node)  # a depthwise convolution carries the same channels
                join(node.output[0], source)
                continue
            if g > 1:
                for t in carried:
                    tie(t, f"read by the grouped convolution {node.name or node.output[0]}")
                continue
            if source is not None:
                source.consumers.append(node)
                if w.shape[1] != source.channels:
                    tie(ins[0], f"{node.name or node.output[0]} reads a different channel count")
            for t in carried[1:]:
                tie(t, f"a constant input of {node.name or node.output[0]}")
            gid = len(parent)
            parent[gid] = gid
            groups[gid] = ChannelGroup([node], int(w.shape[0]))
            ids[id(groups[gid])] = gid
            join(node.output[0], groups[gid])
            continue
        if not carried:
            continue
        group = group_of(carried[0])
        name = node.name or (node.output[0] if node.output else op)
        if op == "BatchNormalization" and node.input[0] == carried[0] and len(carried) == 1:
            group.batchnorms.append(node)
            join(node.output[0], group)
        elif op in ELEMENTWISE and node.input[0] == carried[0] and len(carried) == 1:
            if op == "PRelu" and (m.array(node.input[1]) is None or m.array(node.input[1]).size != 1):
                tie(carried[0], f"the per-channel PRelu {name}")
                continue
            if op == "Flatten" and carried[0] not in pooled:
                tie(carried[0], f"flattened with its spatial positions by {name}")
                continue
            join(node.output[0], group)
            if op in GLOBAL_POOLS or (op == "Flatten" and carried[0] in pooled):
                pooled.add(node.output[0])
        elif op in ("ReduceMean", "ReduceMax") and len(carried) == 1 and node.input[0] == carried[0]:
            axes = _reduce_axes(node, m)
            if axes is None or 1 in axes:
                tie(carried[0], f"reduced over channels by {name}")
                continue
            join(node.output[0], group)
            if {2, 3} <= axes:
                pooled.add(node.output[0])
        elif op in JOINS and len(ins) == 2:
            others = [t for t in ins if t not in carried]
            if others:
                const = m.array(others[0])
                if const is None or const.size != 1:
                    tie(carried[0], f"joined with a tensor pruning cannot follow by {name}")
                    continue
            else:
                second = group_of(carried[1])
                if second.channels != group.channels:
                    tie(carried[0], f"broadcast against other channels by {name}")
                    tie(carried[1], f"broadcast against other channels by {name}")
                    continue
                group = union(group, second)
            group.joins.append(node)
            join(node.output[0], group)
            if all(t in pooled for t in ins if t in carried) and len(carried) == len(ins):
                pooled.add(node.output[0])
        elif op == "Gemm" and node.input[0] == carried[0] and m.array(node.input[1]) is not None:
            w = m.array(node.input[1])
            features = w.shape[1 if int(_attr(node, "transB", 0)) else 0]
            if carried[0] not in pooled or features != group.channels:
                tie(carried[0], f"read as features by {name} (not after a global pool)")
                continue
            group.consumers.append(node)
        else:
            for t in carried:
                tie(t, f"reaches {op} {name}")
    for tensor in m.outputs:
        tie(tensor, f"a graph output ({tensor})")
    order = {id(n): i for i, n in enumerate(model.graph.node)}
    result = []
    for g in groups.values():
        if not g.consumers and not g.tied:
            g.tied = "nothing reads the channels"
        g.producers.sort(key=lambda n: order[id(n)])  # named after its first producer in the graph
        result.append(g)
    return sorted(result, key=lambda g: order[id(g.producer)])


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
    """The channels to keep: highest importance summed over the group's producers, each
    producer's scores normalised by their mean so no one layer's weight scale decides."""
    scores = np.zeros(group.channels)
    for producer in group.producers:
        s = CRITERIA[criterion](m.array(producer.input[1]))
        scores += s / s.mean() if s.mean() > 0 else s
    count = kept_count(group.channels, ratio, min_channels, round_to)
    return np.sort(np.argsort(-scores, kind="stable")[:count])


# kept channel counts are rounded to a multiple of this in groups wider than it (1: no rounding).
# XNNPACK's int8 GEMMs work on 16 output channels at a time on Cortex-A53/A55 (Coral), on Cortex-A76
# with dot products (Pi 5) and with AVX512-VNNI, 8 on Cortex-A72 (Pi 4) and AVX2, so 16 is a whole
# tile on all of them. bench/prune.py, MobileNetV2 at 50% MACs, 1 thread, five runs on AVX512-VNNI
# EPYCs: unrounded 1.34-1.40x, 8 1.44-1.61x, 16 1.64-1.75x (AVX2 EPYC: 8 1.66x, 16 1.71x)
ROUND_TO = 16

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


def _apply(group: ChannelGroup, m: _Model, keep: np.ndarray) -> None:
    def take(node: onnx.NodeProto, index: int, axis: int = 0) -> None:
        m.set_input(node, index, np.take(m.array(node.input[index]), keep, axis=axis))

    for p in group.producers:
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
    for c in group.consumers:
        if c.op_type == "Conv":
            take(c, 1, axis=1)
            continue
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
            kept.update({t: keep.tolist() for t in group.tensors})
            _apply(group, m, keep)
    _record_kept(out, kept)
    del out.graph.value_info[:]
    return out
