"""Pruning claims on a model trained on real data: the digits CNN (scikit-learn's 8x8 digits,
held-out split of scripts/train_digits.py). Every accuracy is measured on the int8 TFLite model
edgekit produces unless marked torch. Seeds are fixed and printed.

    python bench/prune_digits.py [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import onnx
    import torch
    import zstandard
    from train_digits import DigitsCNN, load_split

    from edgekit.converters import convert
    from edgekit.converters.prune import cluster_weights, prune_channels
    from edgekit.converters.torch import (
        MagnitudePruner,
        accuracy,
        apply_channel_masks,
        channel_masks,
        train,
    )
    from edgekit.converters.verification import TFLiteRunner

    work = Path(tempfile.mkdtemp(prefix="edgekit-digits-"))
    x_tr, x_te, y_tr, y_te = load_split()
    calib = x_tr[:200]
    steps_per_epoch = (len(x_tr) + 63) // 64

    def int8(model_or_path, name: str) -> tuple[float, int]:
        """Accuracy of the int8 TFLite model and its zstd-compressed size."""
        path = work / f"{name}.onnx"
        if isinstance(model_or_path, onnx.ModelProto):
            onnx.save(model_or_path, path)
        else:
            model_or_path.eval()
            torch.onnx.export(
                model_or_path,
                torch.zeros(1, 1, 8, 8),
                str(path),
                opset_version=17,
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
            )
        out = work / f"{name}.tflite"
        convert(str(path), out, quantize="int8", calibration=calib)
        runner = TFLiteRunner(out.read_bytes())
        logits = np.stack([runner({"image": v[None]})["logits"][0] for v in x_te])
        size = len(zstandard.ZstdCompressor(level=19).compress(out.read_bytes()))
        return float(np.mean(logits.argmax(1) == y_te)), size

    torch.manual_seed(args.seed)
    init = DigitsCNN()
    theta0 = copy.deepcopy(init.state_dict())
    dense = train(init, x_tr, y_tr, args.epochs, seed=args.seed)
    dense_acc, dense_size = int8(dense, "dense")
    rows = [["dense", f"{100 * accuracy(dense, x_te, y_te):.2f}", f"{100 * dense_acc:.2f}", dense_size, "-"]]

    # 1. 50% channel pruning + fine-tuning, then removed for real by edgekit prune
    model = copy.deepcopy(dense)
    masks = {k: v for k, v in channel_masks(model, 0.5).items() if k in ("features.0", "features.3", "features.9")}
    masks["features.6"] = masks["features.3"]  # the depthwise conv carries features.3's channels
    apply_channel_masks(model, masks)
    train(model, x_tr, y_tr, args.epochs, lr=1e-3, seed=args.seed, channel_mask=masks, teacher=dense)
    export = work / "masked.onnx"
    torch.onnx.export(
        model.eval(),
        torch.zeros(1, 1, 8, 8),
        str(export),
        opset_version=17,
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
    )
    pruned = prune_channels(onnx.load(export), 0.5)
    acc, size = int8(pruned, "channels50")
    rows.append(
        [
            "50% channels + fine-tune",
            f"{100 * accuracy(model, x_te, y_te):.2f}",
            f"{100 * acc:.2f}",
            size,
            f"{100 * (acc - dense_acc):+.2f}",
        ]
    )

    # 2. 80% magnitude sparsity (gradual) + int8: compressed size
    model = copy.deepcopy(dense)
    pruner = MagnitudePruner(model, 0.8, begin=0, end=steps_per_epoch * args.epochs // 3, frequency=10)
    train(model, x_tr, y_tr, args.epochs // 2, lr=1e-3, seed=args.seed, pruner=pruner)
    acc, size = int8(model, "sparse80")
    rows.append(
        [
            "80% magnitude sparsity",
            f"{100 * accuracy(model, x_te, y_te):.2f}",
            f"{100 * acc:.2f}",
            f"{size} ({size / dense_size:.0%})",
            f"{100 * (acc - dense_acc):+.2f}",
        ]
    )

    # 3. 16-cluster weight sharing (post-training) + int8
    dense_onnx = work / "dense.onnx"
    acc, size = int8(cluster_weights(onnx.load(dense_onnx), 16), "clustered16")
    rows.append(
        [
            "16-cluster weights",
            "-",
            f"{100 * acc:.2f}",
            f"{size} ({size / dense_size:.0%})",
            f"{100 * (acc - dense_acc):+.2f}",
        ]
    )
    print(f"digits CNN, seed {args.seed}, {args.epochs} epochs dense training\n")
    print(table(rows, ["model", "torch acc %", "int8 TFLite acc %", "int8 zstd bytes", "vs dense int8"]))

    # --- three claims from the pruning literature, at 90% sparsity ------------------------
    sparsity, budget = 0.9, args.epochs
    claims = []
    # (a) iterative (gradual) vs one-shot magnitude pruning, same fine-tuning budget
    one_shot = copy.deepcopy(dense)
    p = MagnitudePruner(one_shot, sparsity, frequency=10**9)
    p.set_sparsity(sparsity)
    train(one_shot, x_tr, y_tr, budget, lr=1e-3, seed=args.seed, pruner=p)
    gradual = copy.deepcopy(dense)
    train(
        gradual,
        x_tr,
        y_tr,
        budget,
        lr=1e-3,
        seed=args.seed,
        pruner=MagnitudePruner(gradual, sparsity, end=steps_per_epoch * budget * 2 // 3, frequency=10),
    )
    claims.append(
        [
            "iterative beats one-shot at 90%",
            f"one-shot {100 * accuracy(one_shot, x_te, y_te):.2f}",
            f"iterative {100 * accuracy(gradual, x_te, y_te):.2f}",
        ]
    )
    # (b) lottery ticket: the 90% mask of the trained dense net, retrained from theta0 vs random init
    mask_source = MagnitudePruner(copy.deepcopy(dense), sparsity)
    mask_source.set_sparsity(sparsity)
    results = {}
    for label, state in (("rewound", theta0), ("random re-init", None)):
        torch.manual_seed(args.seed + 1)
        ticket = DigitsCNN()
        if state is not None:
            ticket.load_state_dict(state)
        keeper = MagnitudePruner(ticket, sparsity, frequency=10**9)
        keeper.masks = mask_source.masks
        keeper.apply()
        train(ticket, x_tr, y_tr, args.epochs, seed=args.seed, pruner=keeper)
        results[label] = accuracy(ticket, x_te, y_te)
    claims.append(
        [
            "winning ticket beats random re-init",
            f"random {100 * results['random re-init']:.2f}",
            f"rewound {100 * results['rewound']:.2f}",
        ]
    )
    # (c) distillation vs labels for a 75%-channel-pruned student
    results = {}
    for label, teacher in (("labels", None), ("distilled", dense)):
        student = copy.deepcopy(dense)
        masks = {
            k: v for k, v in channel_masks(student, 0.75).items() if k in ("features.0", "features.3", "features.9")
        }
        masks["features.6"] = masks["features.3"]
        apply_channel_masks(student, masks)
        train(student, x_tr, y_tr, budget, lr=1e-3, seed=args.seed, channel_mask=masks, teacher=teacher)
        results[label] = accuracy(student, x_te, y_te)
    claims.append(
        [
            "distillation beats labels (75% channels pruned)",
            f"labels {100 * results['labels']:.2f}",
            f"distilled {100 * results['distilled']:.2f}",
        ]
    )
    print()
    print(table(claims, ["claim (torch accuracy %, held-out)", "baseline", "method"]))


if __name__ == "__main__":
    main()
