"""The conversion pipeline: import -> ONNX passes -> lower -> TFLite passes -> write."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.converters import onnx_frontend
from edgekit.converters.io_layout import IO_LAYOUTS, IoLayout
from edgekit.converters.ir import Graph
from edgekit.converters.lowering.driver import describe, lower, unsupported_nodes
from edgekit.converters.passes import ONNX_PASSES, TFLITE_PASSES, optimize_layout, to_nhwc_io
from edgekit.converters.passes.layout import final_layouts, nhwc_in_onnx
from edgekit.converters.tflite_writer import serialize, write_model
from edgekit.errors import OutputPathError, UnsupportedModelError


@dataclass
class ConversionResult:
    path: Path | None
    size_bytes: int
    seconds: float
    ops: dict[str, int]
    transposes: int
    partitions: int | None = None
    edgetpu: Any = None
    verification: Any = None
    io_layout: dict[str, IoDecision] = field(default_factory=dict)  # input/output name -> its layout


@dataclass(frozen=True)
class IoDecision:
    """The layout one input or output of the .tflite model has, and why."""

    kind: str  # "input" or "output"
    name: str
    shape: tuple[int, ...]  # as the .tflite model takes or gives it
    layout: str | None  # "NHWC" or "NCHW" for a 4-D tensor whose layout convert knows
    why: str = ""

    def __str__(self) -> str:
        text = f"{self.kind:<6} {self.name}: " + " ".join(
            filter(None, [self.layout, "[" + ",".join(str(d) for d in self.shape) + "]"])
        )
        return f"{text} ({self.why})" if self.why else text


def onnx_ir(source: onnx_frontend.OnnxSource, input_shapes=None) -> Graph:
    """IR with ONNX ops after the ONNX-level passes (pattern fusion first: Erf is fine
    inside a GELU)."""
    graph = onnx_frontend.to_ir(source, input_shapes)
    for p in ONNX_PASSES:
        graph = p(graph)
    return graph


def import_onnx(model, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """ONNX model (path, bytes or ModelProto) -> IR with ONNX ops, after the ONNX passes;
    refuses, listing every problem at once, a model with ops edgekit cannot lower."""
    source = onnx_frontend.read_model(model)
    onnx_frontend.fixed_input_shapes(source.model, input_shapes)  # shape errors before any work
    graph = onnx_ir(source, input_shapes)
    problems = unsupported_nodes(graph)
    if problems:
        raise UnsupportedModelError(f"the model uses ops edgekit cannot convert: {describe(problems)}")
    return graph


def to_tflite_graph(graph: Graph, io_layout: IoLayout = "auto") -> Graph:
    """ONNX-level IR -> optimized TFLite-level IR (float32), with 4-D I/O laid out as ``io_layout`` says."""
    out = lower(graph)
    out.metadata["io_nhwc_in_onnx"] = sorted(nhwc_in_onnx(out))  # before the passes move the transposes
    if io_layout != "keep":
        to_nhwc_io(out, inputs=True, outputs=False)
    for p in TFLITE_PASSES:
        out = p(out)
    if io_layout != "keep":
        to_nhwc_io(out, inputs=False, outputs=True, every_output=io_layout == "nhwc")
        out = optimize_layout(out)
    return out


def convert(
    model,
    output: str | os.PathLike | None = None,
    *,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    io_layout: IoLayout = "auto",
    quantize: str | None = None,
    calibration=None,
    target: str | None = None,
    auto_mixed: float | None = None,
    equalize: bool = False,
    stem_block: int | None = None,
    **quant_options,
) -> ConversionResult:
    """Convert an ONNX model to a TFLite flatbuffer; writes ``output`` atomically when given.

    ``target="edgetpu"`` requires full-integer int8 with int8/uint8 I/O and reports which ops
    the Edge TPU compiler would leave to the CPU. ``auto_mixed=DB`` keeps in float the layers
    whose int8 output loses more than DB dB of SQNR against their input. ``stem_block=B``
    rewrites a strided convolution on at most 4 channels as SpaceToDepth(B) -> convolution ->
    DepthToSpace (:mod:`edgekit.converters.passes.stem`): faster on x86 CPUs with AMX, not on Arm.
    ``io_layout`` (auto, nhwc, keep): what becomes of 4-D float inputs and outputs, see
    :mod:`edgekit.converters.io_layout`; ``result.io_layout`` says what was done."""
    if "nhwc_io" in quant_options:  # the boolean this option replaced would otherwise be ignored silently
        raise TypeError("convert() takes io_layout='auto', 'nhwc' or 'keep' now, not nhwc_io (False is 'keep')")
    if io_layout not in IO_LAYOUTS:
        raise UnsupportedModelError(f"unknown I/O layout '{io_layout}'; choose {', '.join(IO_LAYOUTS)}")
    if stem_block not in (None, 2, 4, 8):
        raise UnsupportedModelError(f"stem block {stem_block} is not supported; choose 2, 4 or 8")
    if target not in (None, "cpu", "edgetpu"):
        raise UnsupportedModelError(f"unknown target '{target}'; choose cpu or edgetpu")
    if target == "edgetpu" and (quantize != "int8" or quant_options.get("io_type") not in ("int8", "uint8")):
        raise UnsupportedModelError(
            "--target edgetpu needs a fully integer model: add --quantize int8 --io-type int8 (or uint8)"
        )
    if output is not None:
        out_dir = Path(output).parent
        if not out_dir.is_dir():
            raise OutputPathError(f"cannot write {output}: folder {out_dir} does not exist; create it first")
    start = time.perf_counter()
    graph = import_onnx(model, input_shapes)
    if stem_block is not None:
        from edgekit.converters.passes.stem import space_to_depth_stem

        graph = space_to_depth_stem(graph, stem_block)
    if equalize:
        from edgekit.converters.passes.equalize import equalize as cross_layer_equalization

        graph = cross_layer_equalization(graph)
    tfl = to_tflite_graph(graph, io_layout)
    if quantize:
        from edgekit.converters.quantizer import quantize_graph

        if target == "edgetpu":
            quant_options["fully_integer"] = True
        float_tfl = tfl
        tfl = quantize_graph(float_tfl, graph, mode=quantize, calibration=calibration, **quant_options)
        if quantize == "int8" and auto_mixed is not None:
            keep = _lossy_layers(model, graph, tfl, calibration, auto_mixed)
            if keep:
                print(
                    f"auto-mixed: keeping {len(keep)} layer(s) in float: {', '.join(keep[:8])}"
                    f"{' ...' if len(keep) > 8 else ''}"
                )
                quant_options["keep_float"] = list(quant_options.get("keep_float") or []) + keep
                tfl = quantize_graph(float_tfl, graph, mode=quantize, calibration=calibration, **quant_options)
        if quantize == "int8":
            from edgekit.converters.int8_rules import check_int8

            check_int8(tfl)
    _short_constant_names(tfl)
    layout_decisions = _layout_decisions(tfl, io_layout)
    tfl.metadata = {
        "_signature": tfl.metadata["_signature"],
        "edgekit": {
            "version": __version__,
            "source_sha256": graph.metadata.get("source_sha256"),
            "io_layout": tfl.metadata.get("io_layout", {}),
            "io_layouts": {name: d.layout for name, d in layout_decisions.items() if d.layout},
            "tensor_layouts": final_layouts(tfl),
            "quantization": quantize or "float32",
        },
    }
    edgetpu_report = None
    if target == "edgetpu":
        from edgekit.converters.edgetpu import check_edgetpu

        edgetpu_report = check_edgetpu(tfl)
    data = write_model(tfl, output)
    ops = tfl.op_histogram()
    return ConversionResult(
        path=Path(output) if output is not None else None,
        size_bytes=len(data),
        seconds=time.perf_counter() - start,
        ops=ops,
        transposes=ops.get("TRANSPOSE", 0),
        partitions=xnnpack_partitions(data),
        edgetpu=edgetpu_report,
        io_layout=layout_decisions,
    )


def _layout_decisions(tfl: Graph, io_layout: IoLayout) -> dict[str, IoDecision]:
    """The layout of every input and output of the converted model, and why, for the summary."""
    moved = tfl.metadata.get("io_layout", {})
    nhwc_in_source = set(tfl.metadata.get("io_nhwc_in_onnx", []))
    signature = tfl.metadata["_signature"]
    decisions = {}
    for kind, names, tensors in (
        ("input", signature["inputs"], tfl.inputs),
        ("output", signature["outputs"], tfl.outputs),
    ):
        for name, tensor in zip(names, tensors, strict=False):
            shape = tuple(int(d) for d in tfl.shape(tensor))
            if len(shape) != 4:
                layout, why = None, ""
            elif name in moved:
                layout, why = "NHWC", "NCHW in the ONNX model, transposed here"
            elif name in nhwc_in_source:
                layout, why = "NHWC", "NHWC in the ONNX model already: the graph transposes it"
            elif io_layout == "keep":
                layout, why = "NCHW", "as in the ONNX model: --io-layout keep"
            elif kind == "output" and io_layout == "auto":
                layout, why = None, "as in the ONNX model: no NHWC work makes it; --io-layout nhwc transposes it"
            else:  # not float
                layout, why = None, "as in the ONNX model"
            decisions[name] = IoDecision(kind, name, shape, layout, why)
    return decisions


def xnnpack_partitions(model: bytes) -> int | None:
    """How many XNNPACK delegate partitions LiteRT makes of the model (None without LiteRT)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    return sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE")


def _lossy_layers(model, graph: Graph, tfl: Graph, calibration, max_drop: float) -> list[str]:
    """ONNX nodes whose int8 output loses more than ``max_drop`` dB, on one calibration sample."""
    import numpy as np

    from edgekit.converters.mixed import lossy_layers

    names = graph.metadata["_signature"]["inputs"]
    if isinstance(calibration, dict):
        sample = {k: np.asarray(v)[:1] for k, v in calibration.items()}
    else:
        sample = {names[0]: np.asarray(calibration)[:1].reshape(graph.shape(graph.inputs[0]))}
    probe = tfl.copy()
    probe.metadata = {
        "_signature": tfl.metadata["_signature"],
        "edgekit": {"io_layout": tfl.metadata.get("io_layout", {}), "tensor_layouts": tfl.metadata.get("layouts", {})},
    }
    return lossy_layers(model, serialize(probe), sample, max_drop)


def _short_constant_names(graph: Graph) -> None:
    """Name constants after the op that reads them ("conv_2d/12/1": input 1 of op 12) instead
    of the long chains the passes build; names are pure file overhead for weights."""
    renames: dict[str, str] = {}
    for index, node in enumerate(graph.nodes):
        for k, name in enumerate(node.inputs):
            t = graph.tensors.get(name) if name else None
            if t is None or not t.is_const or name in graph.inputs or name in graph.outputs:
                continue
            if name not in renames:
                renames[name] = graph.unique_name(f"{node.op.lower()}/{index}/{k}")
                graph.tensors[renames[name]] = t
                t.name = renames[name]
            node.inputs[k] = renames[name]
    for old in renames:
        graph.tensors.pop(old, None)
