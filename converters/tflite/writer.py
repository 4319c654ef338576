"""Write an IR graph of TFLite builtin ops as a ``.tflite`` flatbuffer.

Only ``flatbuffers`` and the ``tflite`` schema package are used. The file follows the rules
in TFLITE_INT8.md: identifier ``TFL3``, version 3, empty buffer 0, one deduplicated
operator-code table, minimum op versions, constant data aligned to 16 bytes.
"""

from __future__ import annotations

import importlib
import json
import os

import flatbuffers
import numpy as np
import tflite

from edgekit.converters.ir.graph import Graph, Node, Tensor
from edgekit.converters.tflite.ops import ENUM_FIELDS, OPTIONS_TABLE, TENSOR_TYPE, op_version
from edgekit.errors import UnsupportedModelError
from edgekit.files import check_output_path, write_atomic  # noqa: F401  (the converters' writers)

SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16


def _camel(field: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in field.split("_"))


def _schema_module(name: str):
    return importlib.import_module(f"tflite.{name}")


def _int_vector(builder: flatbuffers.Builder, values, elem: str = "Int32") -> int:
    values = list(values)
    builder.StartVector(4 if elem in ("Int32", "Float32") else 8, len(values), 4)
    for v in reversed(values):
        getattr(builder, f"Prepend{elem}")(v)
    return builder.EndVector()


def _numpy_vector(builder: flatbuffers.Builder, array: np.ndarray) -> int:
    return builder.CreateNumpyVector(np.ascontiguousarray(array))


def _aligned_bytes(builder: flatbuffers.Builder, data: bytes) -> int:
    builder.StartVector(1, len(data), BUFFER_ALIGNMENT)
    builder.head -= len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    return builder.EndVector()


def _options(builder: flatbuffers.Builder, node: Node) -> tuple[int, int]:
    """Build the node's builtin options table; returns (union type, offset)."""
    table = OPTIONS_TABLE.get(node.op)
    if table is None:
        return 0, 0
    module = _schema_module(table)
    fields = {k: v for k, v in node.attrs.items() if not k.startswith("_")}
    # vectors and strings must be created before the table starts
    prebuilt: dict[str, int] = {}
    for key, value in fields.items():
        if isinstance(value, list | tuple):
            prebuilt[key] = _int_vector(builder, [int(v) for v in value])
    getattr(module, f"{table}Start")(builder)
    for key, value in fields.items():
        adder = getattr(module, f"{table}Add{_camel(key)}", None)
        if adder is None:
            raise UnsupportedModelError(f"internal: {node.op} has no option '{key}'")
        if key in prebuilt:
            adder(builder, prebuilt[key])
        elif key in ENUM_FIELDS:
            enum = getattr(_schema_module(ENUM_FIELDS[key]), ENUM_FIELDS[key])
            adder(builder, getattr(enum, value) if isinstance(value, str) else int(value))
        elif isinstance(value, bool | np.bool_):
            adder(builder, bool(value))
        else:
            adder(builder, value)
    offset = getattr(module, f"{table}End")(builder)
    return getattr(tflite.BuiltinOptions, table), offset


def _quantization(builder: flatbuffers.Builder, tensor: Tensor, shared: dict[tuple, int]) -> int | None:
    """The tensor's QuantizationParameters. Identical scale / zero-point vectors are written once
    and shared (flatbuffers allow it): per-channel zero points are all zeros, and a weight and
    its bias have as many channels, so this saves most of the int64 zero-point bytes."""
    q = tensor.quant
    if q is None:
        return None

    def vector(array: np.ndarray) -> int:
        key = (array.dtype.str, array.tobytes())
        if key not in shared:
            shared[key] = _numpy_vector(builder, array)
        return shared[key]

    scale = vector(q.scale.astype(np.float32))
    zero_point = vector(q.zero_point.astype(np.int64))
    tflite.QuantizationParametersStart(builder)
    tflite.QuantizationParametersAddScale(builder, scale)
    tflite.QuantizationParametersAddZeroPoint(builder, zero_point)
    tflite.QuantizationParametersAddQuantizedDimension(builder, int(q.axis))
    return tflite.QuantizationParametersEnd(builder)


def _tensor_order(graph: Graph) -> list[str]:
    """The tensor table: graph inputs first, then everything nodes touch, in first-use order."""
    order: list[str] = []
    seen: set[str] = set()
    for name in [*graph.inputs, *(n for node in graph.nodes for n in node.inputs + node.outputs), *graph.outputs]:
        if name and name not in seen:
            seen.add(name)
            order.append(name)
    return order


def _buffer_table(graph: Graph, order: list[str]) -> tuple[list[bytes], dict[str, int]]:
    """The buffers' bytes (0 is the empty sentinel; each constant its own, deduplicated by
    content) and each tensor's buffer index."""
    buffer_data: list[bytes] = [b""]
    buffer_of: dict[str, int] = {}
    by_content: dict[tuple, int] = {}
    for name in order:
        t = graph.tensors[name]
        if not t.is_const:
            buffer_of[name] = 0
            continue
        raw = np.ascontiguousarray(t.data.astype(t.dtype, copy=False)).tobytes()
        key = (t.dtype.str, len(raw), hash(raw))
        if key in by_content and buffer_data[by_content[key]] == raw:
            buffer_of[name] = by_content[key]
            continue
        by_content[key] = len(buffer_data)
        buffer_of[name] = len(buffer_data)
        buffer_data.append(raw)
    return buffer_data, buffer_of


def _offset_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def _write_buffers(builder: flatbuffers.Builder, buffer_data: list[bytes]) -> list[int]:
    offsets = []
    for raw in buffer_data:
        data_off = _aligned_bytes(builder, raw) if raw else None
        tflite.BufferStart(builder)
        if data_off is not None:
            tflite.BufferAddData(builder, data_off)
        offsets.append(tflite.BufferEnd(builder))
    return offsets


def _write_tensors(
    builder: flatbuffers.Builder, graph: Graph, order: list[str], buffer_of: dict[str, int]
) -> list[int]:
    offsets = []
    shared_vectors: dict[tuple, int] = {}
    for name in order:
        t = graph.tensors[name]
        type_name = TENSOR_TYPE.get(t.dtype)
        if type_name is None:
            raise UnsupportedModelError(f"tensor '{name}' has dtype {t.dtype}, which TFLite cannot hold")
        name_off = builder.CreateString(name)
        shape_off = _int_vector(builder, t.shape)
        quant_off = _quantization(builder, t, shared_vectors)
        tflite.TensorStart(builder)
        tflite.TensorAddShape(builder, shape_off)
        tflite.TensorAddType(builder, getattr(tflite.TensorType, type_name))
        tflite.TensorAddBuffer(builder, buffer_of[name])
        tflite.TensorAddName(builder, name_off)
        if quant_off is not None:
            tflite.TensorAddQuantization(builder, quant_off)
        offsets.append(tflite.TensorEnd(builder))
    return offsets


def _write_operators(
    builder: flatbuffers.Builder, graph: Graph, index: dict[str, int]
) -> tuple[list[int], dict[tuple[str, int], int]]:
    """The operators, and the operator-code table they index: one code per (op, version)."""
    opcode_index: dict[tuple[str, int], int] = {}
    offsets = []
    for node in graph.nodes:
        version = op_version(node, lambda n: graph.tensors[n])
        key = (node.op, version)
        opcode_index.setdefault(key, len(opcode_index))
        inputs_off = _int_vector(builder, [index[i] if i else -1 for i in node.inputs])
        outputs_off = _int_vector(builder, [index[o] for o in node.outputs])
        opt_type, opt_off = _options(builder, node)
        tflite.OperatorStart(builder)
        tflite.OperatorAddOpcodeIndex(builder, opcode_index[key])
        tflite.OperatorAddInputs(builder, inputs_off)
        tflite.OperatorAddOutputs(builder, outputs_off)
        if opt_type:
            tflite.OperatorAddBuiltinOptionsType(builder, opt_type)
            tflite.OperatorAddBuiltinOptions(builder, opt_off)
        offsets.append(tflite.OperatorEnd(builder))
    return offsets, opcode_index


def _write_subgraph(
    builder: flatbuffers.Builder, graph: Graph, index: dict[str, int], tensors: list[int], operators: list[int]
) -> int:
    tensors_vec = _offset_vector(builder, tensors)
    ops_vec = _offset_vector(builder, operators)
    sg_inputs = _int_vector(builder, [index[n] for n in graph.inputs])
    sg_outputs = _int_vector(builder, [index[n] for n in graph.outputs])
    sg_name = builder.CreateString("main")
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensors_vec)
    tflite.SubGraphAddInputs(builder, sg_inputs)
    tflite.SubGraphAddOutputs(builder, sg_outputs)
    tflite.SubGraphAddOperators(builder, ops_vec)
    tflite.SubGraphAddName(builder, sg_name)
    return tflite.SubGraphEnd(builder)


def _write_opcodes(builder: flatbuffers.Builder, opcode_index: dict[tuple[str, int], int]) -> list[int]:
    offsets = []
    for (op, version), _ in sorted(opcode_index.items(), key=lambda kv: kv[1]):
        code = getattr(tflite.BuiltinOperator, op)
        tflite.OperatorCodeStart(builder)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(builder, code)
        tflite.OperatorCodeAddVersion(builder, version)
        offsets.append(tflite.OperatorCodeEnd(builder))
    return offsets


def _write_signature(builder: flatbuffers.Builder, graph: Graph, index: dict[str, int]) -> int:
    """The signature def: user-facing names (the source model's) -> tensor indices."""
    io_names = graph.metadata.get("_signature", {})

    def tensor_maps(names: list[str], user_names: list[str]) -> int:
        maps = []
        for tensor_name, user_name in zip(names, user_names, strict=True):
            n = builder.CreateString(user_name)
            tflite.TensorMapStart(builder)
            tflite.TensorMapAddName(builder, n)
            tflite.TensorMapAddTensorIndex(builder, index[tensor_name])
            maps.append(tflite.TensorMapEnd(builder))
        return _offset_vector(builder, maps)

    sig_in = tensor_maps(graph.inputs, io_names.get("inputs", graph.inputs))
    sig_out = tensor_maps(graph.outputs, io_names.get("outputs", graph.outputs))
    sig_key = builder.CreateString("serving_default")
    tflite.SignatureDefStart(builder)
    tflite.SignatureDefAddInputs(builder, sig_in)
    tflite.SignatureDefAddOutputs(builder, sig_out)
    tflite.SignatureDefAddSignatureKey(builder, sig_key)
    tflite.SignatureDefAddSubgraphIndex(builder, 0)
    return tflite.SignatureDefEnd(builder)


def _write_metadata(builder: flatbuffers.Builder, entries: list[tuple[str, int]]) -> list[int]:
    """Metadata tables: (name, index of the buffer holding its value)."""
    offsets = []
    for key, buf in entries:
        n = builder.CreateString(key)
        tflite.MetadataStart(builder)
        tflite.MetadataAddName(builder, n)
        tflite.MetadataAddBuffer(builder, buf)
        offsets.append(tflite.MetadataEnd(builder))
    return offsets


def serialize(graph: Graph) -> bytes:
    """Serialize ``graph`` (TFLite ops only) to flatbuffer bytes."""
    for node in graph.nodes:
        if not hasattr(tflite.BuiltinOperator, node.op):
            raise UnsupportedModelError(f"internal: '{node.op}' is not a TFLite builtin (lowering missed it)")
    order = _tensor_order(graph)
    index = {name: i for i, name in enumerate(order)}
    builder = flatbuffers.Builder(1024 + sum(t.data.nbytes for t in graph.tensors.values() if t.is_const))
    buffer_data, buffer_of = _buffer_table(graph, order)
    # metadata buffers go after the constant buffers
    metadata: list[tuple[str, int]] = []
    for key, value in sorted(graph.metadata.items()):
        if not key.startswith("_"):
            metadata.append((key, len(buffer_data)))
            buffer_data.append(json.dumps(value, sort_keys=True).encode())
    # large data first (alignment is easiest to honour at the back of the buffer)
    buffer_offsets = _write_buffers(builder, buffer_data)
    tensor_offsets = _write_tensors(builder, graph, order, buffer_of)
    operator_offsets, opcode_index = _write_operators(builder, graph, index)
    subgraph = _write_subgraph(builder, graph, index, tensor_offsets, operator_offsets)
    opcode_offsets = _write_opcodes(builder, opcode_index)
    signature = _write_signature(builder, graph, index)
    metadata_offsets = _write_metadata(builder, metadata)

    opcodes_vec = _offset_vector(builder, opcode_offsets)
    subgraphs_vec = _offset_vector(builder, [subgraph])
    buffers_vec = _offset_vector(builder, buffer_offsets)
    signatures_vec = _offset_vector(builder, [signature])
    metadata_vec = _offset_vector(builder, metadata_offsets) if metadata_offsets else None
    description = builder.CreateString("edgekit")
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(builder, opcodes_vec)
    tflite.ModelAddSubgraphs(builder, subgraphs_vec)
    tflite.ModelAddDescription(builder, description)
    tflite.ModelAddBuffers(builder, buffers_vec)
    tflite.ModelAddSignatureDefs(builder, signatures_vec)
    if metadata_vec is not None:
        tflite.ModelAddMetadata(builder, metadata_vec)
    model = tflite.ModelEnd(builder)
    builder.Finish(model, file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_model(graph: Graph, path: str | os.PathLike | None = None) -> bytes:
    """Serialize ``graph``; also write it atomically to ``path`` when given."""
    data = serialize(graph)
    if path is not None:
        write_atomic(check_output_path(path), data)
    return data
