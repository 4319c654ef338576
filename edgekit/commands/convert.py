"""edgekit convert MODEL.onnx -o OUT.tflite: convert (and optionally verify) a model."""

from __future__ import annotations

import argparse

from edgekit.commands._shapes import SAMPLES, add_input_shape
from edgekit.converters.io_layout import IO_LAYOUTS

QUANTIZE_MODES = ("int8", "int16x8", "dynamic", "fp16")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mse")


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    q = parser.add_argument_group("quantization")
    q.add_argument("--quantize", choices=QUANTIZE_MODES, help="quantize weights/activations (default: float32)")
    q.add_argument("--calibration", metavar="DATA", help="calibration samples: .npy/.npz or a folder of images")
    q.add_argument("--calibration-method", choices=CALIBRATION_METHODS, help="default minmax")
    q.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default: per-channel)")
    q.add_argument("--io-type", choices=("float32", "int8", "uint8"), help="quantized model's I/O (default float32)")
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
    q.add_argument("--max-sqnr-drop", type=float, metavar="DB", help="for --auto-mixed (default 10)")
    q.add_argument(
        "--equalize", action="store_true", help="cross-layer equalization of consecutive convolutions before quantizing"
    )
    q.add_argument(
        "--no-bias-correction",
        action="store_true",
        help="skip the correction of the bias for the weights' rounding error (on by default)",
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
    q.add_argument("--scale", type=float, default=1 / 255, help="image calibration: multiply pixels first")
    pr = parser.add_argument_group("pruning (structured channels, before conversion; see edgekit prune)")
    budget = pr.add_mutually_exclusive_group()
    budget.add_argument("--prune-ratio", type=float, metavar="R", help="remove this share of every group's channels")
    budget.add_argument("--prune-macs", type=float, metavar="F", help="keep this fraction of the MACs")
    pr.add_argument("--prune-criterion", choices=("l1", "l2", "fpgm"), default="l1")
    pr.add_argument(
        "--prune-round-to",
        type=int,
        default=16,  # converters.prune.channels.ROUND_TO
        metavar="N",
        help="keep a multiple of N channels in groups wider than N (default 16, 1: no rounding)",
    )
    pr.add_argument(
        "--prune-allocation",
        choices=("uniform", "latency"),
        default="uniform",
        help="with --prune-macs: one ratio for every group, or more where MACs cost more time (measured here)",
    )
    pr.add_argument(
        "--prune-bias-correct",
        action="store_true",
        help="correct the biases of the layers reading pruned channels on the --calibration data",
    )
    w = parser.add_argument_group("weight compression (smaller packages; after any channel pruning)")
    w.add_argument(
        "--prune-sparsity",
        type=float,
        metavar="S",
        help="zero this share of the Conv/Gemm/MatMul weights, smallest magnitudes over all layers (e.g. 0.8)",
    )
    w.add_argument(
        "--prune-clusters",
        type=int,
        metavar="N",
        help="k-means weight sharing: N values per output channel, on the int8 grid (2-256, e.g. 16)",
    )
    v = parser.add_argument_group("verification")
    v.add_argument("--verify", action="store_true", help="compare the result with onnxruntime afterwards")
    v.add_argument("--data", help="verification inputs: .npy/.npz file or folder of .npy (default: random)")
    v.add_argument("--samples", type=SAMPLES, default=8, help="random verification samples, 1..100000 (default 8)")
    v.add_argument("--report", metavar="FILE.json", help="write conversion, verification and per-layer results")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgekit.converters import convert, verify
    from edgekit.converters.onnx_frontend import parse_input_shapes
    from edgekit.converters.tflite_writer import check_output_path

    # the output is checked before any work: never the input, a folder or a special file
    check_output_path(args.output, args.model, args.calibration, getattr(args, "data", None))
    if args.report:
        check_output_path(args.report, args.model, args.output)
    _refuse_options_that_do_nothing(args)
    io_layout = _io_layout(args)
    shapes = parse_input_shapes(args.input_shape)
    calibration = _calibration(args) if args.calibration else None
    source = unpruned_source = _edited(args)
    _check_weight_compression(args)
    if args.prune_ratio is not None or args.prune_macs is not None:
        source = _prune(args, shapes, calibration)
    elif args.prune_bias_correct or args.prune_allocation != "uniform":
        from edgekit.errors import InputError

        option = "--prune-bias-correct" if args.prune_bias_correct else "--prune-allocation"
        raise InputError(f"{option} goes with --prune-ratio R or --prune-macs F")
    if args.prune_sparsity is not None or args.prune_clusters is not None:
        source = _compress_weights(args, source)
    options = {}
    if args.quantize:
        # no --calibration is fine for QDQ models (their own scales); others get a clear error
        options = dict(
            calibration=calibration,
            method=args.calibration_method or "minmax",
            per_channel=not args.per_tensor,
            io_type=args.io_type or "float32",
            keep_float=args.keep_float,
            bias_correction=not args.no_bias_correction,
        )
    result = convert(
        source,
        args.output,
        input_shapes=shapes,
        io_layout=io_layout,
        quantize=args.quantize,
        target=None if args.target == "cpu" else args.target,
        auto_mixed=(10.0 if args.max_sqnr_drop is None else args.max_sqnr_drop) if args.auto_mixed else None,
        equalize=args.equalize,
        stem_block=args.stem_block,
        **options,
    )
    ops = ", ".join(f"{op} x{n}" for op, n in result.ops.items())
    print(f"wrote {result.path} ({result.size_bytes:,} bytes) in {result.seconds:.2f} s")
    print(f"ops: {ops}")
    print(f"TRANSPOSE ops remaining: {result.transposes}; XNNPACK partitions: {result.partitions}")
    for decision in result.io_layout.values():
        print(decision)
    if args.prune_sparsity is not None or args.prune_clusters is not None:
        from edgekit.converters.prune.report import compressed_sizes

        sizes = compressed_sizes(result.path.read_bytes(), "int8")
        zstd = f"{sizes['int8_zstd']:,}" if sizes["int8_zstd"] >= 0 else "- (no zstandard)"
        print(
            f"compressed: xz {sizes['int8_xz']:,} bytes (as edgekit package stores it), zstd {zstd}, "
            f"gzip {sizes['int8_gzip']:,}"
        )
    if args.quantize in ("int8", "int16x8"):
        _print_io_quantization(result.path)
    if result.edgetpu is not None:
        print(result.edgetpu.summary())
    report = None
    verification_data = args.data
    if args.verify or args.report:
        verification_data, said = _verification_data(args, calibration)
        print(f"verification data: {said}")
        report = verify(source, args.output, data=verification_data, samples=args.samples)
        print(report.table())
        if source is not unpruned_source:
            from dataclasses import asdict

            unpruned = verify(unpruned_source, args.output, data=verification_data, samples=args.samples)
            print(f"against the unpruned {Path(args.model).name}, same inputs (what pruning and conversion cost):")
            print(unpruned.table())
            args._pruning["outputs_vs_unpruned"] = [asdict(o) for o in unpruned.outputs]
    if args.report:
        from dataclasses import asdict

        from edgekit.commands._report import per_layer, write_report

        layers = per_layer(source, args.output, verification_data)
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
                "quantization": args.quantize or "float32",
                "pruning": getattr(args, "_pruning", None),
                "outputs": [asdict(o) for o in report.outputs],
                "layers": [asdict(layer) for layer in layers.layers],
            },
        )
        print(f"wrote {args.report}")
    return 0


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
            )
            if value
        ]
        if given:
            raise InputError(f"{given[0]} goes with --quantize (int8 or int16x8); without it the model stays float")
    if args.max_sqnr_drop is not None and not args.auto_mixed:
        raise InputError("--max-sqnr-drop goes with --auto-mixed")


def _edited(args: argparse.Namespace):
    """The source model, with --input-value inputs folded to constants and cut at --outputs."""
    if not args.outputs and not args.input_value:
        return args.model
    if getattr(args, "_edited_model", None) is None:
        from edgekit.converters.onnx_frontend import edit_model, read_model
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
        args._edited_model = edit_model(read_model(args.model).model, args.outputs, values)
    return args._edited_model


def _prune(args: argparse.Namespace, shapes, calibration):
    """The source model pruned as the --prune-* options ask (an onnx.ModelProto)."""
    import numpy as np

    from edgekit.converters.onnx_frontend import fixed_input_shapes, read_model
    from edgekit.converters.prune import correct_bias, prune_channels
    from edgekit.converters.prune.budget import cost, prune_to_budget
    from edgekit.errors import InputError

    if args.prune_ratio is not None and not 0 < args.prune_ratio < 1:
        raise InputError(f"--prune-ratio {args.prune_ratio:g} must lie strictly between 0 and 1, e.g. 0.5")
    if args.prune_macs is not None and not 0 < args.prune_macs < 1:
        raise InputError(f"--prune-macs {args.prune_macs:g} must lie strictly between 0 and 1, e.g. 0.5")
    if args.prune_bias_correct and calibration is None:
        raise InputError("--prune-bias-correct needs --calibration DATA (the samples it measures the layers on)")
    model = read_model(_edited(args)).model
    fixed = fixed_input_shapes(model, shapes)
    for vi in model.graph.input:  # pruning counts MACs, which needs the shapes convert will use
        if vi.name in fixed:
            dims = vi.type.tensor_type.shape.dim
            for dim, size in zip(dims, fixed[vi.name], strict=True):
                dim.Clear()
                dim.dim_value = int(size)
    dense_macs = cost(model, "macs")
    if args.prune_allocation == "latency" and args.prune_macs is None:
        raise InputError("--prune-allocation latency goes with --prune-macs F")
    if args.prune_allocation == "latency":
        from edgekit.converters.prune.budget import prune_by_latency

        pruned, ratios, _ = prune_by_latency(
            model,
            args.prune_macs,
            args.prune_criterion,
            round_to=args.prune_round_to,
            convert_options={"stem_block": args.stem_block},
        )
        ratio = sum(ratios.values()) / len(ratios)
    elif args.prune_macs is not None:
        pruned, ratio, _ = prune_to_budget(
            model, args.prune_macs, "macs", args.prune_criterion, round_to=args.prune_round_to
        )
    else:
        ratio = args.prune_ratio
        pruned = prune_channels(model, ratio, args.prune_criterion, round_to=args.prune_round_to)
    if args.prune_bias_correct:
        samples = calibration
        if isinstance(samples, dict):
            if len(samples) != 1:
                raise InputError("--prune-bias-correct needs calibration data for a single input")
            samples = next(iter(samples.values()))
        pruned = correct_bias(model, pruned, np.asarray(samples, np.float32))
    macs = cost(pruned, "macs")
    args._pruning = {
        "ratio": round(float(ratio), 4),
        "criterion": args.prune_criterion,
        "round_to": args.prune_round_to,
        "allocation": args.prune_allocation,
        "bias_correct": bool(args.prune_bias_correct),
        "macs_dense": dense_macs,
        "macs_pruned": macs,
    }
    mean = " on average" if args.prune_allocation == "latency" else ""
    print(
        f"pruned {ratio:.1%} of the channels{mean} ({args.prune_criterion}"
        f"{', bias-corrected' if args.prune_bias_correct else ''}): MACs {dense_macs:,} -> {macs:,} "
        f"({macs / dense_macs:.1%})"
    )
    return pruned


def _check_weight_compression(args: argparse.Namespace) -> None:
    """Refuse --prune-sparsity / --prune-clusters values before any work is done."""
    from edgekit.errors import InputError

    if args.prune_sparsity is not None and not 0 < args.prune_sparsity < 1:
        raise InputError(f"--prune-sparsity {args.prune_sparsity:g} must lie strictly between 0 and 1, e.g. 0.8")
    if args.prune_clusters is not None and not 2 <= args.prune_clusters <= 256:
        raise InputError(f"--prune-clusters {args.prune_clusters} must be between 2 and 256, e.g. 16")
    if args.prune_clusters is not None and args.equalize:
        raise InputError(
            "--equalize rescales the weights per input channel and would undo --prune-clusters; drop one of them"
        )


def _compress_weights(args: argparse.Namespace, source):
    """``source`` (a path or an onnx.ModelProto) with magnitude sparsity, then clustering, applied."""
    from edgekit.converters.onnx_frontend import read_model
    from edgekit.converters.prune import cluster_weights, magnitude_prune

    model = read_model(source).model
    pruning = getattr(args, "_pruning", None) or {}
    if args.prune_sparsity is not None:
        model, layers = magnitude_prune(model, args.prune_sparsity)
        pruning["sparsity"] = args.prune_sparsity
        pruning["sparsity_per_layer"] = {name: round(v, 4) for name, v in layers.items()}
        print(f"zeroed {args.prune_sparsity:.0%} of the weights (smallest magnitudes over {len(layers)} layers)")
    if args.prune_clusters is not None:
        model = cluster_weights(model, args.prune_clusters)
        pruning["clusters"] = args.prune_clusters
        print(f"shared {args.prune_clusters} weight values per output channel (k-means, on the int8 grid)")
    args._pruning = pruning
    return model


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
    return None, f"{args.samples} random N(0,1) inputs (pass --data, or --calibration, for real ones)"


def _calibration(args: argparse.Namespace):
    from pathlib import Path

    from edgekit.converters.calibration_data import load_calibration

    return load_calibration(Path(args.calibration), resize=args.resize, mean=args.mean, std=args.std, scale=args.scale)


def _print_io_quantization(path) -> None:
    """The scales and zero points a device needs to feed and read the model (also stored in it)."""
    from edgekit.converters.verification import TFLiteRunner

    runner = TFLiteRunner(path.read_bytes())
    for kind, details in (("input", runner.input_details), ("output", runner.output_details)):
        for name, d in details.items():
            scale, zero_point = d["quantization"]
            io = f"scale {scale:.6g}, zero point {zero_point}" if scale else "float (quantized inside the model)"
            print(f"{kind} {name}: {d['dtype'].__name__} {[int(v) for v in d['shape']]}, {io}")
