"""edgekit verify MODEL.onnx MODEL.tflite: compare a conversion with onnxruntime."""

from __future__ import annotations

import argparse

from edgekit.commands._shapes import SAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx_model", help="the source .onnx model")
    parser.add_argument("tflite_model", help="the converted .tflite model")
    parser.add_argument("--data", help="inputs: .npy/.npz file or folder of .npy samples (default: random)")
    parser.add_argument("--samples", type=SAMPLES, default=8, help="number of random samples, 1..100000 (default 8)")
    parser.add_argument("--min-sqnr", type=float, help="exit 1 when any output's SQNR is below this (dB)")
    parser.add_argument("--per-layer", action="store_true", help="also compare every intermediate tensor")
    parser.add_argument("--report", metavar="FILE.json", help="write the comparison (and per-layer table) as JSON")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edgekit.commands._report import per_layer, write_report
    from edgekit.converters import verify

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
    if args.min_sqnr is not None and report.min_sqnr_db < args.min_sqnr:
        print(f"FAIL: SQNR {report.min_sqnr_db:.2f} dB < {args.min_sqnr} dB")
        return 1
    return 0
