"""edgekit convert MODEL.onnx -o OUT.tflite: convert (and optionally verify) a model.

The command parses its flags into the library's configs (QuantConfig, PruneConfig), calls
``convert`` and prints; the library's errors name its parameters, which PARAMETER_FLAGS maps
to this command's flags."""

from __future__ import annotations

import argparse

from edgekit.commands._report import op_counts
from edgekit.commands._shapes import SAMPLES, add_input_shape, share
from edgekit.converters.config import (
    CALIBRATION_METHODS,
    IO_TYPES,
    PRUNE_ALLOCATIONS,
    QUANTIZE_MODES,
    WEIGHT_ROUNDINGS,
)
from edgekit.converters.io_layout import IO_LAYOUTS

AUTO_MIXED_DB = 10.0  # --max-sqnr-drop's default

# library parameter -> the flag that sets it, so the library's errors name this command's flags
PARAMETER_FLAGS = {
    "mode": "--quantize",
    "calibration": "--calibration",
    "method": "--calibration-method",
    "per_channel": "--per-tensor",
    "io_type": "--io-type",
    "keep_float": "--keep-float",
    "bias_correction": "--no-bias-correction",
    "auto_mixed": "--auto-mixed",
    "accuracy_budget": "--accuracy-budget",
    "max_changed": "--accuracy-budget",
    "validation": "--validation-data",
    "decision": "--decision",
    "decision_outputs": "--decision-output",
    "max_weight_values": "--max-weight-values",
    "smooth_activations": "--smooth-activations",
    "float_where_faster": "--float-where-faster",
    "weight_rounding": "--weight-rounding",
    "target": "--target",
    "equalize": "--equalize",
    "stem_block": "--stem-block",
    "io_layout": "--io-layout",
    "input_values": "--input-value",
    "input_shapes": "--input-shape",
    "outputs": "--outputs",
    "ratio": "--prune-ratio",
    "macs": "--prune-macs",
    "criterion": "--prune-criterion",
    "round_to": "--prune-round-to",
    "allocation": "--prune-allocation",
    "bias_correct": "--prune-bias-correct",
    "samples": "--calibration",
    "sparsity": "--prune-sparsity",
    "clusters": "--prune-clusters",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_options(parser)
    _add_quantization(parser.add_argument_group("quantization"))
    _add_pruning(parser.add_argument_group("pruning (structured channels, before conversion; see edgekit prune)"))
    _add_weight_compression(
        parser.add_argument_group("weight compression (smaller packages; after any channel pruning)")
    )
    _add_verification(parser.add_argument_group("verification"))


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the source .onnx model")
    parser.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    add_input_shape(parser)
    parser.add_argument(
        "--io-layout",
        choices=IO_LAYOUTS,
        help="4-D float inputs/outputs: auto (default) makes NHWC those that are NCHW in the ONNX model and keeps "
        "those it already has NHWC (tf2onnx, Keras); nhwc makes every one NHWC; keep leaves every one as in ONNX",
    )
    parser.add_argument("--nchw-io", action="store_true", help=argparse.SUPPRESS)  # the old name of --io-layout keep
    parser.add_argument(
        "--outputs",
        nargs="+",
        metavar="TENSOR",
        help="cut the graph: these tensors become the outputs (e.g. a detector's head before its NMS)",
    )
    parser.add_argument(
        "--input-value",
        action="append",
        metavar="NAME=VALUE",
        help="fix an input to a constant, which then folds (e.g. an audio model's sample rate: sr=16000)",
    )
    parser.add_argument(
        "--stem-block",
        type=int,
        choices=(2, 4, 8),
        metavar="B",
        help="rewrite a strided conv on <= 4 channels (the stem) as SpaceToDepth(B) + conv + DepthToSpace: "
        "faster on x86 CPUs with AMX, not on Arm (2, 4 or 8)",
    )


def _add_quantization(q: argparse._ArgumentGroup) -> None:
    q.add_argument("--quantize", choices=QUANTIZE_MODES, help="quantize weights/activations (default: float32)")
    q.add_argument("--calibration", metavar="DATA", help="calibration samples: .npy/.npz or a folder of images")
    q.add_argument(
        "--calibration-method",
        choices=CALIBRATION_METHODS,
        help="default minmax; with --accuracy-budget, minmax, percentile and mse (and each with "
        "--smooth-activations where the model has HardSwish chains), keeping the one whose all-int8 model "
        "changes the fewest decisions",
    )
    q.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default: per-channel)")
    q.add_argument("--io-type", choices=IO_TYPES, help="quantized model's I/O (default float32)")
    q.add_argument(
        "--keep-float",
        nargs="+",
        metavar="NODE",
        default=[],
        help="ONNX node names to leave in float (see the per-layer table of --report)",
    )
    q.add_argument(
        "--auto-mixed",
        action="store_true",
        help="keep in float the layers whose int8 output loses more than --max-sqnr-drop dB",
    )
    q.add_argument("--max-sqnr-drop", type=float, metavar="DB", help=f"for --auto-mixed (default {AUTO_MIXED_DB:g})")
    q.add_argument(
        "--float-where-faster",
        action="store_true",
        help="int8: time every convolution in int8 and in float on this machine and keep in float those "
        "slower in int8 (x86: depthwise, few-channel stems), if the whole model is then faster; "
        "convert on the target's CPU",
    )
    _add_accuracy_budget(q)
    _add_rewrites(q)
    q.add_argument(
        "--max-weight-values",
        type=int,
        metavar="N",
        help="int8: refuse to write the model if an output channel's weights hold more than N distinct values "
        "(2 for binary weights, 3 for ternary)",
    )
    q.add_argument(
        "--no-speed-check",
        action="store_true",
        help="skip timing the quantized model against a float32 conversion on this machine (on by default)",
    )
    q.add_argument(
        "--target",
        choices=("cpu", "edgetpu"),
        default="cpu",
        help="edgetpu: enforce the Edge TPU compiler's rules and report ops left to the CPU",
    )
    q.add_argument("--resize", metavar="H,W", help="image calibration: resize to H,W")
    q.add_argument("--mean", metavar="M[,M,M]", help="image calibration: subtract per-channel mean")
    q.add_argument("--std", metavar="S[,S,S]", help="image calibration: divide by per-channel std")
    q.add_argument("--scale", type=float, help="image calibration: multiply pixels first (default 1/255)")


def _add_rewrites(q: argparse._ArgumentGroup) -> None:
    """The rewrites before and during quantization that change numbers, not the model's function."""
    q.add_argument(
        "--equalize", action="store_true", help="cross-layer equalization of consecutive convolutions before quantizing"
    )
    q.add_argument(
        "--smooth-activations",
        action="store_true",
        help="int8 with --calibration: equalize the channels between a convolution and the depthwise "
        "convolution after its HardSwish (MobileNetV3, PP-LCNet backbones): more accurate, but its "
        "per-channel ops can make int8 slower; compare both",
    )
    q.add_argument(
        "--weight-rounding",
        choices=WEIGHT_ROUNDINGS,
        help="int8 with --calibration: reconstruct rounds each weight so that each layer's output on the "
        "calibration samples stays closest to float (GPTQ-style, layer by layer) instead of to nearest "
        "(the default)",
    )
    q.add_argument(
        "--no-bias-correction",
        action="store_true",
        help="skip the correction of the bias for the weights' rounding error (on by default)",
    )


def _add_accuracy_budget(q: argparse._ArgumentGroup) -> None:
    q.add_argument(
        "--accuracy-budget",
        type=share,
        metavar="SHARE",
        help="int8: keep in float the fewest layers for which at most this share of the decisions on "
        "--validation-data differ from float32 on onnxruntime (1%% or 0.01)",
    )
    q.add_argument(
        "--validation-data",
        metavar="DATA",
        help="for --accuracy-budget: held-out samples, .npy/.npz (arrays named after the inputs) or images",
    )
    q.add_argument(
        "--decision",
        metavar="RULE",
        help="for --accuracy-budget: how outputs become decisions: argmax (last axis: classes, CTC steps; "
        "argmax:AXIS), threshold:T (masks, scores), detections[:CONF] (a YOLOv8/YOLO11 head "
        "[1, 4+classes, anchors]: detections lost or added; confidence 0.25), ctc[:BLANK] (a CTC "
        "recogniser [1, time, classes]: lines read differently; blank 0); default argmax",
    )
    q.add_argument(
        "--decision-output",
        nargs="+",
        metavar="NAME",
        help="for --accuracy-budget: the outputs whose decisions count (default every output; leave out "
        "a recurrent model's state outputs)",
    )


def _add_pruning(pr: argparse._ArgumentGroup) -> None:
    budget = pr.add_mutually_exclusive_group()
    budget.add_argument("--prune-ratio", type=share, metavar="R", help="remove this share of every group's channels")
    budget.add_argument("--prune-macs", type=share, metavar="F", help="keep this fraction of the MACs")
    pr.add_argument("--prune-criterion", choices=("l1", "l2", "fpgm"), help="channel ranking (default l1)")
    pr.add_argument(
        "--prune-round-to",
        type=int,
        metavar="N",
        help="keep a multiple of N channels in groups wider than N (default 16, 1: no rounding)",
    )
    pr.add_argument(
        "--prune-allocation",
        choices=PRUNE_ALLOCATIONS,
        help="with --prune-macs: one ratio for every group, or more where MACs cost more time (measured here)",
    )
    pr.add_argument(
        "--prune-bias-correct",
        action="store_true",
        help="correct the biases of the layers reading pruned channels on the --calibration data",
    )


def _add_weight_compression(w: argparse._ArgumentGroup) -> None:
    w.add_argument(
        "--prune-sparsity",
        type=share,
        metavar="S",
        help="zero this share of the Conv/Gemm/MatMul weights, smallest magnitudes over all layers (e.g. 0.8)",
    )
    w.add_argument(
        "--prune-clusters",
        type=int,
        metavar="N",
        help="k-means weight sharing: N values per output channel, on the int8 grid (2-256, e.g. 16)",
    )


def _add_verification(v: argparse._ArgumentGroup) -> None:
    v.add_argument("--verify", action="store_true", help="compare the result with onnxruntime afterwards")
    v.add_argument("--data", help="verification inputs: .npy/.npz file or folder of .npy (default: random)")
    v.add_argument("--samples", type=SAMPLES, help="random verification samples, 1..100000 (default 8)")
    v.add_argument("--report", metavar="FILE.json", help="write conversion, verification and per-layer results")


def run(args: argparse.Namespace) -> int:
    from edgekit.converters import convert
    from edgekit.converters.onnx.frontend import parse_input_shapes

    _check_outputs(args)
    _refuse_options_that_do_nothing(args)
    io_layout = _io_layout(args)
    calibration = _calibration(args) if args.calibration else None
    quant, prune = _quant_config(args, calibration), _prune_config(args, calibration)
    source, shapes = _edited(args, parse_input_shapes(args.input_shape))
    if args.data and (args.verify or args.report):
        _check_verification_data(args, source, shapes)
    result = convert(
        source,
        args.output,
        input_shapes=shapes,
        io_layout=io_layout,
        quant=quant,
        prune=prune,
        target=None if args.target == "cpu" else args.target,
        equalize=args.equalize,
        stem_block=args.stem_block,
    )
    _print_result(args, result)
    speed = _speed_check(args, source, result, shapes)
    if args.verify or args.report:
        _verify_and_report(args, source, result, calibration, speed)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """-o and --report, before any work: neither is an input nor a folder or special file, they
    differ, and -o does not name an ONNX model (a TFLite flatbuffer would replace it)."""
    from edgekit.files import check_output_path

    inputs = {
        "MODEL": args.model,
        "--calibration": args.calibration,
        "--data": args.data,
        "--validation-data": args.validation_data,
    }
    check_output_path(args.output, named=inputs, model_format="tflite")
    if args.report:
        check_output_path(args.report, option="--report", named=inputs, outputs={"-o": args.output})


def _check_verification_data(args: argparse.Namespace, source, input_shapes) -> None:
    """--data read and its samples' shapes checked before converting, as verification will read
    them, so a mistake there leaves no converted model behind."""
    from edgekit.converters.onnx.frontend import fixed_input_shapes, graph_inputs, read_model
    from edgekit.converters.verification import check_sample_shapes, load_samples

    model = read_model(source).model
    shapes = fixed_input_shapes(model, input_shapes)
    samples = load_samples(args.data, [i.name for i in graph_inputs(model)], what="--data")
    check_sample_shapes(samples, shapes, f"--data {args.data}")


def _speed_check(args: argparse.Namespace, source, result, input_shapes):
    """The quantized model timed against a float32 conversion of the same model on this machine;
    None when not asked for (no --quantize, --no-speed-check, or an Edge TPU target)."""
    if not args.quantize or args.no_speed_check or args.target != "cpu":
        return None
    from edgekit.converters.speed import SpeedComparison, compare_with_float

    if result.accuracy is not None and result.accuracy.latency is not None:  # measured already, in one run
        timed = result.accuracy.latency
        speed = SpeedComparison(args.quantize, timed.mixed_ms, timed.float_ms, timed.threads)
        print(speed.summary())
        return speed

    converted = result.pruning.model if result.pruning is not None else source
    speed = compare_with_float(
        converted, result.path, args.quantize, input_shapes=input_shapes,
        io_layout=_io_layout(args), stem_block=args.stem_block,
    )  # fmt: skip
    print(speed.summary())
    return speed


def _quant_config(args: argparse.Namespace, calibration):
    """The QuantConfig the quantization flags describe (None: no --quantize, the model stays float).
    Without --calibration a QDQ model uses its own scales; others get a clear error."""
    from edgekit.converters.config import QuantConfig

    if not args.quantize:
        return None
    given = {
        "method": args.calibration_method,
        "io_type": args.io_type,
        "auto_mixed": (AUTO_MIXED_DB if args.max_sqnr_drop is None else args.max_sqnr_drop)
        if args.auto_mixed
        else None,
        "max_weight_values": args.max_weight_values,
        "accuracy_budget": _accuracy_budget(args),
        "weight_rounding": args.weight_rounding,
    }
    return QuantConfig(
        mode=args.quantize,
        calibration=calibration,
        per_channel=not args.per_tensor,
        keep_float=args.keep_float,
        bias_correction=not args.no_bias_correction,
        smooth_activations=args.smooth_activations,
        float_where_faster=args.float_where_faster,
        **{name: value for name, value in given.items() if value is not None},
    )


def _accuracy_budget(args: argparse.Namespace):
    """The AccuracyBudget --accuracy-budget asks for (None without it)."""
    from pathlib import Path

    from edgekit.converters.config import AccuracyBudget
    from edgekit.converters.quant.accuracy import load_validation

    if args.accuracy_budget is None:
        return None
    validation = None
    if args.validation_data:
        options = {"resize": args.resize, "mean": args.mean, "std": args.std, "scale": args.scale}
        validation = load_validation(Path(args.validation_data), **options)
    return AccuracyBudget(
        validation=validation,
        max_changed=args.accuracy_budget,
        decision=args.decision or "argmax",
        decision_outputs=tuple(args.decision_output or ()),
        measure_latency=not args.no_speed_check,
    )


def _prune_config(args: argparse.Namespace, calibration):
    """The PruneConfig the --prune-* flags describe (None when none is given)."""
    from edgekit.converters.config import PruneConfig

    given = {"criterion": args.prune_criterion, "allocation": args.prune_allocation}  # else PruneConfig's defaults
    config = PruneConfig(
        ratio=args.prune_ratio,
        macs=args.prune_macs,
        round_to=args.prune_round_to,
        bias_correct=args.prune_bias_correct,
        samples=calibration if args.prune_bias_correct else None,
        sparsity=args.prune_sparsity,
        clusters=args.prune_clusters,
        **{name: value for name, value in given.items() if value is not None},
    )
    return config if config.channels or config.weights else None


def _print_result(args: argparse.Namespace, result) -> None:
    if result.pruning is not None:
        _print_pruning(result.pruning)
    print(f"wrote {result.path} ({result.size_bytes:,} bytes) in {result.seconds:.2f} s")
    print(f"ops: {op_counts(result.ops)}")
    print(f"TRANSPOSE ops remaining: {result.transposes}; XNNPACK partitions: {result.partitions}")
    if result.cpu_ops:
        print(f"left to TFLite's own kernels, between or after XNNPACK's partitions: {op_counts(result.cpu_ops)}")
    for decision in result.io_layout.values():
        print(decision)
    if result.pruning is not None and result.pruning.config.weights:
        from edgekit.converters.prune.report import compressed_sizes
        from edgekit.package import XZ_PRESET

        sizes = compressed_sizes(result.path.read_bytes(), "int8", XZ_PRESET)
        zstd = f"{sizes['int8_zstd']:,}" if sizes["int8_zstd"] >= 0 else "- (no zstandard)"
        print(
            f"compressed: xz {sizes['int8_xz']:,} bytes (as edgekit package stores it), zstd {zstd}, "
            f"gzip {sizes['int8_gzip']:,}"
        )
    if args.quantize in ("int8", "int16x8"):
        _print_io_quantization(result.path)
    if result.accuracy is not None:
        print(result.accuracy.summary())
    if result.edgetpu is not None:
        print(result.edgetpu.summary())


def _print_pruning(pruning) -> None:
    config = pruning.config
    if config.channels:
        mean = " on average" if config.allocation == "latency" else ""
        dense, macs = pruning.macs_dense, pruning.macs_pruned
        print(
            f"pruned {pruning.channel_ratio:.1%} of the channels{mean} ({config.criterion}"
            f"{', bias-corrected' if config.bias_correct else ''}): MACs {dense:,} -> {macs:,} ({macs / dense:.1%})"
        )
    if config.sparsity is not None:
        layers = len(pruning.sparsity_per_layer)
        print(f"zeroed {config.sparsity:.0%} of the weights (smallest magnitudes over {layers} layers)")
    if config.clusters is not None:
        print(f"shared {config.clusters} weight values per output channel (k-means, on the int8 grid)")


def _verify_and_report(args: argparse.Namespace, source, result, calibration, speed) -> None:
    """--verify / --report: the converted model against the ONNX model it came from (the pruned
    one when pruned, then also against the unpruned one: what pruning and conversion cost)."""
    from dataclasses import asdict
    from pathlib import Path

    from edgekit.converters import verify
    from edgekit.converters.verification import RANDOM_SAMPLES

    data, said = _verification_data(args, calibration)
    print(f"verification data: {said}")
    converted_from = source if result.pruning is None else result.pruning.model
    report = verify(converted_from, args.output, data=data, samples=args.samples or RANDOM_SAMPLES)
    print(report.table())
    for poor in report.poor_outputs():
        print(_poor_output_warning(poor, args.quantize))
    pruning = None
    if result.pruning is not None:
        unpruned = verify(source, args.output, data=data, samples=args.samples or RANDOM_SAMPLES)
        print(f"against the unpruned {Path(args.model).name}, same inputs (what pruning and conversion cost):")
        print(unpruned.table())
        pruning = result.pruning.as_dict() | {"outputs_vs_unpruned": [asdict(o) for o in unpruned.outputs]}
    if args.report:
        _write_report(args, converted_from, result, report, pruning, data, speed)


def _poor_output_warning(poor, quantize: str | None) -> str:
    """One line on an output verification found far from the ONNX model's, and what to do."""
    figures = f"SQNR {poor.sqnr_db:.1f} dB, cosine {poor.cosine:.2f}"
    said = f"warning: output {poor.name} is far from the ONNX model's ({figures})"
    if quantize:
        return (
            f"{said}: --quantize {quantize} loses it; keep its lossy layers in float (--accuracy-budget, "
            "--auto-mixed or --keep-float with the names --report gives) or ship float32"
        )
    return f"{said}: a float conversion should match it; please report the model"


def _write_report(args: argparse.Namespace, converted_from, result, report, pruning, data, speed) -> None:
    from dataclasses import asdict

    from edgekit.commands._report import per_layer, write_report

    layers = per_layer(converted_from, args.output, data)
    worst = ", ".join(f"{w.tensor} ({w.sqnr_db:.1f} dB)" for w in layers.worst(3))
    print(f"worst layers: {worst}")
    write_report(
        args.report,
        {
            "model": args.model,
            "output": str(result.path),
            "size_bytes": result.size_bytes,
            "seconds": result.seconds,
            "ops": result.ops,
            "transposes": result.transposes,
            "xnnpack_partitions": result.partitions,
            "cpu_ops": result.cpu_ops,
            "quantization": args.quantize or "float32",
            "pruning": pruning,
            "speed": speed.as_dict() if speed is not None else None,
            "accuracy": result.accuracy.as_dict() if result.accuracy is not None else None,
            "outputs": [asdict(o) for o in report.outputs],
            "layers": [asdict(layer) for layer in layers.layers],
        },
    )
    print(f"wrote {args.report}")


def _io_layout(args: argparse.Namespace) -> str:
    """--io-layout, or "keep" for its old spelling --nchw-io; both at once is refused."""
    from edgekit.errors import InputError

    if args.nchw_io and args.io_layout is not None:
        raise InputError(f"--nchw-io is the old name of --io-layout keep; give only --io-layout {args.io_layout}")
    return "keep" if args.nchw_io else args.io_layout or "auto"


def _refuse_options_that_do_nothing(args: argparse.Namespace) -> None:
    """An option the run would ignore is a mistake the user should hear about, not a silent no-op."""
    from edgekit.errors import InputError

    if not args.quantize:
        given = [
            flag
            for flag, value in (
                ("--calibration", args.calibration and not args.prune_bias_correct),
                ("--calibration-method", args.calibration_method),
                ("--per-tensor", args.per_tensor),
                ("--io-type", args.io_type),
                ("--keep-float", args.keep_float),
                ("--auto-mixed", args.auto_mixed),
                ("--no-bias-correction", args.no_bias_correction),
                ("--smooth-activations", args.smooth_activations),
                ("--float-where-faster", args.float_where_faster),
                ("--weight-rounding", args.weight_rounding),
                ("--max-weight-values", args.max_weight_values is not None),
                ("--no-speed-check", args.no_speed_check),
                ("--accuracy-budget", args.accuracy_budget is not None),
            )
            if value
        ]
        if given:
            raise InputError(f"{given[0]} goes with --quantize (int8 or int16x8); without it the model stays float")
    _refuse_uncalibrated(args)
    _refuse_without_their_step(args)
    if args.max_sqnr_drop is not None and not args.auto_mixed:
        raise InputError("--max-sqnr-drop goes with --auto-mixed")
    for flag, value in (
        ("--validation-data", args.validation_data),
        ("--decision", args.decision),
        ("--decision-output", args.decision_output),
    ):
        if value is not None and args.accuracy_budget is None:
            raise InputError(f"{flag} goes with --accuracy-budget SHARE (e.g. 1%)")


def _refuse_uncalibrated(args: argparse.Namespace) -> None:
    """--quantize dynamic and fp16 measure no activation: what only calibrated int8 and int16x8
    use would be ignored (--io-type int8 left a dynamic model's input float32, silently)."""
    from edgekit.errors import InputError

    if args.quantize in (None, "int8", "int16x8"):
        return
    for flag, value in (
        ("--calibration", args.calibration and not args.prune_bias_correct),
        ("--calibration-method", args.calibration_method),
        ("--io-type", args.io_type),
        ("--keep-float", args.keep_float),
        ("--auto-mixed", args.auto_mixed),
        ("--no-bias-correction", args.no_bias_correction),
        ("--smooth-activations", args.smooth_activations),
        ("--weight-rounding", args.weight_rounding),
        ("--accuracy-budget", args.accuracy_budget is not None),
        ("--per-tensor", args.per_tensor and args.quantize == "fp16"),
    ):
        if value:
            raise InputError(f"{flag} goes with --quantize int8 or int16x8; --quantize {args.quantize} does not use it")


def _refuse_without_their_step(args: argparse.Namespace) -> None:
    """Options of a step the run does not take: pruning without a budget, verification without
    --verify or --report, image preprocessing without images, equalization of a float model."""
    from pathlib import Path

    from edgekit.errors import InputError

    budget = "--prune-ratio or --prune-macs"
    pruning = args.prune_ratio is not None or args.prune_macs is not None
    checked = "--verify or --report"
    images = "images: a folder as --calibration or --validation-data"
    weights_pruned = args.prune_sparsity is not None or args.prune_clusters is not None
    random_inputs = (args.verify or args.report) and not args.data and not args.calibration
    has_images = any(p is not None and Path(p).is_dir() for p in (args.calibration, args.validation_data))
    for flag, given, taken, goes_with in (
        ("--prune-criterion", args.prune_criterion, pruning, budget),
        ("--prune-round-to", args.prune_round_to is not None, pruning, budget),
        ("--data", args.data, args.verify or args.report, checked),
        ("--samples", args.samples is not None, random_inputs, "random inputs: --verify without --data, --calibration"),
        ("--resize", args.resize, has_images, images),
        ("--mean", args.mean, has_images, images),
        ("--std", args.std, has_images, images),
        ("--scale", args.scale is not None, has_images, images),
        ("--equalize", args.equalize, args.quantize or weights_pruned, "--quantize or --prune-sparsity/clusters"),
    ):
        if given and not taken:
            raise InputError(f"{flag} goes with {goes_with}; without it, it would change nothing")


def _edited(args: argparse.Namespace, input_shapes: dict) -> tuple[object, dict]:
    """The source model, with --input-value inputs folded to constants (at their --input-shape,
    if given) and cut at --outputs; and the --input-shape of the inputs left."""
    if not args.outputs and not args.input_value:
        return args.model, input_shapes
    from edgekit.converters.onnx.frontend import edit_model, read_model
    from edgekit.errors import InputError

    values = {}
    for item in args.input_value or []:
        name, sep, text = item.partition("=")
        try:
            numbers = [float(v) for v in text.split(",")] if sep and text else None
        except ValueError:
            numbers = None
        if not name or numbers is None:
            raise InputError(f"--input-value {item!r}: write NAME=VALUE or NAME=V1,V2,... (numbers)")
        values[name] = numbers[0] if len(numbers) == 1 else numbers
    edited = edit_model(read_model(args.model).model, args.outputs, values, input_shapes)
    return edited, {name: shape for name, shape in input_shapes.items() if name not in values}


VERIFY_CALIBRATION_SAMPLES = 256  # enough for SQNR and top-1 to settle; calibration sets can be larger


def _verification_data(args: argparse.Namespace, calibration):
    """What verification feeds both models, and how to say it: --data, else the calibration
    samples (real data, though in-sample), else random N(0,1) inputs (on a model calibrated on
    real data, noise makes int8 look far worse than it is)."""
    if args.data:
        return args.data, f"{args.data}"
    if calibration is not None:

        def head(values):
            return values[:VERIFY_CALIBRATION_SAMPLES]

        data = {k: head(v) for k, v in calibration.items()} if isinstance(calibration, dict) else head(calibration)
        count = len(next(iter(data.values())) if isinstance(data, dict) else data)
        return data, f"{count} of the calibration samples (in-sample: pass --data for held-out data)"
    from edgekit.converters.verification import RANDOM_SAMPLES

    return (
        None,
        f"{args.samples or RANDOM_SAMPLES} random N(0,1) inputs (pass --data, or --calibration, for real ones)",
    )


def _calibration(args: argparse.Namespace):
    from pathlib import Path

    from edgekit.converters.quant.calibration_data import load_calibration

    scale = {"scale": args.scale} if args.scale is not None else {}
    return load_calibration(Path(args.calibration), resize=args.resize, mean=args.mean, std=args.std, **scale)


def _print_io_quantization(path) -> None:
    """The scales and zero points a device needs to feed and read the model (also stored in it)."""
    from edgekit.runtime.signature import Signature

    signature = Signature.from_model(path.name, path.read_bytes())
    for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        for t in tensors:
            if t.quant:
                io = f", scale {t.quant[0]:.6g}, zero point {t.quant[1]}"
            else:  # an integer input (token ids, bytes) is read as it is
                io = ", float (quantized inside the model)" if "float" in str(t.dtype) else ""
            print(f"{kind} {t.name}: {t.dtype} {list(t.shape)}{io}")
