"""Recovery after channel pruning without training: bias correction.

Removing input channels from a convolution or Gemm removes their contribution to its output,
and the mean of that contribution is what most shifts the layers after it. Running calibration
samples through the dense and the pruned model on onnxruntime gives, for every layer that reads
pruned channels (a group's consumer), the per-channel mean of its output (before BatchNorm or
activation) in both; adding the difference to the pruned layer's bias makes the means match.
Layers are corrected one after the other in graph order, each measured with the corrections
before it in place, since correcting an early layer changes the statistics of later ones."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.converters.prune.channels import constants_to_initializers, kept_channels
from edgekit.errors import InputError


def _weight_dims(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> list[int] | None:
    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    return list(inits[node.input[1]].dims)


def _input_features(node: onnx.NodeProto, dims: list[int]) -> int:
    """How many input channels (Conv, per group) or features (Gemm) the layer reads."""
    if node.op_type == "Conv":
        return dims[1]
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return dims[1] if trans_b else dims[0]


def pruned_consumers(dense: onnx.ModelProto, pruned: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The pruned model's Conv/Gemm nodes that read fewer input channels than in the dense model,
    in graph (topological) order; nodes are matched by their output tensor."""
    dense_inits = {i.name: i for i in dense.graph.initializer}
    pruned_inits = {i.name: i for i in pruned.graph.initializer}
    dense_nodes = {n.output[0]: n for n in dense.graph.node if n.op_type in ("Conv", "Gemm")}
    found = []
    for node in pruned.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.output[0] not in dense_nodes:
            continue
        before = _weight_dims(dense_nodes[node.output[0]], dense_inits)
        after = _weight_dims(node, pruned_inits)
        if before is None or after is None:
            continue
        if _input_features(node, after) < _input_features(node, before):
            found.append(node)
    return found


class _Runner:
    """Per-channel means of chosen tensors over a set of samples, on onnxruntime. Runs the whole
    batch at once when the model allows it (batch dimension made symbolic), else sample by sample."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = samples

    def means(self, model: onnx.ModelProto, tensors: list[str]) -> dict[str, np.ndarray]:
        from edgekit.converters.harness import OnnxRunner, exposing

        probe = exposing(model, tensors)
        del probe.graph.value_info[:]  # their fixed batch would contradict the symbolic one
        name = probe.graph.input[0].name
        batched = onnx.ModelProto()
        batched.CopyFrom(probe)
        batched.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
        try:
            found = OnnxRunner(batched)({name: self.samples})
            outputs = [found[t] for t in tensors]
            if any(o.ndim == 0 or o.shape[0] != len(self.samples) for o in outputs):
                raise ValueError("the batch did not come through")
        except Exception:  # fixed batch in Reshape constants etc.: one sample at a time
            runner = OnnxRunner(probe)
            runs = [runner({name: s[None]}) for s in self.samples]
            outputs = [np.concatenate([r[t] for r in runs]) for t in tensors]
        result = {}
        for tensor, value in zip(tensors, outputs, strict=True):
            axes = tuple(i for i in range(value.ndim) if i != 1)  # N, C, spatial... -> C
            result[tensor] = value.astype(np.float64).mean(axis=axes)
        return result


def _set_bias(model: onnx.ModelProto, node: onnx.NodeProto, delta: np.ndarray) -> None:
    """Add ``delta`` to ``node``'s bias, creating the initializer (and sharing none) as needed."""
    inits = {i.name: i for i in model.graph.initializer}
    scale = 1.0
    if node.op_type == "Gemm":
        beta = next((a for a in node.attribute if a.name == "beta"), None)
        if beta is not None and beta.f != 0:
            scale = beta.f
        elif beta is not None:  # beta 0 ignores C: give the layer its own bias at beta 1
            beta.f = 1.0
            if len(node.input) > 2:
                node.input[2] = ""
    has_bias = len(node.input) > 2 and node.input[2] in inits
    if has_bias:
        old = numpy_helper.to_array(inits[node.input[2]])
        if old.shape != delta.shape:
            raise InputError(
                f"cannot correct the bias of {node.name or node.output[0]}: its bias has shape {old.shape}"
            )
    else:
        old = np.zeros(delta.shape, np.float32)
    new_name = f"{node.output[0]}__bias_corrected"
    value = (old.astype(np.float64) + delta / scale).astype(np.float32)
    if has_bias and node.input[2] == new_name:
        inits[new_name].CopyFrom(numpy_helper.from_array(value, new_name))
        return
    model.graph.initializer.append(numpy_helper.from_array(value, new_name))
    old_name = node.input[2] if has_bias else None
    if len(node.input) > 2:
        node.input[2] = new_name
    else:
        node.input.append(new_name)
    if old_name and not any(old_name in n.input for n in model.graph.node):
        model.graph.initializer.remove(inits[old_name])


def correct_bias(dense: onnx.ModelProto, pruned: onnx.ModelProto, samples: np.ndarray) -> onnx.ModelProto:
    """A copy of ``pruned`` whose layers reading pruned channels have their biases shifted so the
    per-channel mean of their outputs on ``samples`` (a batch in the model's input layout) matches
    ``dense``'s. ``pruned`` must come from :func:`prune_channels` on ``dense`` (it records which
    channels it kept)."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim < 1 or len(samples) == 0:
        raise InputError("bias correction needs calibration samples (a non-empty batch)")
    if len(dense.graph.input) != 1 or len(pruned.graph.input) != 1:
        raise InputError("bias correction supports models with a single input")
    if pruned.graph.input[0].name != dense.graph.input[0].name:
        raise InputError("the pruned model's input is not the dense model's; pass the model it was pruned from")
    reference_model = onnx.ModelProto()
    reference_model.CopyFrom(dense)
    constants_to_initializers(reference_model)  # weights held in Constant nodes, as the pruner sees them
    dense = reference_model
    out = onnx.ModelProto()
    out.CopyFrom(pruned)
    constants_to_initializers(out)
    consumers = pruned_consumers(dense, out)
    if not consumers:
        return out
    kept = kept_channels(out)
    dense_nodes = {n.output[0]: n for n in dense.graph.node}
    for node in consumers:
        if node.output[0] not in kept and _output_channels(dense, dense_nodes[node.output[0]]) != _output_channels(
            out, node
        ):
            raise InputError(
                f"cannot line up the output channels of {node.name or node.output[0]} with the dense model; "
                "bias correction needs a model pruned by edgekit (it records the channels it kept)"
            )
    rank = len(dense.graph.input[0].type.tensor_type.shape.dim)
    if samples.ndim == rank - 1:
        samples = samples[None]
    runner = _Runner(samples)
    reference = runner.means(dense, [n.output[0] for n in consumers])
    for node in consumers:
        target = reference[node.output[0]]
        if node.output[0] in kept:
            target = target[kept[node.output[0]]]
        current = runner.means(out, [node.output[0]])[node.output[0]]
        _set_bias(out, node, target - current)
    return out


def _output_channels(model: onnx.ModelProto, node: onnx.NodeProto) -> int | None:
    inits = {i.name: i for i in model.graph.initializer}
    dims = _weight_dims(node, inits)
    if dims is None:
        return None
    if node.op_type == "Conv":
        return dims[0]
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return dims[0] if trans_b else dims[1]
