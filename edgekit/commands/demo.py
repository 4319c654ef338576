"""edgekit demo: convert the bundled digits model to fp32 and int8, verify both against
onnxruntime, and measure their held-out accuracy on the runtime."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default="edgekit-demo", help="where to write the converted models")


def run(args: argparse.Namespace) -> int:
    from importlib.resources import files
    from pathlib import Path

    import numpy as np

    from edgekit.converters import convert, verify
    from edgekit.runtime import LatencyWindow, load

    samples = files("edgekit") / "samples"
    onnx_path = Path(str(samples / "digits_cnn.onnx"))
    data = np.load(str(samples / "digits_data.npz"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for label, options in (("fp32", {}), ("int8", {"quantize": "int8", "calibration": data["x_calib"]})):
        path = out_dir / f"digits_{label}.tflite"
        result = convert(onnx_path, path, **options)
        print(
            f"\n{label}: {onnx_path.name} -> {path} ({result.size_bytes:,} bytes, {result.seconds:.2f} s, "
            f"{result.partitions} XNNPACK partition(s))"
        )
        print(verify(onnx_path, path, data=data["x_test"]).table())
        session = load(path, threads=1)
        window = LatencyWindow()
        session.add_hook(window)
        images = data["x_test"].transpose(0, 2, 3, 1)  # the model takes NHWC
        logits = np.concatenate([session.run(x[None])["logits"] for x in images])
        accuracy = float(np.mean(logits.argmax(1) == data["y_test"]))
        stats = window.summary()
        print(
            f"held-out accuracy on {session.backend}: {100 * accuracy:.2f}% ({len(images)} digits); "
            f"latency p50 {1000 * stats['p50_ms']:.1f} us, p99 {1000 * stats['p99_ms']:.1f} us"
        )
    return 0
