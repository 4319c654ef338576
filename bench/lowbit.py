"""Binary, ternary and PACT on a model trained on real data: the 4x wide digits CNN
(scikit-learn's 8x8 digits, held-out split of scripts/train_digits.py).

Weights: fp32, TTQ ternary and BWN binary (fine-tuned from the fp32 model with the STE, first
and last layers int8), each converted to int8 TFLite; accuracy of the TFLite model, its
agreement with the exported ONNX on onnxruntime, the most distinct int8 values in an output
channel of the low-bit layers, and the signed xz package's size against the dense int8 one.
Activations: PACT against a fixed ReLU6 clip, both fake-quantized to 4 bits and fine-tuned the
same way from the same fp32 model, over several seeds in this run; at 8 bits, the int8 TFLite
model with PACT's trained ranges against calibrated ranges.

    python bench/lowbit.py [--epochs 30] [--finetune 10] [--seeds 0,1,2,3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="fp32 training")
    parser.add_argument("--finetune", type=int, default=10, help="low-bit and PACT fine-tuning")
    parser.add_argument("--seeds", default="0,1,2,3", help="seeds of the PACT / ReLU6 comparison")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(v) for v in args.seeds.split(",")]

    import onnxruntime
    import torch
    from torch import nn
    from train_digits import DigitsCNN, load_split

    from edgekit import package
    from edgekit.converters import convert
    from edgekit.converters.int8_rules import distinct_weight_values
    from edgekit.converters.tflite_import import read_graph
    from edgekit.converters.torch import accuracy, export_onnx, train
    from edgekit.converters.torch_lowbit import (
        PACT,
        deployable,
        export_lowbit,
        lowbit_weights,
        pact_activations,
        pact_alphas,
        train_lowbit,
    )
    from edgekit.converters.verification import TFLiteRunner

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="edgekit-lowbit-"))
    key = work / "fleet.key"
    package.generate_key(key, work / "fleet.pub")
    x_tr, x_te, y_tr, y_te = load_split()
    calib = x_tr[:200]
    example = torch.zeros(1, 1, 8, 8)
    start = time.perf_counter()

    def int8(onnx_path: Path) -> dict:
        """Convert to int8 TFLite; accuracy, agreement with onnxruntime, package size."""
        out = onnx_path.with_suffix(".tflite")
        result = convert(str(onnx_path), out, quantize="int8", calibration=calib)
        runner = TFLiteRunner(out.read_bytes(), threads=1)
        tflite_logits = np.stack([runner({"image": v[None]})["logits"][0] for v in x_te])
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        onnx_logits = np.concatenate([session.run(None, {"image": v[None]})[0] for v in x_te])
        pkg = package.build(out, work / f"{out.stem}.tar.xz", name=out.stem, version="1", signing_key=key)
        return {
            "acc": float(np.mean(tflite_logits.argmax(1) == y_te)),
            "argmax_agree": float(np.mean(tflite_logits.argmax(1) == onnx_logits.argmax(1))),
            "max_err": float(np.abs(tflite_logits - onnx_logits).max()),
            "values": distinct_weight_values(read_graph(out.read_bytes())),
            "package": pkg.size,
            "partitions": result.partitions,
        }

    torch.manual_seed(0)
    dense = train(DigitsCNN(args.width), x_tr, y_tr, args.epochs, seed=0)
    export_onnx(dense, example, str(work / "fp32.onnx"), input_name="image")
    rows, dense_int8 = [], int8(work / "fp32.onnx")
    models = {"fp32 (dense int8)": (dense, dense_int8)}
    for label, method in (("TTQ ternary", "ttq"), ("BWN binary", "binary")):
        model = train_lowbit(lowbit_weights(dense, method), x_tr, y_tr, args.finetune, lr=1e-3, seed=0)
        export_lowbit(model, example, str(work / f"{method}.onnx"))
        models[label] = (model, int8(work / f"{method}.onnx"))
    fp32_acc = accuracy(dense, x_te, y_te)
    for label, (model, found) in models.items():
        inner = list(found["values"].values())[1:-1]  # the first and last layers stay int8
        rows.append(
            [
                label,
                f"{100 * accuracy(deployable(model), x_te, y_te):.2f}",
                f"{100 * found['acc']:.2f}",
                f"{100 * (found['acc'] - fp32_acc):+.2f}",
                f"{min(inner)}-{max(inner)}",
                f"{100 * found['argmax_agree']:.1f}%",
                f"{found['max_err']:.2g}",
                found["partitions"],
                f"{found['package']:,}",
                f"{found['package'] / dense_int8['package']:.0%}",
            ]
        )
    print(f"digits CNN width {args.width}, fp32 {args.epochs} epochs, low-bit fine-tuning {args.finetune} epochs\n")
    header = ["weights", "torch acc %", "int8 TFLite acc %", "vs fp32 pt", "values/channel (inner layers)"]
    header += ["argmax = ORT", "max |logit - ORT|", "partitions", "package xz bytes", "vs dense int8"]
    print(table(rows, header))

    # --- PACT vs a fixed ReLU6 clip, activations fake-quantized to 4 bits --------------------
    pact_rows, wins = [], 0
    for seed in seeds:
        accs = {}
        for label, learn in (("ReLU6 clip", False), ("PACT", True)):
            model = pact_activations(dense, alpha=6.0, bits=4, learn_alpha=learn)
            train_lowbit(model, x_tr, y_tr, args.finetune, lr=1e-3, seed=seed, alpha_decay=1e-3, alpha_lr=0.05)
            accs[label] = accuracy(model, x_te, y_te)
            alphas = pact_alphas(model)
        wins += accs["PACT"] > accs["ReLU6 clip"]
        shown = ", ".join(f"{a:.2f}" for a in alphas.values())
        pact_rows.append([seed, f"{100 * accs['ReLU6 clip']:.2f}", f"{100 * accs['PACT']:.2f}", shown])
    print(f"\n4-bit activations (torch, fake-quantized), fine-tuned {args.finetune} epochs per seed;", end=" ")
    print(f"PACT ahead in {wins}/{len(seeds)}")
    print(table(pact_rows, ["seed", "ReLU6 clip acc %", "PACT acc %", "PACT alphas"]))

    # --- 8 bits: PACT's trained ranges against calibrated ones -----------------------------
    pact8 = pact_activations(dense, alpha=6.0, bits=8)
    train_lowbit(pact8, x_tr, y_tr, args.finetune, lr=1e-3, seed=seeds[0], alpha_decay=1e-3, alpha_lr=0.05)
    export_lowbit(pact8, example, str(work / "pact8.onnx"))

    class ClipOnly(nn.Module):  # the same clip with no grid: the converter calibrates its range
        def __init__(self, alpha: float) -> None:
            super().__init__()
            self.alpha = alpha

        def forward(self, x):
            return torch.clamp(x, 0, self.alpha)

    calibrated = deployable(pact8)
    for name, m in list(pact8.named_modules()):
        if isinstance(m, PACT):
            parent, _, child = name.rpartition(".")
            setattr(calibrated.get_submodule(parent), child, ClipOnly(float(m.alpha.detach())))
    export_onnx(calibrated, example, str(work / "pact8_calibrated.onnx"), input_name="image")
    eight = [
        ("fp32 ReLU, calibrated ranges", dense_int8),
        ("PACT 8-bit, calibrated ranges", int8(work / "pact8_calibrated.onnx")),
        ("PACT 8-bit, trained alpha ranges", int8(work / "pact8.onnx")),
    ]
    print("\n8-bit activations, int8 TFLite")
    print(
        table(
            [[label, f"{100 * f['acc']:.2f}", f["partitions"]] for label, f in eight],
            ["model", "int8 TFLite acc %", "partitions"],
        )
    )
    print(f"\nfp32 torch accuracy {100 * fp32_acc:.2f}%; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
