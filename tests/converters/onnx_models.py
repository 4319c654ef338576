"""Small ONNX models for converter tests, built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, ...]],
    outputs: dict[str, tuple[int, ...] | None],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s or []) for n, s in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    # output shapes left open are filled in by shape inference
    for out in m.graph.output:
        if not outputs[out.name]:
            out.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(m)
    known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for out in m.graph.output:
        if not outputs[out.name] and out.name in known and known[out.name].type.tensor_type.HasField("shape"):
            out.CopyFrom(known[out.name])
    missing = [o for o in m.graph.output if not o.type.tensor_type.HasField("shape")]
    if missing:  # shape inference gave up: take the shapes from a run
        import onnxruntime as ort

        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        results = session.run(None, {n: np.zeros(s, np.float32) for n, s in inputs.items()})
        shapes = {o.name: r.shape for o, r in zip(session.get_outputs(), results, strict=True)}
        for o in missing:
            o.CopyFrom(helper.make_tensor_value_info(o.name, TensorProto.FLOAT, shapes[o.name]))
    onnx.checker.check_model(m)
    return m


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def randomize_constant_weights(m: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Replace the ConstantOfShape-generated weights of the onnx package's light model zoo with
    random values (He-scaled for conv/linear weights, near 1 for vectors), so outputs depend on
    the input and a wrong conversion shows."""
    from edgekit.converters.onnx.frontend import evaluate, fixed_input_shapes

    values = evaluate(m, fixed_input_shapes(m, None))
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(m)
    kept = []
    for node in out.graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = values[node.output[0]].shape
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            value = rng.uniform(0.5, 1.5, shape)
        out.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    out.ir_version = max(out.ir_version, 4)  # IR < 4 wants initializers listed as inputs
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out
