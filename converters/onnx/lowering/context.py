"""The state one lowering function sees: the source graph and the graph being built."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, Node

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


class NotLowerable(Exception):
    """This node cannot be lowered; ``reason`` is a short code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def permute(shape, perm) -> tuple[int, ...]:
    return tuple(shape[p] for p in perm)


class Lowering:
    def __init__(self, src: Graph) -> None:
        self.src = src
        self.out = Graph()
        self.out.metadata = dict(src.metadata)
        self.node: Node | None = None

    # --- reading the source --------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        return self.src.tensors[name].shape

    def dtype(self, name: str) -> np.dtype:
        return self.src.tensors[name].dtype

    def const(self, name: str) -> np.ndarray | None:
        return self.src.const(name) if name else None

    def require_const(self, name: str, what: str) -> np.ndarray:
        value = self.const(name)
        if value is None:
            raise NotLowerable("requires_constant_input", f"{what} must be a constant")
        return value

    # --- building the output ---------------------------------------------------------
    def use(self, name: str) -> str:
        """Make a source tensor available in the output graph."""
        if name not in self.out.tensors:
            t = self.src.tensors[name]
            data = t.data
            if data is not None and data.dtype == np.float64:
                data = data.astype(np.float32)
            elif data is not None and data.dtype == np.int64:
                data = data.astype(np.int32)
            dtype = data.dtype if data is not None else _tflite_dtype(t.dtype)
            self.out.add_tensor(name, t.shape, dtype, data)
        return name

    def declare(self, name: str) -> str:
        """Declare a source output tensor (shape and dtype from the source) in the output."""
        t = self.src.tensors[name]
        self.out.add_tensor(name, t.shape, _tflite_dtype(t.dtype))
        return name

    def new(self, hint: str, shape, dtype=np.float32) -> str:
        return self.out.add_tensor(hint, shape, dtype, unique=True)

    def constant(self, value, hint: str = "const", dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
        return self.out.add_const(arr, hint)

    def emit(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> Node:
        name = self.node.name if self.node is not None else outputs[0]
        node = self.out.add_node(op, inputs, outputs, attrs, name=f"{name}/{op.lower()}")
        node.attrs["_source"] = self.node.name if self.node is not None else ""
        return node

    def op_to(self, op: str, inputs: list[str], out_name: str, **attrs) -> str:
        """Emit ``op`` writing the source tensor ``out_name``."""
        self.declare(out_name)
        self.emit(op, inputs, [out_name], **attrs)
        return out_name

    def op_new(self, op: str, inputs: list[str], shape, hint: str, dtype=np.float32, **attrs) -> str:
        out = self.new(hint, shape, dtype)
        self.emit(op, inputs, [out], **attrs)
        return out

    def transpose(self, name: str, perm, hint: str | None = None) -> str:
        shape = self.out.tensors[name].shape
        perm_const = self.constant(np.array(perm, np.int32), "perm")
        return self.op_new(
            "TRANSPOSE", [name, perm_const], permute(shape, perm), hint or f"{name}_t", self.out.tensors[name].dtype
        )

    def reshape(self, name: str, shape, out: str | None = None) -> str:
        shape_const = self.constant(np.array(shape, np.int32), "shape")
        if out is not None:
            self.op_to("RESHAPE", [name, shape_const], out, new_shape=list(shape))
            return out
        return self.op_new(
            "RESHAPE",
            [name, shape_const],
            tuple(shape),
            f"{name}_r",
            self.out.tensors[name].dtype,
            new_shape=list(shape),
        )

    def nhwc(self, name: str) -> str:
        """An NHWC view of the 4-D NCHW source tensor ``name``."""
        self.use(name)
        return self.transpose(name, NCHW_TO_NHWC, f"{name}_nhwc")

    def nhwc_result(self, op: str, inputs: list[str], out_name: str, **attrs) -> None:
        """Emit an NHWC op whose NCHW result is the source tensor ``out_name``."""
        self.permuted_result(op, inputs, out_name, NCHW_TO_NHWC, **attrs)

    def permuted_result(self, op: str, inputs: list[str], out_name: str, perm, **attrs) -> None:
        """Emit ``op`` writing the source tensor ``out_name`` transposed by ``perm``, then the
        TRANSPOSE back to it (none when ``perm`` moves nothing)."""
        perm = tuple(perm)
        if perm == tuple(range(len(perm))):
            self.op_to(op, inputs, out_name, **attrs)
            return
        hint = f"{out_name}_nhwc" if perm == NCHW_TO_NHWC else f"{out_name}_t"
        y = self.op_new(op, inputs, permute(self.shape(out_name), perm), hint, **attrs)
        self.out.metadata.setdefault("layouts", {})[y] = [out_name, list(perm)]
        self.declare(out_name)
        back = self.constant(np.array(np.argsort(perm), np.int32), "perm")
        self.emit("TRANSPOSE", [y, back], [out_name])


def _tflite_dtype(dtype: np.dtype) -> np.dtype:
    if dtype == np.float64:
        return np.dtype(np.float32)
    if dtype == np.int64:
        return np.dtype(np.int32)
    return np.dtype(dtype)


def _declare_dtype(self: Lowering, name: str) -> np.dtype:
    return _tflite_dtype(self.src.tensors[name].dtype)


Lowering.declare_dtype = _declare_dtype
