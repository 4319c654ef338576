"""How the converters run models: every LiteRT interpreter and onnxruntime session they use is
made here, through :mod:`edgekit.runtime` (its Session quantizes int8 inputs and dequantizes
outputs; its backends count delegate partitions and read intermediates).

- :func:`open_tflite`: a .tflite model as a runtime Session; per-layer work passes
  ``preserve_all_tensors=True`` and ``xnnpack=False`` (TFLite's reference kernels).
- :class:`TFLiteRunner`: a converted model fed and read in the source (ONNX) model's layout.
- :func:`xnnpack_delegation`: the XNNPACK partitions LiteRT makes of a model and the ops between them.
- :class:`OnnxRunner` and :func:`onnx_intermediates`: an ONNX model on onnxruntime, optionally with
  every intermediate tensor exposed as an output."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekit.runtime.backends import installed
from edgekit.runtime.backends.onnx import OnnxRuntimeBackend
from edgekit.runtime.session import Session, load

if TYPE_CHECKING:  # onnx only where an ONNX model is run: the op profiler runs .tflite files on a device
    import onnx


def open_tflite(model: bytes, threads: int = 1, *, xnnpack: bool = True, preserve_all_tensors: bool = False) -> Session:
    """A .tflite model's bytes loaded in the runtime. Inputs are taken as given (NaN included):
    the converters feed what the user's data holds and report what comes out."""
    return load(
        model, threads=threads, xnnpack=xnnpack, preserve_all_tensors=preserve_all_tensors, reject_nonfinite=False
    )


@dataclass(frozen=True)
class XnnpackDelegation:
    """How LiteRT's XNNPACK delegate splits a model: its partitions, and the ops it leaves to
    TFLite's own kernels (in model order), which are where one partition ends and the next begins."""

    partitions: int
    cpu_ops: tuple[str, ...]

    def cpu_op_counts(self) -> dict[str, int]:
        return dict(Counter(self.cpu_ops).most_common())


def xnnpack_delegation(model: bytes) -> XnnpackDelegation | None:
    """What XNNPACK takes of the model, read off the loaded interpreter (None without LiteRT)."""
    if not installed("litert"):
        return None
    with open_tflite(model) as session:
        return XnnpackDelegation(session.delegated_partitions(), tuple(op for _, op in session.undelegated_ops()))


class TFLiteRunner:
    """A converted model fed and read in the source (ONNX) model's layout, with float values (int8
    I/O quantized by the runtime Session, as the model's
    :class:`~edgekit.runtime.signature.Signature` says). Load options as :func:`open_tflite`'s;
    ``threads`` defaults to the CPU count."""

    def __init__(self, model: bytes, threads: int | None = None, **options) -> None:
        self.session = open_tflite(model, threads or os.cpu_count() or 1, **options)
        self.signature = self.session.signature
        self.tensors = {t.name: t for t in (*self.session.inputs, *self.session.outputs)}
        # name order, as LiteRT's signature list gives them (reports list outputs in it)
        self.input_names: list[str] = sorted(t.name for t in self.session.inputs)
        self.output_names: list[str] = sorted(t.name for t in self.session.outputs)

    def source_shape(self, name: str) -> tuple[int, ...]:
        """Input ``name``'s shape in the source (ONNX) model's layout."""
        spec = self.tensors[name]
        perm = spec.source_perm
        return tuple(spec.shape[i] for i in np.argsort(perm)) if perm else spec.shape

    def prepare(self, name: str, value: np.ndarray) -> np.ndarray:
        """A source-layout array in the model's layout, shape and (float) dtype for input ``name``;
        values of a quantized input stay real numbers for the Session to quantize."""
        spec = self.tensors[name]
        perm = spec.source_perm
        value = np.asarray(np.transpose(value, perm) if perm else value).reshape(spec.shape)
        if spec.quant is None:
            value = value.astype(spec.dtype)
        elif not np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float64)  # integers (image bytes) divide by the scale as numpy does
        return np.require(value, requirements="C")  # ascontiguousarray would make a scalar 1-D

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run({name: self.prepare(name, value) for name, value in feeds.items()})
        outputs = {}
        for name in self.output_names:
            perm = self.tensors[name].source_perm
            outputs[name] = np.transpose(results[name], np.argsort(perm)) if perm else results[name]
        return outputs


class OnnxRunner:
    """An ONNX model on onnxruntime through the runtime's backend, with onnxruntime's own thread
    count. ``optimization``: "none", "basic", "extended" or "all" (None: onnxruntime's default)."""

    def __init__(self, model: onnx.ModelProto, optimization: str | None = None) -> None:
        self.backend = OnnxRuntimeBackend(model.SerializeToString(), 0, optimization=optimization)
        self.input_names = [spec.name for spec in self.backend.inputs]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # the session itself: each call feeds exactly what it is given, none left over from the last
        values = self.backend.session.run(None, dict(feeds))
        return {spec.name: value for spec, value in zip(self.backend.outputs, values, strict=True)}


def exposing(model: onnx.ModelProto, names: Iterable[str] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are ``names`` (default: every node output, in order)."""
    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if names is None:
        names = [o for node in copy.graph.node for o in node.output if o]
    del copy.graph.output[:]
    copy.graph.output.extend(helper.ValueInfoProto(name=name) for name in dict.fromkeys(names))
    return copy


def onnx_intermediates(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every node output of ``model`` on ``feeds``; graph optimizations off, so each keeps its name."""
    return OnnxRunner(exposing(model), optimization="none")(feeds)
