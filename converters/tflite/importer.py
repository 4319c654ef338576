"""Read a .tflite flatbuffer back into the IR (TFLite ops): tensors with shapes, types,
quantization and constant data, nodes with their builtin options. Used to rebuild single ops
of a model (per-op profiling, delegate coverage)."""

from __future__ import annotations

import importlib
import re

import numpy as np
import tflite

from edgekit.converters.ir.graph import Graph, QuantParams
from edgekit.converters.tflite.ops import OPTIONS_TABLE, TENSOR_TYPE
from edgekit.converters.tflite.reader import load_model

_TYPE_BY_CODE = {getattr(tflite.TensorType, name): dtype for dtype, name in TENSOR_TYPE.items()}
_OP_BY_CODE = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_SKIP = re.compile(r"^(Init|GetRootAs.*|.*BufferHasIdentifier|.*Length|.*IsNone|.*AsNumpy)$")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _options(op, name: str) -> dict:
    table = OPTIONS_TABLE.get(name)
    raw = op.BuiltinOptions()
    if table is None or raw is None:
        return {}
    cls = getattr(importlib.import_module(f"tflite.{table}"), table)
    options = cls()
    options.Init(raw.Bytes, raw.Pos)
    attrs = {}
    for attr in dir(cls):
        if attr.startswith("_") or not attr[0].isupper() or _SKIP.match(attr):
            continue
        if hasattr(cls, f"{attr}AsNumpy"):
            value = getattr(options, f"{attr}AsNumpy")()
            attrs[_snake(attr)] = [] if isinstance(value, int) else [int(v) for v in value]
        else:
            try:
                attrs[_snake(attr)] = getattr(options, attr)()
            except TypeError:
                continue
    return attrs


def read_graph(data: bytes) -> Graph:
    model, data = load_model(data)
    sg = model.Subgraphs(0)
    g = Graph()
    names = []
    for t in range(sg.TensorsLength()):
        tensor = sg.Tensors(t)
        name = (tensor.Name() or f"t{t}".encode()).decode()
        while name in g.tensors:
            name += "_"
        dtype = np.dtype(_TYPE_BY_CODE.get(tensor.Type(), np.float32))
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        buffer = model.Buffers(tensor.Buffer())
        value = None
        if buffer.DataLength():
            value = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape)
        quant = None
        q = tensor.Quantization()
        if q is not None and q.ScaleLength():
            zero = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(q.ScaleLength(), np.int64)
            quant = QuantParams(q.ScaleAsNumpy(), zero, q.QuantizedDimension())
        g.add_tensor(name, shape, dtype, value, quant)
        names.append(name)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        code = codes[op.OpcodeIndex()]
        op_name = _OP_BY_CODE.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        inputs = [names[i] if i >= 0 else "" for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [names[i] for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        g.add_node(op_name, inputs, outputs, _options(op, op_name), name=f"{o}:{op_name}")
    g.inputs = [names[i] for i in sg.InputsAsNumpy()]
    g.outputs = [names[i] for i in sg.OutputsAsNumpy()]
    return g
