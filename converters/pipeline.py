"""The conversion pipeline: import -> ONNX passes -> lower -> TFLite passes -> write."""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit import __version__
from edgekit.converters.config import PruneConfig, QuantConfig
from edgekit.converters.harness import xnnpack_delegation
from edgekit.converters.io_layout import IO_LAYOUTS, IoLayout
from edgekit.converters.ir.graph import Graph
from edgekit.converters.onnx import frontend as onnx_frontend
from edgekit.converters.onnx.lowering.driver import lower, refuse, unsupported_nodes
from edgekit.converters.passes import ONNX_PASSES, TFLITE_PASSES, optimize_layout, to_nhwc_io
from edgekit.converters.passes.layout import final_layouts, nhwc_in_onnx
from edgekit.converters.tflite.writer import write_model
from edgekit.errors import OutputPathError, ParameterError, UnsupportedModelError

if TYPE_CHECKING:  # the accuracy-aware mode's module loads only when a budget is given
    from edgekit.converters.quant.accuracy import AccuracyResult
    from edgekit.converters.quant.faster import SpeedChoice


@dataclass
class ConversionResult:
    path: Path | None
    size_bytes: int
    seconds: float
    ops: dict[str, int]
    transposes: int
    partitions: int | None = None  # XNNPACK's (None without LiteRT)
    cpu_ops: dict[str, int] = field(default_factory=dict)  # ops XNNPACK leaves to TFLite's kernels
    edgetpu: Any = None
    verification: Any = None
    io_layout: dict[str, IoDecision] = field(default_factory=dict)  # input/output name -> its layout
    pruning: PruningResult | None = None
    accuracy: AccuracyResult | None = None  # what the accuracy-aware int8 mode kept in float, held and cost
    speed_choice: SpeedChoice | None = None  # what float_where_faster measured and kept in float


def _delegation(data: bytes) -> dict[str, Any]:
    """XNNPACK's partitions of the written model and the ops it leaves to TFLite's kernels."""
    found = xnnpack_delegation(data)
    return {"partitions": found.partitions, "cpu_ops": found.cpu_op_counts()} if found else {}


@dataclass(frozen=True)
class PruningResult:
    """What pruning before conversion did; ``model`` is the pruned ONNX model that was converted."""

    model: Any  # onnx.ModelProto
    config: PruneConfig
    channel_ratio: float | None = None  # the share of channels removed (the mean over groups, by latency)
    round_to: int | None = None
    macs_dense: int | None = None
    macs_pruned: int | None = None
    sparsity_per_layer: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The figures, as the conversion report records them."""
        out: dict[str, Any] = {}
        if self.config.channels:
            out |= {
                "ratio": self.channel_ratio,
                "criterion": self.config.criterion,
                "round_to": self.round_to,
                "allocation": self.config.allocation,
                "bias_correct": self.config.bias_correct,
                "macs_dense": self.macs_dense,
                "macs_pruned": self.macs_pruned,
            }
        if self.config.sparsity is not None:
            out |= {"sparsity": self.config.sparsity, "sparsity_per_layer": self.sparsity_per_layer}
        if self.config.clusters is not None:
            out["clusters"] = self.config.clusters
        return out


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
        refuse("the model uses ops edgekit cannot convert", problems)
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
    quant: QuantConfig | None = None,
    prune: PruneConfig | None = None,
    target: str | None = None,
    equalize: bool = False,
    stem_block: int | None = None,
    quantize: str | None = None,
    **quant_options,
) -> ConversionResult:
    """Convert an ONNX model to a TFLite flatbuffer; writes ``output`` atomically when given.

    ``prune`` (:class:`PruneConfig`) prunes the model first; ``result.pruning`` holds the pruned
    ONNX model that was converted. ``quant`` (:class:`QuantConfig`) quantizes it;
    ``quantize=MODE`` with QuantConfig's fields as keywords (``calibration=...``) is short for
    ``quant=QuantConfig(mode=MODE, ...)``. ``target="edgetpu"`` requires full-integer int8
    with int8/uint8 I/O and reports which ops the Edge TPU compiler would leave to the CPU.
    ``quant.accuracy_budget`` keeps in float the fewest layers that hold a budget of changed
    decisions on validation data; ``result.accuracy`` says which, and what they hold and cost.
    ``equalize`` applies cross-layer equalization before quantizing, ``quant.smooth_activations``
    :mod:`edgekit.converters.passes.smooth`. ``stem_block=B`` rewrites a strided convolution on
    at most 4 channels as SpaceToDepth(B) -> convolution -> DepthToSpace (faster on AMX x86 CPUs).
    ``io_layout`` (auto, nhwc, keep): what becomes of 4-D float inputs and outputs, see
    :mod:`edgekit.converters.io_layout`; ``result.io_layout`` says what was done."""
    quant = _quant_config(quant, quantize, quant_options)
    _check_options(output, io_layout, quant, prune, target, equalize, stem_block)
    if target == "edgetpu":
        quant = replace(quant, fully_integer=True)
    start = time.perf_counter()
    pruning = prune_for_conversion(model, prune, input_shapes, stem_block) if prune is not None else None
    if pruning is not None:
        model = pruning.model
    graph = _onnx_passes(import_onnx(model, input_shapes), stem_block, equalize)
    _check_keep_float(graph, quant)
    graph = _smooth_activations(model, graph, quant)
    tfl = to_tflite_graph(graph, io_layout)
    tfl, accuracy, speed_choice = _quantize(model, graph, tfl, quant, io_layout)
    _short_constant_names(tfl)
    layout_decisions = _layout_decisions(tfl, io_layout)
    tfl.metadata = _edgekit_metadata(tfl, graph, layout_decisions, quant)
    edgetpu_report = _edgetpu_report(tfl) if target == "edgetpu" else None
    data = write_model(tfl, output)
    ops = tfl.op_histogram()
    return ConversionResult(
        path=Path(output) if output is not None else None,
        size_bytes=len(data),
        seconds=time.perf_counter() - start,
        ops=ops,
        transposes=ops.get("TRANSPOSE", 0),
        **_delegation(data),
        edgetpu=edgetpu_report,
        io_layout=layout_decisions,
        pruning=pruning,
        accuracy=accuracy,
        speed_choice=speed_choice,
    )


def _edgetpu_report(tfl: Graph):
    """Which ops the Edge TPU compiler would leave to the CPU."""
    from edgekit.converters.tflite.edgetpu import check_edgetpu

    return check_edgetpu(tfl)


def _quant_config(quant: QuantConfig | None, quantize: str | None, options: dict[str, Any]) -> QuantConfig | None:
    """``quant``, or the QuantConfig the shorthand ``quantize=MODE, **options`` describes."""
    if "nhwc_io" in options:  # the boolean this option replaced would otherwise be ignored silently
        raise TypeError("convert() takes io_layout='auto', 'nhwc' or 'keep' now, not nhwc_io (False is 'keep')")
    if quant is not None:
        if quantize is not None or options:
            raise TypeError("convert() takes quant=QuantConfig(...) or quantize=MODE with its options, not both")
        return quant
    if quantize is None:
        given = sorted(name for name, value in options.items() if value is not None)
        if given:
            raise ParameterError(f"{{{given[0]}}} goes with {{mode}} (quantize=MODE); without it the model stays float")
        return None
    return QuantConfig(mode=quantize, **options)


def _check_options(output, io_layout, quant, prune, target, equalize, stem_block) -> None:
    """Refuse, before any work, options that cannot work together or a place that cannot be written."""
    if io_layout not in IO_LAYOUTS:
        raise UnsupportedModelError(f"unknown io_layout '{io_layout}'; choose {', '.join(IO_LAYOUTS)}")
    if stem_block not in (None, 2, 4, 8):
        raise UnsupportedModelError(f"stem_block {stem_block} is not supported; choose 2, 4 or 8")
    if target not in (None, "cpu", "edgetpu"):
        raise UnsupportedModelError(f"unknown target '{target}'; choose cpu or edgetpu")
    if target == "edgetpu" and (quant is None or quant.mode != "int8" or quant.io_type not in ("int8", "uint8")):
        raise ParameterError("{target:edgetpu} needs a fully integer model: add {mode:int8} {io_type:int8} (or uint8)")
    if target == "edgetpu" and quant.accuracy_budget is not None:
        raise ParameterError("{accuracy_budget} keeps layers in float, which {target:edgetpu} cannot run; drop one")
    if equalize and prune is not None and prune.clusters is not None:
        raise ParameterError(
            "{equalize} rescales the weights per input channel and would undo {clusters}; drop one of them"
        )
    if output is not None:
        out_dir = Path(output).parent
        if not out_dir.is_dir():
            raise OutputPathError(f"cannot write {output}: folder {out_dir} does not exist; create it first")


def _check_keep_float(graph: Graph, quant: QuantConfig | None) -> None:
    """Refuse ``keep_float`` names that match no node of the ONNX-level graph (what the quantizer
    matches them against): ignored, a mistyped name would leave its layer int8 without a word."""
    if quant is None or not quant.keep_float:
        return
    known = {n.name for n in graph.nodes if n.name}
    unknown = [name for name in quant.keep_float if name not in known]
    if not unknown:
        return
    names = sorted(known)
    close = difflib.get_close_matches(unknown[0], names, n=3)
    hint = f"close names: {close}" if close else f"its nodes are named like {names[:3]}"
    message = f"the model has no node named {', '.join(map(repr, unknown))}; {hint}"
    raise ParameterError("{keep_float}: " + message.replace("{", "{{").replace("}", "}}"))


def _onnx_passes(graph: Graph, stem_block: int | None, equalize: bool) -> Graph:
    """The optional ONNX-level rewrites: the space-to-depth stem, cross-layer equalization."""
    if stem_block is not None:
        from edgekit.converters.passes.stem import space_to_depth_stem

        graph = space_to_depth_stem(graph, stem_block)
    if equalize:
        from edgekit.converters.passes.equalize import equalize as cross_layer_equalization

        graph = cross_layer_equalization(graph)
    return graph


def _smooth_activations(model, graph: Graph, quant: QuantConfig | None) -> Graph:
    """``graph`` with the activation equalization of :mod:`edgekit.converters.passes.smooth`
    when ``quant`` asks for it."""
    if quant is None or not quant.smooth_activations:
        return graph
    smoothed = _smoothed(model, graph, quant.calibration)
    if smoothed is None:  # said, not silent: the option the user gave changes nothing here
        print("smooth-activations: this model has no convolution -> HardSwish -> depthwise chain; nothing changed")
        return graph
    return smoothed


def _smoothed(model, graph: Graph, calibration) -> Graph | None:
    """A copy of ``graph`` with its HardSwish chains equalized, their channel ranges measured
    on the ``calibration`` samples through the source ``model``; None when it has no chain."""
    from edgekit.converters.onnx.frontend import read_model
    from edgekit.converters.passes.smooth import channel_ranges, hard_swish_chains, smooth_activations
    from edgekit.converters.quant.calibration import prepare_samples

    chains = hard_swish_chains(graph)
    if not chains:
        return None
    samples = prepare_samples(calibration, graph)
    ranges = channel_ranges(read_model(model).model, [chain.equalized for chain in chains], samples)
    return smooth_activations(graph.copy(), ranges)


def _smoothed_calibrations(model, graph: Graph, quant: QuantConfig, io_layout: IoLayout, options) -> dict:
    """For the accuracy budget, unless the user chose already: each calibration method again on
    the graph with its activations smoothed (label "METHOD+smooth"); none for a model without
    HardSwish chains or without calibration samples."""
    from edgekit.converters.quant.quantizer import calibrate_graph_each

    if quant.smooth_activations or quant.calibration is None:
        return {}
    smoothed = _smoothed(model, graph, quant.calibration)
    if smoothed is None:
        return {}
    tfl = to_tflite_graph(smoothed, io_layout)
    each = calibrate_graph_each(tfl, smoothed, methods=quant.methods_to_try(), **options)
    # every tensor the pass rescales gets a new name, so the budget's per-layer ranking against the
    # ONNX model leaves them out rather than counting the scale as loss
    return {f"{method}+smooth": calibrated for method, calibrated in each.items()}


def _quantize(
    model, graph: Graph, tfl: Graph, quant: QuantConfig | None, io_layout: IoLayout
) -> tuple[Graph, AccuracyResult | None, SpeedChoice | None]:
    """The float TFLite-level graph quantized as ``quant`` says (unchanged without it), checked
    against TFLite's int8 rules; the accuracy-aware mode's result (None unless
    ``quant.accuracy_budget``; it also tries each calibration on the graph with its activations
    smoothed) and what ``quant.float_where_faster`` measured (else None)."""
    if quant is None:
        return tfl, None, None
    from edgekit.converters.quant.quantizer import CALIBRATED_MODES, calibrate_graph_each, quantize_graph

    accuracy = calibrated = speed_choice = None
    if quant.mode in CALIBRATED_MODES:  # once: every choice of layers in float reuses the ranges
        options = {k: v for k, v in quant.calibration_options().items() if k != "method"}
        calibrations = calibrate_graph_each(tfl, graph, methods=quant.methods_to_try(), **options)
        calibrated = next(iter(calibrations.values()))
    if quant.mode == "int8" and quant.accuracy_budget is not None:
        from edgekit.converters.quant.accuracy import quantize_within_budget

        calibrations |= _smoothed_calibrations(model, graph, quant, io_layout, options)
        quantized, accuracy = quantize_within_budget(model, graph, tfl, quant, calibrations)
        speed_choice = accuracy.speed
    else:
        quantized = quantize_graph(tfl, graph, **quant.quantize_options(), calibrated=calibrated)
    if quant.mode == "int8" and quant.auto_mixed is not None:
        from edgekit.converters.quant.mixed import lossy_layers_on_calibration

        keep = lossy_layers_on_calibration(model, graph, quantized, quant.calibration, quant.auto_mixed)
        if keep:
            print(
                f"auto-mixed: keeping {len(keep)} layer(s) in float: {', '.join(keep[:8])}"
                f"{' ...' if len(keep) > 8 else ''}"
            )
            quant = replace(quant, keep_float=(*quant.keep_float, *keep))
            quantized = quantize_graph(tfl, graph, **quant.quantize_options(), calibrated=calibrated)
    if quant.float_where_faster and accuracy is None:
        from edgekit.converters.quant.faster import float_where_faster

        quantized, speed_choice = float_where_faster(tfl, graph, quantized, quant, calibrated)
    if speed_choice is not None:
        print(speed_choice.summary())
    if quant.mode == "int8":
        from edgekit.converters.quant.int8_rules import check_int8

        check_int8(quantized, quant.max_weight_values)
    return quantized, accuracy, speed_choice


def _edgekit_metadata(tfl: Graph, graph: Graph, layouts: dict[str, IoDecision], quant: QuantConfig | None) -> dict:
    """What the .tflite file says about itself: its signature and edgekit's record of the conversion."""
    return {
        "_signature": tfl.metadata["_signature"],
        "edgekit": {
            "version": __version__,
            "source_sha256": graph.metadata.get("source_sha256"),
            "io_layout": tfl.metadata.get("io_layout", {}),
            "io_layouts": {name: d.layout for name, d in layouts.items() if d.layout},
            "tensor_layouts": final_layouts(tfl),
            "quantization": quant.mode if quant is not None else "float32",
        },
    }


def prune_for_conversion(
    model, config: PruneConfig, input_shapes: dict[str, tuple[int, ...]] | None = None, stem_block: int | None = None
) -> PruningResult:
    """``model`` pruned as ``config`` says: channels first, then weight compression. MACs are
    counted with ``input_shapes`` fixed, and latency is timed as convert will build the model."""
    from edgekit.converters.onnx.frontend import read_model

    pruned = read_model(model).model
    result = PruningResult(model=pruned, config=config)
    if config.channels:
        result = _prune_channels(pruned, config, input_shapes, stem_block)
    if config.weights:
        result = _compress_weights(result, config)
    return result


def _prune_channels(model, config: PruneConfig, input_shapes, stem_block) -> PruningResult:
    import numpy as np

    from edgekit.converters.prune import correct_bias, prune_channels
    from edgekit.converters.prune.budget import cost, prune_by_latency, prune_to_budget
    from edgekit.converters.prune.channels import ROUND_TO

    _fix_input_shapes(model, input_shapes)  # pruning counts MACs, which needs the shapes convert will use
    round_to = ROUND_TO if config.round_to is None else config.round_to
    if config.allocation == "latency":
        pruned, ratios, _ = prune_by_latency(
            model, config.macs, config.criterion, round_to=round_to, convert_options={"stem_block": stem_block}
        )
        ratio = sum(ratios.values()) / len(ratios)
    elif config.macs is not None or config.params is not None:
        what, target = ("macs", config.macs) if config.macs is not None else ("params", config.params)
        pruned, ratio, _ = prune_to_budget(model, target, what, config.criterion, round_to=round_to)
    else:
        ratio = config.ratio
        pruned = prune_channels(model, ratio, config.criterion, round_to=round_to)
    if config.bias_correct:
        samples = config.samples
        samples = next(iter(samples.values())) if isinstance(samples, dict) else samples
        pruned = correct_bias(model, pruned, np.asarray(samples, np.float32))
    return PruningResult(
        model=pruned,
        config=config,
        channel_ratio=round(float(ratio), 4),
        round_to=round_to,
        macs_dense=cost(model, "macs"),
        macs_pruned=cost(pruned, "macs"),
    )


def _fix_input_shapes(model, input_shapes) -> None:
    """Write the input shapes convert will use (the model's, or ``input_shapes``) into ``model``."""
    from edgekit.converters.onnx.frontend import fixed_input_shapes

    fixed = fixed_input_shapes(model, input_shapes)
    for vi in model.graph.input:
        if vi.name in fixed:
            for dim, size in zip(vi.type.tensor_type.shape.dim, fixed[vi.name], strict=True):
                dim.Clear()
                dim.dim_value = int(size)


def _compress_weights(result: PruningResult, config: PruneConfig) -> PruningResult:
    """``result``'s model with magnitude sparsity, then clustering, applied."""
    from edgekit.converters.prune import cluster_weights, magnitude_prune

    model, sparsity_per_layer = result.model, {}
    if config.sparsity is not None:
        model, layers = magnitude_prune(model, config.sparsity)
        sparsity_per_layer = {name: round(v, 4) for name, v in layers.items()}
    if config.clusters is not None:
        model = cluster_weights(model, config.clusters)
    return replace(result, model=model, sparsity_per_layer=sparsity_per_layer)


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
