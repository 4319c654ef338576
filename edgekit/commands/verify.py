"""edgekit verify MODEL.onnx MODEL.tflite: compare a conversion with onnxruntime."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx_model", help="the source .onnx model")
    parser.add_argument("tflite_model", help="the converted .tflite model")
    parser.add_argument("--data", help="inputs: .npy/.npz file or folder of .npy samples (default: random)")
    parser.add_argument("--samples", type=int, default=8, help="number of random samples (default 8)")
    parser.add_argument("--min-sqnr", type=float, help="exit 1 when any output's SQNR is below this (dB)")


def run(args: argparse.Namespace) -> int:
    from edgekit.converters import verify

    report = verify(args.onnx_model, args.tflite_model, data=args.data, samples=args.samples)
    print(report.table())
    if args.min_sqnr is not None and report.min_sqnr_db < args.min_sqnr:
        print(f"FAIL: SQNR {report.min_sqnr_db:.2f} dB < {args.min_sqnr} dB")
        return 1
    return 0
