"""ONNX -> IR.

Input shapes are fixed first (from the model or ``--input-shape``); the model then runs
once on onnxruntime with every intermediate tensor exposed, which gives each tensor its
static shape and dtype and the value of every tensor that does not depend on the inputs
(weights built by ConstantOfShape, shape arithmetic through Shape/Gather/Concat/...).
Those are folded to constants, so only data-path nodes reach the IR.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgekit.converters.ir.graph import Graph
from edgekit.errors import (
    BackendError,
    InvalidModelError,
    ParameterError,
    ShapeError,
    UnsupportedModelError,
    first_line,
    mapped,
)

MIN_OPSET = 7
MAX_OPSET = 21

# ops whose result depends only on a tensor's shape: constant once shapes are static
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


@dataclass
class OnnxSource:
    model: onnx.ModelProto
    sha256: str
    path: str | None


def read_model(source: str | os.PathLike | onnx.ModelProto | bytes) -> OnnxSource:
    """Read and sanity-check an ONNX model; user errors become InvalidModelError."""
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
        path = None
    elif isinstance(source, bytes):
        data, path = source, None
    else:
        path = str(source)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InvalidModelError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InvalidModelError(f"{path}: is a folder, expected an .onnx file") from None
    where = path or "model"
    if not data:
        raise InvalidModelError(f"{where} is an empty file; give the model's .onnx file")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise InvalidModelError(
            f"{where} is not a readable ONNX model ({type(exc).__name__}); is the file truncated or of another format?"
        ) from None
    if not model.graph.node or not model.graph.output:
        raise InvalidModelError(f"{where} is not an ONNX model with a graph (no nodes or no outputs)")
    if path is not None and _has_external_data(model):
        data = _load_external_data(model, Path(path))
    with mapped(InvalidModelError, f"{where} fails the ONNX checker", (onnx.checker.ValidationError,)):
        onnx.checker.check_model(model)
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedModelError(
            f"{where} uses ONNX opset {opset}; edgekit converts opsets {MIN_OPSET} to {MAX_OPSET} "
            f"(re-export the model with an opset in that range)"
        )
    return OnnxSource(model, hashlib.sha256(data).hexdigest(), path)


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _load_external_data(model: onnx.ModelProto, path: Path) -> bytes:
    """Weights kept beside the model (``model.onnx.data``: what torch's exporter writes by default)
    are read into it; onnx refuses locations outside the model's folder. Returns the whole
    model's bytes, so its digest covers the weights too."""
    from onnx.external_data_helper import load_external_data_for_model

    with mapped(
        InvalidModelError,
        f"{path}: cannot read the weights it keeps in another file",
        (OSError, ValueError, onnx.checker.ValidationError),
    ):
        load_external_data_for_model(model, str(path.resolve().parent))
    return model.SerializeToString()


def edit_model(
    model: onnx.ModelProto,
    outputs: list[str] | None = None,
    input_values: dict[str, object] | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> onnx.ModelProto:
    """The model with inputs fixed to constants (``input_values``: a control input such as an
    audio model's sample rate, which then folds like any constant; of the shape ``input_shapes``
    gives where the model's is dynamic) and cut at the named tensors (``outputs``: a detector's
    head before its NMS, whose post-processing stays in Python)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    shapes = {name: shape for name, shape in (input_shapes or {}).items() if name in (input_values or {})}
    check_input_shapes(m, shapes)
    inputs = {vi.name: vi for vi in graph_inputs(m)}
    for name, value in (input_values or {}).items():
        if name not in inputs:
            raise ParameterError(
                f"{{input_values}}: the model has no input {name!r}; its inputs are {list(inputs)}", input_values=name
            )
        vi = inputs[name]
        dims = list(shapes.get(name, _dims(vi)))
        if any(not isinstance(d, int) for d in dims):
            raise ParameterError(
                f"{{input_values}}: the input's shape {dims} is not fixed; give it with {{input_shapes}}",
                input_values=name,
            )
        try:
            array = np.broadcast_to(np.asarray(value, dtype=input_dtype(vi)), tuple(dims)).copy()
        except ValueError:
            raise ParameterError(
                f"{{input_values}}: {value!r} does not fit the input's shape {dims}", input_values=name
            ) from None
        m.graph.input.remove(vi)
        m.graph.initializer.append(numpy_helper.from_array(array, name))
    if input_values and not graph_inputs(m):
        raise ParameterError(
            "{input_values} gives every input of the model a value: it would compute one constant; "
            "leave at least one input (values are for control inputs such as a sample rate)",
            input_values=", ".join(input_values),
        )
    if outputs:
        produced = {o for n in m.graph.node for o in n.output if o} | {vi.name for vi in m.graph.input}
        unknown = [o for o in outputs if o not in produced]
        if unknown:
            raise ParameterError(
                f"{{outputs:}}: no tensor named {unknown} in the model (edgekit inspect lists node outputs)"
            )
        _cut(m, outputs)
    return m


def _cut(m: onnx.ModelProto, outputs: list[str]) -> None:
    """Keep what the named outputs need, nothing else."""
    typed = {vi.name: vi for vi in list(m.graph.value_info) + list(m.graph.output)}
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
        typed.update({vi.name: vi for vi in inferred.graph.value_info})
    except Exception:  # inference is a help for types only; onnxruntime works without them
        pass
    needed, keep = set(outputs), []
    for node in reversed(m.graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node_dependencies(node))
    kept = list(reversed(keep))
    del m.graph.node[:]
    m.graph.node.extend(kept)
    del m.graph.output[:]
    m.graph.output.extend(typed.get(o) or helper.make_empty_tensor_value_info(o) for o in outputs)
    for vi in [vi for vi in m.graph.input if vi.name not in needed]:
        m.graph.input.remove(vi)
    for init in [i for i in m.graph.initializer if i.name not in needed]:
        m.graph.initializer.remove(init)


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1,3,224,224`` strings."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise ShapeError(
                f"--input-shape '{spec}' is not NAME=D1,D2,...; e.g. --input-shape input=1,3,224,224"
            ) from None
        if any(d <= 0 for d in shape):
            raise ShapeError(f"--input-shape '{spec}': every dimension must be a whole number above 0")
        if name in shapes:
            raise ShapeError(f"--input-shape gives '{name}' twice; give each input once")
        shapes[name] = shape
    return shapes


def check_input_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse given shapes for inputs the model lacks, of another rank, or that contradict a fixed dimension."""
    inputs = {vi.name: vi for vi in graph_inputs(model)}
    for name, shape in input_shapes.items():
        if name not in inputs:
            raise ShapeError(
                f"--input-shape names '{name}', which is not an input of the model; inputs are: " + ", ".join(inputs)
            )
        dims = _dims(inputs[name])
        if dims and len(shape) != len(dims):
            raise ShapeError(f"--input-shape gives '{name}' {len(shape)} dimensions but the model has {len(dims)}")
        for want, have in zip(shape, dims, strict=False):
            if isinstance(have, int) and have != want:
                raise ShapeError(
                    f"--input-shape {name}={','.join(map(str, shape))} contradicts the model's fixed shape {dims}"
                )


def fixed_input_shapes(
    model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None
) -> dict[str, tuple[int, ...]]:
    input_shapes = dict(input_shapes or {})
    check_input_shapes(model, input_shapes)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in graph_inputs(model):
        dims = _dims(vi)
        if vi.name in input_shapes:
            shapes[vi.name] = tuple(input_shapes[vi.name])
        elif all(isinstance(d, int) for d in dims):
            shapes[vi.name] = tuple(dims)  # type: ignore[arg-type]
        else:
            raise ShapeError(f"input '{vi.name}' has dynamic dimensions {dims}; {_shape_hint(vi.name, dims)}")
    return shapes


def _shape_hint(name: str, dims: list) -> str:
    """How to fix dims: a batch of 1, and a placeholder for each other size only the user knows
    (a 1x1 image would convert, and be useless)."""
    sizes = [str(d) if isinstance(d, int) else "1" if i == 0 else _placeholder(d, i) for i, d in enumerate(dims)]
    unknown = [size for size, d in zip(sizes, dims, strict=True) if not isinstance(d, int) and size != "1"]
    hint = f"fix them with --input-shape {name}={','.join(sizes)}"
    return hint + (f", putting your sizes for {', '.join(unknown)}" if unknown else "")


def _placeholder(dim, index: int) -> str:
    text = str(dim)
    return text.upper() if text.isidentifier() and len(text) <= 8 else f"D{index}"


_ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.BOOL: np.bool_,
}


def input_dtype(vi: onnx.ValueInfoProto) -> np.dtype:
    elem = vi.type.tensor_type.elem_type
    if elem not in _ONNX_TO_NUMPY:
        raise UnsupportedModelError(f"input '{vi.name}' has ONNX element type {elem}, which edgekit cannot feed")
    return np.dtype(_ONNX_TO_NUMPY[elem])


def captured_names(graph: onnx.GraphProto) -> set[str]:
    """Outer-scope tensors a subgraph (an ``If`` branch, a ``Loop`` body) reads without taking
    them as inputs: they are as much inputs of the node that holds it as ``node.input``."""
    defined = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    used: set[str] = set()
    for node in graph.node:
        used.update(i for i in node.input if i and i not in defined)
        for sub in _subgraphs(node):
            used.update(n for n in captured_names(sub) if n not in defined)
        defined.update(o for o in node.output if o)
    return used


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH] + [
        g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs
    ]


def node_dependencies(node: onnx.NodeProto) -> list[str]:
    """Every tensor a node reads: its inputs and what its subgraphs capture."""
    captured = set().union(*(captured_names(g) for g in _subgraphs(node))) if _subgraphs(node) else set()
    return [i for i in node.input if i] + sorted(captured)


def _constant_outputs(model: onnx.ModelProto) -> set[str]:
    """Names of tensors that do not depend on the graph inputs (shapes are static)."""
    const = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        ins = node_dependencies(node)
        if node.op_type in SHAPE_ONLY_OPS or all(i in const for i in ins):
            if node.op_type.startswith("Random"):
                continue
            const.update(o for o in node.output if o)
    return const


def evaluate(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Run the model once on zeros with every intermediate tensor exposed."""
    from edgekit.converters.harness import onnx_intermediates

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            for d, v in zip(dims, shapes[vi.name], strict=True):
                d.Clear()
                d.dim_value = v
    try:
        feeds = {vi.name: np.zeros(shapes[vi.name], input_dtype(vi)) for vi in graph_inputs(model)}
        return onnx_intermediates(m, feeds)
    except BackendError as exc:  # refused at load: the backend's message says so
        raise InvalidModelError(f"{exc} (with the fixed input shapes)") from None
    except Exception as exc:
        raise InvalidModelError(
            f"onnxruntime cannot run the model with the fixed input shapes: {first_line(exc)}"
        ) from exc


def _inline_constant_ifs(model: onnx.ModelProto, values: dict, constant: set[str]) -> bool:
    """Replace each ``If`` whose condition does not depend on the inputs (exporters test shapes,
    which are static here) by the branch it takes, its outputs passed on through Identity nodes.
    The condition's value comes from constants alone, so the all-zero probe cannot choose it."""
    changed = False
    for index, node in enumerate(list(model.graph.node)):
        if node.op_type != "If" or node.input[0] not in constant or node.input[0] not in values:
            continue
        taken = "then_branch" if bool(np.asarray(values[node.input[0]]).reshape(-1)[0]) else "else_branch"
        branch = next(a.g for a in node.attribute if a.name == taken)
        renames = _fresh_names(model, branch, node.name or f"if{index}")
        inlined = []
        for init in branch.initializer:
            constant_node = helper.make_node("Constant", [], [renames.get(init.name, init.name)], value=init)
            inlined.append(constant_node)
        for inner in branch.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            copy.input[:] = [renames.get(i, i) for i in copy.input]
            copy.output[:] = [renames.get(o, o) for o in copy.output]
            inlined.append(copy)
        for out, branch_out in zip(node.output, branch.output, strict=True):
            inlined.append(helper.make_node("Identity", [renames.get(branch_out.name, branch_out.name)], [out]))
        position = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for k, new in enumerate(inlined):
            model.graph.node.insert(position + k, new)
        changed = True
        break  # indices moved: look again
    return changed


def _fresh_names(model: onnx.ModelProto, branch: onnx.GraphProto, prefix: str) -> dict[str, str]:
    """Branch-local names that would clash with the outer graph's, renamed."""
    outer = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.initializer}
    outer |= {i.name for i in model.graph.input}
    local = {o for n in branch.node for o in n.output} | {i.name for i in branch.initializer}
    return {name: f"{prefix}/{name}" for name in local if name in outer}


def to_ir(source: OnnxSource, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Build the IR (ONNX ops, NCHW) with static shapes and folded constants."""
    model = source.model
    shapes = fixed_input_shapes(model, input_shapes)
    values = evaluate(model, shapes)
    constant = _constant_outputs(model)
    while _inline_constant_ifs(model, values, constant):  # an inlined branch may hold Ifs of its own
        values = evaluate(model, shapes)
        constant = _constant_outputs(model)

    g = Graph()
    g.metadata["source_sha256"] = source.sha256
    g.metadata["opset"] = default_opset(model)
    for vi in graph_inputs(model):
        g.add_tensor(vi.name, shapes[vi.name], input_dtype(vi))
        g.inputs.append(vi.name)
    initializers = {i.name: i for i in model.graph.initializer}
    for name, init in initializers.items():
        g.add_tensor(name, tuple(init.dims), numpy_helper.to_array(init).dtype, numpy_helper.to_array(init))

    custom: dict[tuple[str, str], list[str]] = {}  # (domain, op) -> node names: every one is named
    for index, node in enumerate(model.graph.node):
        outputs = [o for o in node.output]
        for o in outputs:
            if not o or o not in values:
                continue
            v = np.asarray(values[o])
            g.add_tensor(o, v.shape, v.dtype, v if o in constant else None)
        if all(not o or o in constant for o in outputs):
            continue  # folded
        if node.domain not in ("", "ai.onnx"):
            custom.setdefault((node.domain, node.op_type), []).append(node.name or f"{node.op_type}_{index}")
            continue
        attrs = {a.name: _attr_value(a) for a in node.attribute}
        g.add_node(node.op_type, list(node.input), outputs, attrs, node.name or f"{node.op_type}_{index}")
    _refuse_custom_ops(custom)
    g.outputs = [o.name for o in model.graph.output]
    # an output that is constant still needs a tensor
    for o in g.outputs:
        if o not in g.tensors:
            raise InvalidModelError(f"graph output '{o}' is not produced by any node")
    g.metadata["_signature"] = {"inputs": list(g.inputs), "outputs": list(g.outputs)}
    return g


def _refuse_custom_ops(custom: dict[tuple[str, str], list[str]]) -> None:
    if custom:
        listed = "; ".join(f"{d}.{op} x{len(names)} (first: '{names[0]}')" for (d, op), names in custom.items())
        raise UnsupportedModelError(
            f"the model uses ops outside the ONNX standard that edgekit cannot convert: {listed}; "
            "convert the float model instead (onnxruntime's quantized or fused models use com.microsoft ops)"
        )


def _attr_value(attr: onnx.AttributeProto):
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value
