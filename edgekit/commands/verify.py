"""edgekit verify MODEL.onnx MODEL.tflite: compare a conversion with onnxruntime."""

from __future__ import annotations

import argparse
import math

from edgekit.commands._shapes import SAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx_model", help="the source .onnx model")
    parser.add_argument("tflite_model", help="the converted .tflite model")
    parser.add_argument("--data", help="inputs: .npy/.npz file or folder of .npy samples (default: random)")
    parser.add_argument("--samples", type=SAMPLES, default=8, help="number of random samples, 1..100000 (default 8)")
    parser.add_argument("--min-sqnr", type=_decibels, help="exit 1 unless every output's SQNR is at least this (dB)")
    parser.add_argument("--per-layer", action="store_true", help="also compare every intermediate tensor")
    parser.add_argument("--report", metavar="FILE.json", help="write the comparison (and per-layer table) as JSON")


def _decibels(text: str) -> float:
    """A finite number of dB (argparse reports the error as one line): NaN would pass every check."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number of dB, e.g. 30")
    return value


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edgekit.commands._report import per_layer, write_report
    from edgekit.converters import verify
    from edgekit.files import check_output_path

    if args.report:  # before any work; never over the models or data it reads
        inputs = {"ONNX_MODEL": args.onnx_model, "TFLITE_MODEL": args.tflite_model, "--data": args.data}
        check_output_path(args.report, option="--report", named=inputs)
    report = verify(args.onnx_model, args.tflite_model, data=args.data, samples=args.samples)
    print(report.table())
    layers = None
    if args.per_layer or args.report:
        layers = per_layer(args.onnx_model, args.tflite_model, args.data)
        if args.per_layer:
            print(layers.table())
    if args.report:
        write_report(
            args.report,
            {
                "outputs": [asdict(o) for o in report.outputs],
                "samples": report.samples,
                "layers": [asdict(layer) for layer in layers.layers],
            },
        )
    if args.min_sqnr is not None and not report.meets(args.min_sqnr):
        print(f"FAIL: SQNR {report.min_sqnr_db:.2f} dB is not at least {args.min_sqnr} dB")
        return 1
    return 0
