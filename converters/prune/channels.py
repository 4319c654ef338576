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
their whole group is left as it is.

What each op kind does to the channels is one rule (``@channel_rule("Op")``, the dependency) and,
for ops with per-channel parameters, one cut (``@cuts_outputs`` / ``@cuts_inputs``, the slicing),
next to each other below, as Torch-Pruning has one pruner per layer type: teaching the pruner an
op is one section in this module."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.errors import InputError, ParameterError, UnsupportedModelError


@dataclass
class ChannelGroup:
    """One prunable set of ``channels``: the convolutions that produce them, what they pass
    through, and the layers that read them."""

    producers: list[onnx.NodeProto]
    channels: int
    # nodes the channels pass through that hold per-channel parameters (BatchNormalization,
    # depthwise Conv): cut like the producers
    carriers: list[onnx.NodeProto] = field(default_factory=list)
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

    @property
    def batchnorms(self) -> list[onnx.NodeProto]:
        return [n for n in self.carriers if n.op_type == "BatchNormalization"]

    @property
    def depthwise(self) -> list[onnx.NodeProto]:
        return [n for n in self.carriers if n.op_type == "Conv"]

    def merge(self, other: ChannelGroup) -> None:
        for attr in ("producers", "carriers", "consumers", "joins", "tensors"):
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

    def take(self, node: onnx.NodeProto, index: int, keep: np.ndarray, axis: int = 0) -> None:
        """Keep only the ``keep`` entries along ``axis`` of ``node``'s constant input ``index``."""
        self.set_input(node, index, np.take(self.array(node.input[index]), keep, axis=axis))


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


@dataclass
class _Step:
    """One node as the walk meets it: its inputs, and those of them that carry channels."""

    node: onnx.NodeProto
    inputs: list[str]  # the inputs given (optional ones left out)
    carried: list[str]  # those that carry a group's channels
    group: ChannelGroup | None  # the group of carried[0]

    @property
    def name(self) -> str:
        return self.node.name or (self.node.output[0] if self.node.output else self.node.op_type)

    @property
    def passes_through(self) -> bool:
        """One tensor carrying channels, as the node's data input (the others are parameters)."""
        return len(self.carried) == 1 and self.node.input[0] == self.carried[0]


class _Walk:
    """The groups found so far while following channels through the graph in node order; groups
    that meet at a join become one (union-find, with path halving)."""

    def __init__(self, m: _Model) -> None:
        self.m = m
        self.parent: dict[int, int] = {}
        self.groups: dict[int, ChannelGroup] = {}  # root id -> group
        self.ids: dict[int, int] = {}  # id(group) -> its root id
        self.of_tensor: dict[str, int] = {}  # tensor -> its group's id (before finding the root)
        self.pooled: set[str] = set()  # tensors whose spatial size is 1x1 (after a global pool)

    def root(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def group_of(self, tensor: str) -> ChannelGroup | None:
        gid = self.of_tensor.get(tensor)
        return None if gid is None else self.groups[self.root(gid)]

    def step(self, node: onnx.NodeProto) -> _Step:
        inputs = [t for t in node.input if t]
        carried = [t for t in inputs if self.group_of(t) is not None]
        return _Step(node, inputs, carried, self.group_of(carried[0]) if carried else None)

    def start(self, producer: onnx.NodeProto, channels: int) -> None:
        """A new group: the output channels of ``producer``."""
        gid = len(self.parent)
        self.parent[gid] = gid
        self.groups[gid] = ChannelGroup([producer], channels)
        self.ids[id(self.groups[gid])] = gid
        self.join(producer.output[0], self.groups[gid])

    def join(self, tensor: str, group: ChannelGroup) -> None:
        """``tensor`` carries ``group``'s channels."""
        self.of_tensor[tensor] = self.ids[id(group)]
        group.tensors.append(tensor)

    def union(self, a: ChannelGroup, b: ChannelGroup) -> ChannelGroup:
        ra, rb = self.ids[id(a)], self.ids[id(b)]
        if ra == rb:
            return a
        self.parent[rb] = ra
        a.merge(b)
        del self.groups[rb], self.ids[id(b)]
        return a

    def tie(self, tensor: str, why: str) -> None:
        g = self.group_of(tensor)
        if g is not None and not g.tied:
            g.tied = why

    def finish(self, model: onnx.ModelProto) -> list[ChannelGroup]:
        """Every group, in graph order of its first producer; channels that reach a graph output
        or that nothing reads are tied."""
        for tensor in self.m.outputs:
            self.tie(tensor, f"a graph output ({tensor})")
        order = {id(n): i for i, n in enumerate(model.graph.node)}
        result = []
        for g in self.groups.values():
            if not g.consumers and not g.tied:
                g.tied = "nothing reads the channels"
            g.producers.sort(key=lambda n: order[id(n)])  # named after its first producer in the graph
            result.append(g)
        return sorted(result, key=lambda g: order[id(g.producer)])


# op type -> its dependency rule: what the node does with the channels it meets. A rule returns
# False for a use it cannot follow; the channels are then tied ("reaches Op name"), as they are
# at every op without a rule.
ChannelRule = Callable[[_Walk, _Step], bool]
CHANNEL_RULES: dict[str, ChannelRule] = {}
# op type -> how to cut the node's parameters indexed by the channels it writes (as a producer
# or carrier) or reads (as a consumer). Carriers are cut op type by op type in the order their
# cuts are registered: when nodes share an initializer, the order decides which keeps its name.
OUTPUT_CUTS: dict[str, Callable[[_Model, onnx.NodeProto, np.ndarray], None]] = {}
INPUT_CUTS: dict[str, Callable[[_Model, onnx.NodeProto, np.ndarray, ChannelGroup], None]] = {}


def _registrar(table: dict, what: str, ops: tuple[str, ...]):
    def register(fn):
        for op in ops:
            if op in table:
                raise RuntimeError(f"two {what} for {op}")
            table[op] = fn
        return fn

    return register


def channel_rule(*ops: str):
    return _registrar(CHANNEL_RULES, "channel rules", ops)


def cuts_outputs(*ops: str):
    return _registrar(OUTPUT_CUTS, "output cuts", ops)


def cuts_inputs(*ops: str):
    return _registrar(INPUT_CUTS, "input cuts", ops)


# One section per op kind: its rule and its cuts. BatchNormalization's section comes first so its
# cut is registered before Conv's: a group's BatchNormalizations are cut before its depthwise Convs.


@channel_rule("BatchNormalization")
def _batchnorm(walk: _Walk, step: _Step) -> bool:
    if not step.passes_through:
        return False
    step.group.carriers.append(step.node)
    walk.join(step.node.output[0], step.group)
    return True


@cuts_outputs("BatchNormalization")
def _cut_batchnorm(m: _Model, node: onnx.NodeProto, keep: np.ndarray) -> None:
    for index in range(1, 5):  # scale, bias, mean, variance
        m.take(node, index, keep)


@channel_rule("Conv")
def _conv(walk: _Walk, step: _Step) -> bool:
    """A Conv with constant weights starts a group of its output channels and reads its input's
    group; a depthwise one carries its input's channels instead."""
    node, inputs = step.node, step.inputs
    w = walk.m.array(inputs[1]) if len(inputs) > 1 else None
    if w is None:
        return False
    g = int(_attr(node, "group", 1))
    source = walk.group_of(inputs[0])
    if g > 1 and source is not None and g == source.channels and w.shape[:2] == (source.channels, 1):
        source.carriers.append(node)
        walk.join(node.output[0], source)
        return True
    if g > 1:
        for t in step.carried:
            walk.tie(t, f"read by the grouped convolution {step.name}")
        return True
    if source is not None:
        source.consumers.append(node)
        if w.shape[1] != source.channels:
            walk.tie(inputs[0], f"{step.name} reads a different channel count")
    for t in step.carried[1:]:
        walk.tie(t, f"a constant input of {step.name}")
    walk.start(node, int(w.shape[0]))
    return True


@cuts_outputs("Conv")
def _cut_conv_outputs(m: _Model, node: onnx.NodeProto, keep: np.ndarray) -> None:
    m.take(node, 1, keep)
    if len(node.input) > 2 and node.input[2]:
        m.take(node, 2, keep)
    for a in node.attribute:
        if a.name == "group" and a.i > 1:  # depthwise: one group per channel (a producer has group 1)
            a.i = int(len(keep))


@cuts_inputs("Conv")
def _cut_conv_inputs(m: _Model, node: onnx.NodeProto, keep: np.ndarray, group: ChannelGroup) -> None:
    m.take(node, 1, keep, axis=1)


@channel_rule("Flatten")
def _flatten(walk: _Walk, step: _Step) -> bool:
    """Channels stay channels only when each is one value (after a global pool)."""
    if not step.passes_through:
        return False
    if step.carried[0] not in walk.pooled:
        walk.tie(step.carried[0], f"flattened with its spatial positions by {step.name}")
        return True
    walk.join(step.node.output[0], step.group)
    walk.pooled.add(step.node.output[0])
    return True


@channel_rule("Gemm")
def _gemm(walk: _Walk, step: _Step) -> bool:
    """A Gemm after a global pool reads the channels as its input features."""
    node = step.node
    if not step.carried or node.input[0] != step.carried[0] or walk.m.array(node.input[1]) is None:
        return False
    w = walk.m.array(node.input[1])
    features = w.shape[1 if int(_attr(node, "transB", 0)) else 0]
    if step.carried[0] not in walk.pooled or features != step.group.channels:
        walk.tie(step.carried[0], f"read as features by {step.name} (not after a global pool)")
        return True
    step.group.consumers.append(node)
    return True


@cuts_inputs("Gemm")
def _cut_gemm_inputs(m: _Model, node: onnx.NodeProto, keep: np.ndarray, group: ChannelGroup) -> None:
    trans_b = int(_attr(node, "transB", 0))
    if m.array(node.input[1]).shape[1 if trans_b else 0] != group.channels:
        raise UnsupportedModelError(f"cannot prune {group.name}: its Gemm reads more than the channels")
    m.take(node, 1, keep, axis=1 if trans_b else 0)


@channel_rule("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(walk: _Walk, step: _Step) -> bool:
    if not step.passes_through:
        return False
    walk.join(step.node.output[0], step.group)
    walk.pooled.add(step.node.output[0])
    return True


@channel_rule("Add", "Sub", "Mul", "Div", "Max", "Min")
def _join(walk: _Walk, step: _Step) -> bool:
    """Two tensors carrying channels become one group; a scalar constant operand passes."""
    if len(step.inputs) != 2 or not step.carried:
        return False
    group, carried = step.group, step.carried
    others = [t for t in step.inputs if t not in carried]
    if others:
        const = walk.m.array(others[0])
        if const is None or const.size != 1:
            walk.tie(carried[0], f"joined with a tensor pruning cannot follow by {step.name}")
            return True
    else:
        second = walk.group_of(carried[1])
        if second.channels != group.channels:
            walk.tie(carried[0], f"broadcast against other channels by {step.name}")
            walk.tie(carried[1], f"broadcast against other channels by {step.name}")
            return True
        group = walk.union(group, second)
    group.joins.append(step.node)
    walk.join(step.node.output[0], group)
    if all(t in walk.pooled for t in step.inputs if t in carried) and len(carried) == len(step.inputs):
        walk.pooled.add(step.node.output[0])
    return True


@channel_rule("PRelu")
def _prelu(walk: _Walk, step: _Step) -> bool:
    """One slope for all channels passes them through; a slope per channel ties them."""
    if not step.passes_through:
        return False
    slope = walk.m.array(step.node.input[1])
    if slope is None or slope.size != 1:
        walk.tie(step.carried[0], f"the per-channel PRelu {step.name}")
        return True
    walk.join(step.node.output[0], step.group)
    return True


@channel_rule("ReduceMean", "ReduceMax")
def _reduce(walk: _Walk, step: _Step) -> bool:
    """A reduction over spatial axes keeps the channels (over both, it pools them)."""
    if not step.passes_through:
        return False
    axes = _reduce_axes(step.node, walk.m)
    if axes is None or 1 in axes:
        walk.tie(step.carried[0], f"reduced over channels by {step.name}")
        return True
    walk.join(step.node.output[0], step.group)
    if {2, 3} <= axes:
        walk.pooled.add(step.node.output[0])
    return True


@channel_rule(
    "Relu",
    "Clip",
    "LeakyRelu",
    "HardSwish",
    "HardSigmoid",
    "Sigmoid",
    "Elu",
    "Tanh",
    "Identity",
    "Dropout",
    "MaxPool",
    "AveragePool",
)
def _one_to_one(walk: _Walk, step: _Step) -> bool:
    """Element-wise activations and local pools: the same channels come out."""
    if not step.passes_through:
        return False
    walk.join(step.node.output[0], step.group)
    return True


def _all_groups(model: onnx.ModelProto) -> list[ChannelGroup]:
    """Every channel group, prunable or tied, by following channels from each Conv through the
    graph (nodes are in topological order, as ONNX requires)."""
    walk = _Walk(_Model(model))
    for node in model.graph.node:
        step = walk.step(node)
        rule = CHANNEL_RULES.get(node.op_type)
        if rule is None or not rule(walk, step):
            for t in step.carried:
                walk.tie(t, f"reaches {node.op_type} {step.name}")
    return walk.finish(model)


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
# tile on all of them (docs/benchmarks.md, "Channel pruning": the speed-up for each rounding).
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
    """Cut every parameter the group's channels index down to the ``keep`` channels."""
    order = list(OUTPUT_CUTS)
    for node in (*group.producers, *sorted(group.carriers, key=lambda n: order.index(n.op_type))):
        OUTPUT_CUTS[node.op_type](m, node, keep)
    for node in group.consumers:
        INPUT_CUTS[node.op_type](m, node, keep, group)


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
        raise ParameterError("{round_to} must be a positive channel count, e.g. 8", round_to=round_to)
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
