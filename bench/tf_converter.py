"""edgekit int8 against TensorFlow's own converter on the same Keras model (issue 25).

Keras MobileNetV2 with logits out (random weights, seed 0: Keras fetches its ImageNet weights from
the network, which this machine cannot reach; BatchNorm statistics set from the calibration
batch) is exported twice: by tf2onnx (opset 17; an NHWC input that the graph transposes, as Keras
users get it) for edgekit, and by ``tf.lite.TFLiteConverter`` with full int8 kernels and float
I/O. Both int8 models are calibrated on the same samples; for each: file size, XNNPACK partitions,
LiteRT latency at 1 and 2 threads measured interleaved in the same run, and SQNR against
onnxruntime's fp32 on held-out samples (random weights: a sanity check, not an accuracy figure).

TensorFlow's pins clash with edgekit's, so it lives in a virtualenv of its own
(``python -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu tf2onnx``); this
script runs itself there with ``--export`` for the TensorFlow side.

    python -m bench.tf_converter [--tf-python /work/tfvenv/bin/python] [--rounds 5] [--calibration-samples 32]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import interleaved, table  # noqa: E402

SIZE = 224
INPUT = "image"


def export_with_tensorflow(folder: Path) -> None:
    """The TensorFlow side: Keras MobileNetV2 -> keras.onnx (tf2onnx) and tf_int8.tflite (TF's converter),
    calibrated on folder/calibration.npy."""
    import tensorflow as tf
    import tf2onnx

    tf.keras.utils.set_random_seed(0)
    # logits out: a softmax over 1000 classes of a random network rounds to zero in int8 and would compare nothing
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    calibration = np.load(folder / "calibration.npy")
    # untrained BatchNorm statistics (mean 0, variance 1) let the activations fade to ~1e-11 at the logits;
    # one training-mode pass with momentum 0 sets them to the calibration batch's, as a trained model has them
    batch_norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(calibration[:, 0], training=True)
    spec = (tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32, name=INPUT),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(folder / "keras.onnx"))

    def representative_dataset():
        for sample in calibration:
            yield [sample]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    (folder / "tf_int8.tflite").write_bytes(converter.convert())


def compare(folder: Path, tf_python: str, calibration_samples: int, rounds: int) -> str:
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.converters import convert
    from edgekit.converters.harness import xnnpack_delegation
    from edgekit.converters.verification import sqnr_db

    rng = np.random.default_rng(0)
    # MobileNetV2's preprocessing maps pixels to [-1, 1]
    samples = rng.uniform(-1, 1, (calibration_samples + 8, 1, SIZE, SIZE, 3)).astype(np.float32)
    calibration, held_out = samples[:calibration_samples], samples[calibration_samples:]
    np.save(folder / "calibration.npy", calibration)
    export = subprocess.run(
        [tf_python, "-m", "bench.tf_converter", "--export", str(folder)], capture_output=True, text=True, cwd=ROOT
    )
    if export.returncode != 0:
        sys.exit(f"the TensorFlow side failed:\n{export.stderr[-3000:]}")
    result = convert(folder / "keras.onnx", folder / "edgekit_int8.tflite", quantize="int8", calibration=calibration)
    print(*result.io_layout.values(), sep="\n")

    session = ort.InferenceSession(str(folder / "keras.onnx"), providers=["CPUExecutionProvider"])
    references = [session.run(None, {INPUT: x})[0] for x in held_out]
    models = {"edgekit int8": folder / "edgekit_int8.tflite", "TF converter int8": folder / "tf_int8.tflite"}
    rows, calls = {}, {}
    for label, path in models.items():
        data = path.read_bytes()
        interpreter = Interpreter(model_content=data, num_threads=1)
        interpreter.allocate_tensors()
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        assert list(inp["shape"]) == [1, SIZE, SIZE, 3], (label, inp["shape"])
        outputs = []
        for x in held_out:
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(out["index"]).copy())
        sqnr = sqnr_db(np.concatenate(references), np.concatenate(outputs))
        rows[label] = [label, f"{len(data):,}", str(xnnpack_delegation(data).partitions), f"{sqnr:.1f}"]
        for threads in (1, 2):
            timed = Interpreter(model_content=data, num_threads=threads)
            timed.allocate_tensors()
            timed.set_tensor(timed.get_input_details()[0]["index"], held_out[0])
            calls[(label, threads)] = timed.invoke
    latency = interleaved({f"{label}/{threads}": fn for (label, threads), fn in calls.items()}, rounds=rounds)
    tf_label = "TF converter int8"
    for label, row in rows.items():
        for threads in (1, 2):
            ms = latency[f"{label}/{threads}"]
            row += [f"{ms:.2f}", f"{ms / latency[f'{tf_label}/{threads}']:.2f}"]
        row.append(f"{int(row[1].replace(',', '')) / (folder / 'tf_int8.tflite').stat().st_size:.2f}")
    header = ["model", "bytes", "XNNPACK partitions", "SQNR vs fp32 dB", "ms 1 thr", "× TF", "ms 2 thr", "× TF"]
    return table(list(rows.values()), [*header, "size × TF"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", default="/work/tfvenv/bin/python", help="a Python with tensorflow + tf2onnx")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--export", metavar="FOLDER", help=argparse.SUPPRESS)  # the TensorFlow side, run by the other
    args = parser.parse_args()
    if args.export:
        export_with_tensorflow(Path(args.export))
        return
    with tempfile.TemporaryDirectory() as folder:
        print(compare(Path(folder), args.tf_python, args.calibration_samples, args.rounds))


if __name__ == "__main__":
    main()
