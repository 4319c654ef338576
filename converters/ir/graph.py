"""The converter's graph IR: tensors and nodes in topological order.

Nodes carry either ONNX semantics (op names as in ONNX: ``Conv``, ``Relu``) before
lowering, or TFLite semantics (builtin operator names: ``CONV_2D``, ``RELU``) after it.
The two never collide: TFLite names are upper case.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class QuantParams:
    """``real = (q - zero_point) * scale``; per-tensor when ``scale`` has one entry."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    def same_as(self, other: QuantParams | None) -> bool:
        return (
            other is not None
            and self.scale.shape == other.scale.shape
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __repr__(self) -> str:
        return f"{self.op}({', '.join(self.inputs)}) -> {', '.join(self.outputs)} [{self.name}]"


class Graph:
    """A single-subgraph model. ``""`` as an input name marks an absent optional input."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.metadata: dict[str, Any] = {}
        self._counter = itertools.count()

    # --- tensors -------------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        name = hint
        while name in self.tensors:
            name = f"{hint}_{next(self._counter)}"
        return name

    def add_tensor(self, name: str, shape, dtype, data=None, quant=None, *, unique: bool = False) -> str:
        if unique:
            name = self.unique_name(name)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype), data, quant)
        return name

    def add_const(self, data, hint: str = "const", dtype=None) -> str:
        arr = np.asarray(data, dtype=dtype)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        return self.add_tensor(hint, arr.shape, arr.dtype, arr, unique=True)

    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        t = self.tensors.get(name)
        return None if t is None else t.data

    def is_const(self, name: str) -> bool:
        return self.const(name) is not None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def dtype(self, name: str) -> np.dtype:
        return self.tensors[name].dtype

    # --- nodes ---------------------------------------------------------------------
    def add_node(self, op: str, inputs: list[str], outputs: list[str], attrs=None, name: str = "") -> Node:
        node = Node(op, list(inputs), list(outputs), dict(attrs or {}), name or outputs[0])
        self.nodes.append(node)
        return node

    def producers(self) -> dict[str, Node]:
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        result: dict[str, list[Node]] = defaultdict(list)
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    result[i].append(n)
        return result

    def replace_uses(self, old: str, new: str) -> None:
        """Point every reader of ``old`` (nodes and graph outputs) at ``new``."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def toposort(self) -> None:
        produced_by = self.producers()
        order: list[Node] = []
        state: dict[int, int] = {}
        for root in self.nodes:
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                key = id(node)
                if expanded:
                    if state.get(key) != 2:
                        state[key] = 2
                        order.append(node)
                    continue
                if state.get(key):
                    continue
                state[key] = 1
                stack.append((node, True))
                for i in reversed(node.inputs):
                    p = produced_by.get(i)
                    if p is not None and not state.get(id(p)):
                        stack.append((p, False))
        self.nodes = order

    def remove_unused(self) -> None:
        """Drop nodes whose outputs nobody reads and tensors nobody references."""
        live = set(self.outputs)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(o in live for o in node.outputs):
                kept.append(node)
                live.update(i for i in node.inputs if i)
        kept.reverse()
        self.nodes = kept
        referenced = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            referenced.update(i for i in n.inputs if i)
            referenced.update(n.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in referenced}

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = defaultdict(int)
        for n in self.nodes:
            hist[n.op] += 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def copy(self) -> Graph:
        g = Graph()
        g.tensors = {k: Tensor(t.name, t.shape, t.dtype, t.data, t.quant) for k, t in self.tensors.items()}
        g.nodes = [Node(n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.name) for n in self.nodes]
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.metadata = dict(self.metadata)
        g._counter = itertools.count(next(self._counter))
        return g
