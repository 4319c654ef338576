"""NCHW -> NHWC: push TRANSPOSEs through layout-agnostic ops, cancel inverse pairs, and turn
transposes that move no data into reshapes.

Lowering wraps every layout-sensitive op (conv, pool, resize, ...) in TRANSPOSEs; after this
pass a CNN trunk runs entirely in NHWC. Tensors that change layout are recorded in
``graph.metadata["layouts"]`` (tflite tensor -> (source tensor, perm)) so the per-layer
comparison can map them back.

Which ops a TRANSPOSE crosses, and how, is the op's layout class in
:mod:`edgekit.converters.tflite.op_table`; each class has one rule here, registered with ``@pushes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.converters.ir.graph import Graph, Node
from edgekit.converters.passes.cleanup import bypass, remove_noop_reshapes
from edgekit.converters.tflite.op_table import Layout, facts


def perm_of(graph: Graph, node: Node) -> tuple[int, ...] | None:
    value = graph.const(node.inputs[1])
    return None if value is None else tuple(int(v) for v in value)


def inverse(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def compose(first, second) -> tuple[int, ...]:
    """x.transpose(first).transpose(second) == x.transpose(compose(first, second))."""
    return tuple(first[s] for s in second)


def moves_no_data(shape, perm) -> bool:
    """True when transposing ``shape`` by ``perm`` keeps every element in place."""
    kept = [p for p in perm if shape[p] != 1]
    return kept == sorted(kept)


def _set_perm(graph: Graph, node: Node, perm) -> None:
    node.inputs[1] = graph.add_const(np.array(perm, np.int32), "perm")


def _transpose_after(graph: Graph, node: Node, perm, index: int = 0) -> None:
    """Make ``node`` write a permuted tensor and restore the old one with a TRANSPOSE(perm)."""
    old = node.outputs[index]
    t = graph.tensors[old]
    pre_shape = tuple(t.shape[i] for i in inverse(perm))
    new = graph.add_tensor(
        f"{old}_nhwc" if len(perm) == 4 else f"{old}_t", pre_shape, t.dtype, quant=t.quant, unique=True
    )
    node.outputs[index] = new
    graph.metadata.setdefault("layouts", {})[new] = [old, list(inverse(perm))]
    graph.nodes.insert(
        graph.nodes.index(node) + 1,
        Node(
            "TRANSPOSE",
            [new, graph.add_const(np.array(perm, np.int32), "perm")],
            [old],
            {},
            name=f"{node.name}/transpose",
        ),
    )


def _const_for(graph: Graph, name: str, rank: int, perm) -> str | None:
    value = graph.const(name)
    if value is None:
        return None
    expanded = value.reshape((1,) * (rank - value.ndim) + value.shape)
    t = graph.tensors[name]
    return graph.add_tensor(
        f"{name}_nhwc",
        tuple(np.transpose(expanded, inverse(perm)).shape),
        t.dtype,
        np.ascontiguousarray(np.transpose(expanded, inverse(perm))),
        t.quant,
        unique=True,
    )


@dataclass(frozen=True)
class PushRule:
    """How a TRANSPOSE moves from an op's inputs to its output, for one layout class."""

    data_inputs: Callable[[Graph, Node], list[str]]  # the inputs a TRANSPOSE must feed
    push: Callable[[Graph, Node, dict, tuple[int, ...]], bool]  # rewrite for that perm; False: cannot


# layout class (edgekit.converters.tflite.op_table.Layout) -> its rule; filled by @pushes
PUSH_RULES: dict[Layout, PushRule] = {}


def _non_const_inputs(graph: Graph, node: Node) -> list[str]:
    return [i for i in node.inputs if i and not graph.is_const(i)]


def _input(k: int) -> Callable[[Graph, Node], list[str]]:
    return lambda graph, node: [node.inputs[k]]


_FIRST_INPUT = _input(0)


def pushes(layout: Layout, data_inputs: Callable[[Graph, Node], list[str]] = _FIRST_INPUT):
    """Register the push rule of a layout class; ``data_inputs`` says which inputs it moves
    TRANSPOSEs from."""

    def register(fn):
        if layout in PUSH_RULES:
            raise RuntimeError(f"two push rules for {layout}")
        PUSH_RULES[layout] = PushRule(data_inputs, fn)
        return fn

    return register


def _try_push(graph: Graph, node: Node, producers) -> bool:
    """Move TRANSPOSEs that feed ``node`` to after it, when ``node`` commutes with them."""
    rule = PUSH_RULES.get(facts(node.op).layout)
    if rule is None:
        return False
    perm = _common_perm(graph, rule.data_inputs(graph, node), producers)
    return perm is not None and rule.push(graph, node, producers, perm)


def _common_perm(graph: Graph, data: list[str], producers) -> tuple[int, ...] | None:
    """The permutation of the TRANSPOSEs feeding every one of ``data``, when there is one and
    each keeps its input's quantization parameters."""
    if not data or graph.is_const(data[0]):
        return None
    feeding = [producers.get(i) for i in data]
    if any(p is None or p.op != "TRANSPOSE" for p in feeding):
        return None
    perms = {perm_of(graph, p) for p in feeding}
    if len(perms) != 1 or None in perms:
        return None
    if any(
        graph.tensors[i].quant is not None
        and not graph.tensors[i].quant.same_as(graph.tensors[producers[i].inputs[0]].quant)
        for i in data
    ):
        return None
    return perms.pop()


def _push_elementwise(graph: Graph, node: Node, producers, perm, full_rank_input: int | None = None) -> bool:
    rank = len(perm)
    if len(graph.shape(node.outputs[0])) != rank:
        return False
    new_inputs = []
    for i in node.inputs:
        if not i:
            new_inputs.append(i)
        elif graph.is_const(i):
            if len(graph.shape(i)) > rank:
                return False
            new_inputs.append(_const_for(graph, i, rank, perm))
        else:
            new_inputs.append(producers[i].inputs[0])
    if full_rank_input is not None and len(graph.shape(node.inputs[full_rank_input])) != rank:
        return False
    node.inputs = new_inputs
    _transpose_after(graph, node, perm)
    return True


@pushes(Layout.ELEMENTWISE, _non_const_inputs)
def _elementwise(graph: Graph, node: Node, producers, perm) -> bool:
    return _push_elementwise(graph, node, producers, perm)


@pushes(Layout.ELEMENTWISE_FULL_RANK, _non_const_inputs)
def _elementwise_full_rank(graph: Graph, node: Node, producers, perm) -> bool:
    return _push_elementwise(graph, node, producers, perm, full_rank_input=1)


@pushes(Layout.CONCATENATION, _non_const_inputs)
def _concatenation(graph: Graph, node: Node, producers, perm) -> bool:
    rank = len(perm)
    if any(graph.is_const(i) and len(graph.shape(i)) != rank for i in node.inputs):
        return False
    node.inputs = [
        _const_for(graph, i, rank, perm) if graph.is_const(i) else producers[i].inputs[0] for i in node.inputs
    ]
    node.attrs["axis"] = perm[node.attrs["axis"] % len(perm)]
    _transpose_after(graph, node, perm)
    return True


@pushes(Layout.LAST_AXIS)
def _last_axis(graph: Graph, node: Node, producers, perm) -> bool:
    if perm[-1] != len(perm) - 1:
        return False
    node.inputs[0] = producers[node.inputs[0]].inputs[0]
    _transpose_after(graph, node, perm)
    return True


def _push_rows(graph: Graph, node: Node, producers, perm, row_inputs: tuple[int, ...]) -> bool:
    """Ops with one row per axis in constant inputs (paddings; begin and size): permute the rows."""
    rows = [graph.const(node.inputs[k]) for k in row_inputs if k < len(node.inputs)]
    if any(r is None for r in rows):
        return False
    new_rows = []
    for r in rows:
        moved = np.empty_like(r)
        for i in range(len(perm)):
            moved[perm[i]] = r[i]
        new_rows.append(graph.add_const(moved, "moved"))
    node.inputs[0] = producers[node.inputs[0]].inputs[0]
    for k, name in zip(row_inputs, new_rows, strict=False):
        node.inputs[k] = name
    _transpose_after(graph, node, perm)
    return True


@pushes(Layout.PADDING)
def _padding(graph: Graph, node: Node, producers, perm) -> bool:
    return _push_rows(graph, node, producers, perm, (1,))


@pushes(Layout.SLICE)
def _slice(graph: Graph, node: Node, producers, perm) -> bool:
    return _push_rows(graph, node, producers, perm, (1, 2))


def _push_split(graph: Graph, node: Node, producers, perm, axis_index: int, data_index: int) -> bool:
    axis = graph.const(node.inputs[axis_index])
    if axis is None:
        return False
    node.inputs[axis_index] = graph.add_const(np.array(perm[int(axis) % len(perm)], np.int32), "axis")
    node.inputs[data_index] = producers[node.inputs[data_index]].inputs[0]
    for k in range(len(node.outputs)):
        _transpose_after(graph, node, perm, k)
    return True


@pushes(Layout.SPLIT, _input(1))
def _split(graph: Graph, node: Node, producers, perm) -> bool:
    return _push_split(graph, node, producers, perm, axis_index=0, data_index=1)


@pushes(Layout.SPLIT_V)
def _split_v(graph: Graph, node: Node, producers, perm) -> bool:
    return _push_split(graph, node, producers, perm, axis_index=2, data_index=0)


@pushes(Layout.REDUCER)
def _reducer(graph: Graph, node: Node, producers, perm) -> bool:
    axes = graph.const(node.inputs[1])
    if axes is None:
        return False
    rank = len(perm)
    axes = sorted(int(a) % rank for a in np.atleast_1d(axes))
    x_axes = sorted(perm[a] for a in axes)
    node.inputs[0] = producers[node.inputs[0]].inputs[0]
    node.inputs[1] = graph.add_const(np.array(x_axes, np.int32), "axes")
    if node.attrs.get("keep_dims"):
        _transpose_after(graph, node, perm)
        return True
    y_kept = [i for i in range(rank) if i not in axes]
    x_kept = [i for i in range(rank) if i not in x_axes]
    q = tuple(x_kept.index(perm[i]) for i in y_kept)
    if q != tuple(range(len(q))):
        _transpose_after(graph, node, q)
    return True


def _groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]] | None:
    """Split a reshape into groups of consecutive dims with equal products (size-1 dims go
    with their left neighbour); None when the shapes do not line up that way."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) or j < len(dst):
        gi, gj = [], []
        pi = pj = 1
        if i < len(src):
            gi.append(i)
            pi *= src[i]
            i += 1
        if j < len(dst):
            gj.append(j)
            pj *= dst[j]
            j += 1
        while pi != pj:
            if pi < pj and i < len(src):
                gi.append(i)
                pi *= src[i]
                i += 1
            elif pj < pi and j < len(dst):
                gj.append(j)
                pj *= dst[j]
                j += 1
            else:
                return None
        while i < len(src) and src[i] == 1 and (j >= len(dst) or dst[j] != 1):
            gi.append(i)
            i += 1
        while j < len(dst) and dst[j] == 1 and (i >= len(src) or src[i] != 1):
            gj.append(j)
            j += 1
        groups.append((gi, gj))
    return groups


def _sink_through_reshape(graph: Graph, reshape: Node, producers) -> bool:
    """x -T(P)-> y -RESHAPE-> z  ==>  x -RESHAPE-> x' -T(Q)-> z when the reshape only splits
    or merges dims that stay adjacent in x.

    When a merged group is adjacent in x but in another order (a channel shuffle), the
    transpose is split in two: one that only reorders dims inside groups stays before the
    reshape, and the group-level one moves after it, where it can meet its inverse."""
    t = producers.get(reshape.inputs[0])
    if t is None or t.op != "TRANSPOSE" or graph.tensors[reshape.inputs[0]].quant is not None:
        return False
    perm = perm_of(graph, t)
    if perm is None:
        return False
    x = t.inputs[0]
    y_shape, z_shape = graph.shape(reshape.inputs[0]), graph.shape(reshape.outputs[0])
    groups = _groups(y_shape, z_shape)
    if groups is None:
        return False
    x_groups = []
    for ydims, zdims in groups:
        xdims = [perm[d] for d in ydims]
        if sorted(xdims) != list(range(min(xdims), min(xdims) + len(xdims))):
            return False
        x_groups.append((min(xdims), xdims, zdims))
    order = sorted(range(len(groups)), key=lambda g: x_groups[g][0])
    new_shape, position = [], {}
    for g in order:
        for zd in x_groups[g][2]:
            position[zd] = len(new_shape)
            new_shape.append(z_shape[zd])
    q = tuple(position[zd] for zd in range(len(z_shape)))
    within = tuple(d for g in order for d in x_groups[g][1])
    if within != tuple(range(len(within))):
        if q == tuple(range(len(q))):
            return False  # nothing would move past the reshape
        x = _transpose_node_before(graph, t, reshape, within)
    out = reshape.outputs[0]
    mid = graph.add_tensor(
        f"{out}_pre", tuple(new_shape), graph.dtype(out), quant=graph.tensors[out].quant, unique=True
    )
    reshape.inputs = [x, graph.add_const(np.array(new_shape, np.int32), "shape")]
    reshape.attrs["new_shape"] = list(new_shape)
    reshape.outputs = [mid]
    graph.nodes.insert(
        graph.nodes.index(reshape) + 1,
        Node(
            "TRANSPOSE",
            [mid, graph.add_const(np.array(q, np.int32), "perm")],
            [out],
            {},
            name=f"{reshape.name}/transpose",
        ),
    )
    return True


def _transpose_node_before(graph: Graph, t: Node, reshape: Node, perm) -> str:
    """A new TRANSPOSE(perm) of ``t``'s input, placed before ``reshape``; returns its output."""
    src = t.inputs[0]
    shape = tuple(graph.shape(src)[p] for p in perm)
    out = graph.add_tensor(f"{src}_t", shape, graph.dtype(src), quant=graph.tensors[src].quant, unique=True)
    graph.nodes.insert(
        graph.nodes.index(reshape),
        Node("TRANSPOSE", [src, graph.add_const(np.array(perm, np.int32), "perm")], [out], {}, name=f"{t.name}/within"),
    )
    return out


def _hoist_through_reshape(graph: Graph, t: Node, producers, consumers) -> bool:
    """w -RESHAPE-> v -T(R)-> u  ==>  w -T(S)-> w' -RESHAPE-> u, so T(S) can meet the
    transposes before it."""
    reshape = producers.get(t.inputs[0])
    if reshape is None or reshape.op != "RESHAPE" or len(consumers.get(t.inputs[0], [])) != 1:
        return False
    w = reshape.inputs[0]
    wp = producers.get(w)
    if wp is None or wp.op != "TRANSPOSE":
        return False  # only worth it when it can cancel
    perm = perm_of(graph, t)
    if perm is None or graph.tensors[w].quant is not None:
        return False
    w_shape, v_shape = graph.shape(w), graph.shape(t.inputs[0])
    groups = _groups(w_shape, v_shape)
    if groups is None:
        return False
    where = {v: i for i, v in enumerate(perm)}  # v dim -> position in u
    placed = []
    for wdims, vdims in groups:
        pos = [where[v] for v in vdims]
        if pos != list(range(pos[0], pos[0] + len(pos))):
            return False
        placed.append((pos[0], wdims))
    s = tuple(d for _, wdims in sorted(placed) for d in wdims)
    before = compose(perm_of(graph, wp), s) if perm_of(graph, wp) is not None else None
    # only when the transposes then cancel: merging alone would undo a partial sink
    if before is None or not moves_no_data(graph.shape(wp.inputs[0]), before):
        return False
    u = t.outputs[0]
    w_t = graph.add_tensor(f"{w}_t", tuple(w_shape[d] for d in s), graph.dtype(w), unique=True)
    t.inputs = [w, graph.add_const(np.array(s, np.int32), "perm")]
    t.outputs = [w_t]
    reshape.inputs = [w_t, graph.add_const(np.array(graph.shape(u), np.int32), "shape")]
    reshape.attrs["new_shape"] = list(graph.shape(u))
    reshape.outputs = [u]
    graph.nodes.remove(t)
    graph.nodes.insert(graph.nodes.index(reshape), t)
    return True


def _fold_into_fully_connected(graph: Graph, t: Node, consumers) -> bool:
    """x -T(P)-> y -RESHAPE [N, K]-> FULLY_CONNECTED: permute the weight columns instead."""
    y = t.outputs[0]
    users = consumers.get(y, [])
    if len(users) != 1 or users[0].op != "RESHAPE":
        return False
    reshape = users[0]
    fcs = consumers.get(reshape.outputs[0], [])
    y_shape = graph.shape(y)
    z_shape = graph.shape(reshape.outputs[0])
    if len(z_shape) != 2 or z_shape[0] != y_shape[0] or not fcs:
        return False
    if any(
        fc.op != "FULLY_CONNECTED" or fc.inputs[0] != reshape.outputs[0] or not graph.is_const(fc.inputs[1])
        for fc in fcs
    ):
        return False
    perm = perm_of(graph, t)
    if perm is None or perm[0] != 0 or graph.tensors[y].quant is not None:
        return False
    sample = (1,) + tuple(y_shape[1:])
    index = np.arange(int(np.prod(sample))).reshape(sample).transpose(inverse(perm)).reshape(-1)
    for fc in fcs:
        weights = graph.const(fc.inputs[1])
        fc.inputs[1] = graph.add_const(np.ascontiguousarray(weights[:, index]), f"{fc.name}_weights_nhwc")
    reshape.inputs[0] = t.inputs[0]
    # the flattened tensor now holds NHWC order: it no longer stands for the source tensor
    flat = reshape.outputs[0]
    if flat not in graph.outputs:
        renamed = graph.add_tensor(f"{flat}_nhwc_order", graph.shape(flat), graph.dtype(flat), unique=True)
        graph.replace_uses(flat, renamed)
        reshape.outputs = [renamed]
    return True


def _data_free_transposes_to_reshapes(graph: Graph) -> None:
    for node in graph.nodes:
        if node.op == "TRANSPOSE":
            perm = perm_of(graph, node)
            if perm is not None and moves_no_data(graph.shape(node.inputs[0]), perm):
                out = node.outputs[0]
                node.op = "RESHAPE"
                node.inputs = [node.inputs[0], graph.add_const(np.array(graph.shape(out), np.int32), "shape")]
                node.attrs = {"new_shape": list(graph.shape(out))}


def optimize_layout(graph: Graph) -> Graph:
    for _ in range(10_000):
        if not _layout_step(graph):
            break
    # only now: a data-free TRANSPOSE still carries layout the pushes above can use
    _data_free_transposes_to_reshapes(graph)
    graph.toposort()
    graph.remove_unused()
    remove_noop_reshapes(graph)
    return graph


def _layout_step(graph: Graph) -> bool:
    producers, consumers = graph.producers(), graph.consumers()
    for node in graph.nodes:
        if node.op != "TRANSPOSE":
            continue
        perm = perm_of(graph, node)
        if perm is None:
            continue
        src = node.inputs[0]
        p = producers.get(src)
        if p is not None and p.op == "TRANSPOSE" and perm_of(graph, p) is not None:
            node.inputs[0] = p.inputs[0]
            _set_perm(graph, node, compose(perm_of(graph, p), perm))
            graph.remove_unused()
            return True
        if perm == tuple(range(len(perm))):
            if bypass(graph, node):
                graph.remove_unused()
                return True
            continue
        if _fold_into_fully_connected(graph, node, consumers):
            graph.remove_unused()
            return True
        if _hoist_through_reshape(graph, node, producers, consumers):
            return True
    for node in graph.nodes:
        if node.op == "RESHAPE" and _sink_through_reshape(graph, node, producers):
            graph.remove_unused()
            return True
        if node.op != "TRANSPOSE" and _try_push(graph, node, producers):
            graph.remove_unused()
            return True
    return False


def nhwc_in_onnx(graph: Graph) -> set[str]:
    """Signature names of the 4-D float inputs and outputs that are NHWC in the ONNX model already
    (tf2onnx, Keras): the graph reads such an input only through Transpose(0, 3, 1, 2) and makes
    such an output with Transpose(0, 2, 3, 1). Only meaningful on a graph fresh from lowering,
    before the layout pass moves transposes."""
    signature = graph.metadata.get("_signature", {"inputs": list(graph.inputs), "outputs": list(graph.outputs)})
    producers, consumers = graph.producers(), graph.consumers()
    found = set()
    for names, tensors, perm, io in (
        (signature["inputs"], graph.inputs, (0, 3, 1, 2), "input"),
        (signature["outputs"], graph.outputs, (0, 2, 3, 1), "output"),
    ):
        for name, tensor in zip(names, tensors, strict=False):
            t = graph.tensors[tensor]
            if len(t.shape) != 4 or t.dtype != np.float32:
                continue
            if io == "input":
                readers = _past_axis_keeping_ops(graph, tensor, consumers)
                nhwc = bool(readers) and all(_moves_axes(graph, n, perm) for n in readers)
            else:
                producer = _before_axis_keeping_ops(graph, tensor, producers)
                nhwc = producer is not None and _moves_axes(graph, producer, perm)
            if nhwc:
                found.add(name)
    return found


def _moves_axes(graph: Graph, node: Node, perm: tuple[int, ...]) -> bool:
    """Does ``node`` permute its 4-D input's axes by ``perm``: a TRANSPOSE, or the RESHAPE
    tf2onnx writes for it when the axis that moves has size 1 (a one-channel Keras input,
    [N, H, W, 1] -> [N, 1, H, W])?"""
    if node.op == "TRANSPOSE":
        return perm_of(graph, node) == perm
    if node.op != "RESHAPE" or not node.inputs:
        return False
    before, after = graph.shape(node.inputs[0]), graph.shape(node.outputs[0])
    if len(before) != 4 or len(after) != 4:
        return False
    moved = [before[axis] for axis in perm]
    return moved == list(after) and [d for d in before if d != 1] == [d for d in after if d != 1]


# ops whose output axes are their data input's axes: the layout an output has is its source's
_AXIS_KEEPING = (Layout.ELEMENTWISE, Layout.ELEMENTWISE_FULL_RANK, Layout.LAST_AXIS)


def _keeps_axes(graph: Graph, node: Node) -> str | None:
    """The one data input of an op whose output has that input's axes (and its shape, but for a
    padding, which only widens them), else None."""
    layout = facts(node.op).layout
    if layout not in (*_AXIS_KEEPING, Layout.PADDING):
        return None
    data = [t for t in node.inputs if t and not graph.is_const(t)]
    if len(data) != 1:
        return None
    before, after = graph.shape(data[0]), graph.shape(node.outputs[0])
    same = len(before) == len(after) if layout == Layout.PADDING else before == after
    return data[0] if same else None


def _past_axis_keeping_ops(graph: Graph, tensor: str, consumers: dict[str, list[Node]]) -> list[Node]:
    """The readers of ``tensor`` once axis-keeping ops (a Keras rescaling before the graph's own
    NHWC->NCHW transpose) are walked through; an output on the way counts as a reader."""
    readers, todo = [], [tensor]
    while todo:
        name = todo.pop()
        if name in graph.outputs and name != tensor:
            return []
        for node in consumers.get(name, []):
            if _keeps_axes(graph, node) == name:
                todo.extend(node.outputs)
            else:
                readers.append(node)
    return readers


def _before_axis_keeping_ops(graph: Graph, tensor: str, producers: dict[str, Node]) -> Node | None:
    """The producer of ``tensor`` once single-data-input, shape-keeping ops that keep each axis
    where it is (a Keras head's softmax over channels after the graph's own NCHW->NHWC
    transpose) are walked back through."""
    producer = producers.get(tensor)
    while producer is not None and (data := _keeps_axes(graph, producer)) is not None:
        producer = producers.get(data)
    return producer


def to_nhwc_io(graph: Graph, inputs: bool = True, outputs: bool = True, every_output: bool = False) -> Graph:
    """Give rank-4 float inputs/outputs the NHWC layout TFLite users expect.

    Each changed input gets a TRANSPOSE to its old NCHW tensor (cancelled later by the layout
    pass); an output fed by a NHWC->NCHW TRANSPOSE is taken before it; with ``every_output``
    any other 4-D float output gets a TRANSPOSE to NHWC after it. Inputs and outputs that are
    NHWC in the ONNX model already (:func:`nhwc_in_onnx`, found on the first call and kept in
    ``graph.metadata["io_nhwc_in_onnx"]``) stay as they are: the graph's own transposes then
    cancel against the layout pass's. The permutations are recorded in
    ``graph.metadata["io_layout"]`` (name -> perm from source to tflite layout)."""
    io_layout = graph.metadata.setdefault("io_layout", {})
    signature = graph.metadata.get("_signature", {"inputs": list(graph.inputs), "outputs": list(graph.outputs)})
    if "io_nhwc_in_onnx" not in graph.metadata:
        graph.metadata["io_nhwc_in_onnx"] = sorted(nhwc_in_onnx(graph))
    already_nhwc = set(graph.metadata["io_nhwc_in_onnx"])
    if inputs:
        for k, name in enumerate(graph.inputs):
            t = graph.tensors[name]
            if len(t.shape) != 4 or t.dtype != np.float32 or signature["inputs"][k] in already_nhwc:
                continue
            _input_to_nhwc(graph, name)
            io_layout[signature["inputs"][k]] = [0, 2, 3, 1]
    if outputs:
        producers = graph.producers()
        for k, name in enumerate(list(graph.outputs)):
            source_name = signature["outputs"][k]
            if len(graph.shape(name)) != 4 or source_name in already_nhwc:
                continue
            if _output_to_nhwc(graph, k, producers.get(name), every_output):
                io_layout[source_name] = [0, 2, 3, 1]
        graph.remove_unused()
    return graph


def _input_to_nhwc(graph: Graph, name: str) -> None:
    """Input ``name`` becomes NHWC; a TRANSPOSE gives the graph its old NCHW tensor."""
    t = graph.tensors[name]
    inner = graph.add_tensor(f"{name}_nchw", t.shape, t.dtype, unique=True)
    for n in graph.nodes:
        n.inputs = [inner if i == name else i for i in n.inputs]
    graph.outputs = [inner if o == name else o for o in graph.outputs]
    n_, c, h, w = t.shape
    t.shape = (n_, h, w, c)
    graph.nodes.insert(
        0,
        Node(
            "TRANSPOSE",
            [name, graph.add_const(np.array((0, 3, 1, 2), np.int32), "perm")],
            [inner],
            {},
            name=f"{name}/to_nchw",
        ),
    )


def _output_to_nhwc(graph: Graph, k: int, producer: Node | None, every_output: bool) -> bool:
    """Output ``k`` taken before the NHWC->NCHW TRANSPOSE that makes it or, with
    ``every_output``, given a TRANSPOSE to NHWC after it; False when it stays as it is."""
    name = graph.outputs[k]
    if producer is not None and producer.op == "TRANSPOSE" and perm_of(graph, producer) == (0, 3, 1, 2):
        src = producer.inputs[0]
        if src in graph.inputs or src in graph.outputs:
            return False
        graph.outputs[k] = src
        return True
    t = graph.tensors[name]
    if not every_output or t.dtype != np.float32:
        return False
    nhwc = graph.add_tensor(f"{name}_nhwc", tuple(t.shape[i] for i in (0, 2, 3, 1)), t.dtype, unique=True)
    graph.nodes.append(
        Node(
            "TRANSPOSE",
            [name, graph.add_const(np.array((0, 2, 3, 1), np.int32), "perm")],
            [nhwc],
            {},
            name=f"{name}/to_nhwc",
        )
    )
    graph.outputs[k] = nhwc
    return True


def resolve_layout(name: str, layouts: dict[str, list]) -> tuple[str, list[int] | None]:
    """Follow the layout record from a tensor back to the source tensor it stands for:
    (source name, perm with tensor = source.transpose(perm)), or (name, None)."""
    perm = None
    seen = set()
    while name in layouts and name not in seen:
        seen.add(name)
        src, p = layouts[name]
        perm = list(p) if perm is None else [p[i] for i in perm]
        name = src
    return name, perm


def final_layouts(graph: Graph) -> dict[str, list]:
    """The layout record reduced to tensors still in the graph, each resolved to its source."""
    layouts = graph.metadata.get("layouts", {})
    result = {}
    for name in graph.tensors:
        if name in layouts:
            src, perm = resolve_layout(name, layouts)
            result[name] = [src, perm]
    return result
