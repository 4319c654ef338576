"""edgekit demo: convert the bundled digits model, verify it, and measure its accuracy."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default="edgekit-demo", help="where to write the converted model")


def run(args: argparse.Namespace) -> int:
    from importlib.resources import files
    from pathlib import Path

    import numpy as np

    from edgekit.converters import convert, verify
    from edgekit.converters.verification import TFLiteRunner

    samples = files("edgekit") / "samples"
    onnx_path = Path(str(samples / "digits_cnn.onnx"))
    data = np.load(str(samples / "digits_data.npz"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "digits_fp32.tflite"
    result = convert(onnx_path, fp32)
    print(
        f"converted {onnx_path.name} -> {fp32} ({result.size_bytes:,} bytes, {result.seconds:.2f} s, "
        f"{result.partitions} XNNPACK partition(s))"
    )
    report = verify(onnx_path, fp32, data=data["x_test"])
    print(report.table())
    runner = TFLiteRunner(fp32.read_bytes())
    name = runner.input_names[0]
    logits = np.stack([runner({name: x[None]})[runner.output_names[0]][0] for x in data["x_test"]])
    accuracy = float(np.mean(logits.argmax(1) == data["y_test"]))
    print(f"held-out accuracy of {fp32.name} on LiteRT: {100 * accuracy:.2f}% ({len(logits)} digits)")
    return 0
