"""edgekit bench MODEL: benchmark a model the way LiteRT's benchmark_model does."""

from __future__ import annotations

import argparse

# library parameter -> the flag that sets it, so the library's errors name this command's flags
PARAMETER_FLAGS = {"threads": "--threads"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .tflite or .onnx model")
    parser.add_argument("--runs", type=int, default=50, help="minimum timed runs (default 50)")
    parser.add_argument("--warmup", type=int, default=1, help="minimum warm-up runs (default 1)")
    parser.add_argument("--min-secs", type=float, default=1.0, help="minimum timed seconds (default 1)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: the board's recommendation)")
    parser.add_argument("--backend", default="auto", help="auto, litert, tflite-runtime or onnxruntime")
    parser.add_argument("--delegate", help="edgetpu, edgetpu:usb, edgetpu:pci, edgetpu:usb:0 ...")
    parser.add_argument("--no-xnnpack", action="store_true", help="TFLite's built-in kernels only")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument(
        "--op-profile",
        action="store_true",
        help="also time every op alone (run order, top ops, summary by type, delegate coverage)",
    )


def run(args: argparse.Namespace) -> int:
    import json

    from edgekit.errors import InputError
    from edgekit.progress import progress
    from edgekit.runtime.benchmark import DEFAULT_MAX_SECS, BenchmarkSettingError, benchmark, check_settings

    if args.no_xnnpack and str(args.model).lower().endswith(".onnx"):
        raise InputError("--no-xnnpack is for .tflite models; onnxruntime runs its own kernels")
    try:  # before the model loads (--threads is the session's to check)
        check_settings(args.runs, args.warmup, args.min_secs, max_secs=DEFAULT_MAX_SECS)
    except BenchmarkSettingError as exc:
        flag = "--" + exc.parameter.replace("_", "-")
        raise InputError(f"{flag} {exc.rule}, not {exc.value}") from None
    with progress("bench", total=args.runs, unit="runs") as timed_runs:
        result = benchmark(
            args.model,
            backend=args.backend,
            threads=args.threads,
            xnnpack=not args.no_xnnpack,
            delegate=args.delegate,
            runs=args.runs,
            warmup=args.warmup,
            min_secs=args.min_secs,
            progress=timed_runs,
        )
    report = result.as_dict()
    if args.op_profile:
        from edgekit.runtime.opprofile import profile

        ops = profile(args.model, backend=args.backend, threads=result.threads, xnnpack=not args.no_xnnpack)
        report["op_profile"] = [vars(o) for o in ops.ops]
        report["op_profile_total_ms"] = ops.total_ms
    print(json.dumps(report, indent=1) if args.json else result.report())
    if args.op_profile and not args.json:
        print()
        print(ops.tables())
        print(
            f"whole model (measured): {result.mean_ms:.4f} ms; per-op total / measured = "
            f"{ops.total_ms / result.mean_ms:.3f}"
        )
    return 0
