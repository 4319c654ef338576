"""Pruning claims on a model trained on real data: the digits CNN (scikit-learn's 8x8 digits,
held-out split of scripts/train_digits.py). Every accuracy is measured on the int8 TFLite model
edgekit produces unless marked torch; sizes are the signed, xz-compressed edgekit package a
device downloads (and the zstd-compressed .tflite). Seeds are fixed and printed.

The compression table runs at two widths: the bundled sample (width 1, 8k parameters), where
the file's fixed structure (per-channel scales, int32 biases, the graph) is most of the
compressed bytes, and a 4x wider CNN (110k parameters), where the weights dominate as they do
in any real model. The three literature claims run over several seeds, each at the width
where digits tells the methods apart (see the comments there).

    python bench/prune_digits.py [--epochs 30] [--widths 1,4] [--seeds 0,1,2,3]
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
    parser.add_argument("--widths", default="1,4", help="channel multipliers of the compression table")
    parser.add_argument("--seeds", default="0,1,2,3", help="seeds of the literature claims")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]

    import onnx
    import torch
    import zstandard
    from train_digits import DigitsCNN, load_split

    from edgekit import package
    from edgekit.converters import convert
    from edgekit.converters.prune import cluster_weights, prune_channels
    from edgekit.converters.torch import (
        MagnitudePruner,
        accuracy,
        apply_channel_masks,
        channel_masks,
        random_shift,
        train,
    )
    from edgekit.converters.verification import TFLiteRunner

    work = Path(tempfile.mkdtemp(prefix="edgekit-digits-"))
    key = work / "fleet.key"
    package.generate_key(key, work / "fleet.pub")
    x_tr, x_te, y_tr, y_te = load_split()
    calib = x_tr[:200]
    steps_per_epoch = (len(x_tr) + 63) // 64

    def export(model, path: Path) -> Path:
        torch.onnx.export(
            model.eval(),
            torch.zeros(1, 1, 8, 8),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
        )
        return path

    def int8(model_or_path, name: str) -> tuple[float, int, int]:
        """Accuracy of the int8 TFLite model, its zstd-compressed size and its package's size."""
        path = work / f"{name}.onnx"
        if isinstance(model_or_path, onnx.ModelProto):
            onnx.save(model_or_path, path)
        else:
            export(model_or_path, path)
        out = work / f"{name}.tflite"
        convert(str(path), out, quantize="int8", calibration=calib)
        runner = TFLiteRunner(out.read_bytes())
        logits = np.stack([runner({"image": v[None]})["logits"][0] for v in x_te])
        size = len(zstandard.ZstdCompressor(level=19).compress(out.read_bytes()))
        packaged = package.build(out, work / f"{name}.tar.xz", name=name, version="1", signing_key=key).size
        return float(np.mean(logits.argmax(1) == y_te)), size, packaged

    trained: dict[tuple[int, int], tuple] = {}

    def dense_model(width: int, seed: int):
        """The dense digits CNN of that width trained with that seed, and its initial weights."""
        if (width, seed) not in trained:
            torch.manual_seed(seed)
            init = DigitsCNN(width)
            start_state = copy.deepcopy(init.state_dict())
            trained[(width, seed)] = (train(init, x_tr, y_tr, args.epochs, seed=seed), start_state)
        return trained[(width, seed)]

    rows = []
    for width in widths:
        seed = seeds[0]
        model_dense = dense_model(width, seed)[0]
        tag = f"w{width}"
        params = sum(p.numel() for p in model_dense.parameters())
        dense_acc, dense_size, dense_pkg = int8(model_dense, f"dense-{tag}")

        def row(
            label,
            torch_acc,
            acc,
            size,
            pkg,
            width=width,
            dense_acc=dense_acc,
            dense_size=dense_size,
            dense_pkg=dense_pkg,
        ):
            ratio = "" if pkg == dense_pkg else f" ({pkg / dense_pkg:.0%})"
            zratio = "" if size == dense_size else f" ({size / dense_size:.0%})"
            delta = "-" if pkg == dense_pkg and acc == dense_acc else f"{100 * (acc - dense_acc):+.2f}"
            return [f"w{width} {label}", torch_acc, f"{100 * acc:.2f}", f"{size}{zratio}", f"{pkg}{ratio}", delta]

        rows.append(
            row(
                f"dense ({params:,} params)",
                f"{100 * accuracy(model_dense, x_te, y_te):.2f}",
                dense_acc,
                dense_size,
                dense_pkg,
            )
        )

        # 1. 50% channel pruning + fine-tuning, then removed for real by edgekit prune
        model = copy.deepcopy(model_dense)
        masks = {k: v for k, v in channel_masks(model, 0.5).items() if k in ("features.0", "features.3", "features.9")}
        masks["features.6"] = masks["features.3"]  # the depthwise conv carries features.3's channels
        apply_channel_masks(model, masks)
        train(model, x_tr, y_tr, args.epochs, lr=1e-3, seed=seed, channel_mask=masks, teacher=model_dense)
        masked = export(model, work / f"masked-{tag}.onnx")
        pruned = prune_channels(onnx.load(masked), 0.5, round_to=1)
        rows.append(
            row(
                "50% channels + fine-tune",
                f"{100 * accuracy(model, x_te, y_te):.2f}",
                *int8(pruned, f"channels50-{tag}"),
            )
        )

        # 2. 80% magnitude sparsity (gradual, then fine-tuned at 80%) + int8: compressed size
        model = copy.deepcopy(model_dense)
        pruner = MagnitudePruner(model, 0.8, begin=0, end=steps_per_epoch * args.epochs // 3, frequency=10)
        train(model, x_tr, y_tr, args.epochs, lr=1e-3, seed=seed, pruner=pruner)
        rows.append(
            row("80% magnitude sparsity", f"{100 * accuracy(model, x_te, y_te):.2f}", *int8(model, f"sparse80-{tag}"))
        )

        # 3. 16-cluster weight sharing (post-training) + int8
        rows.append(
            row(
                "16-cluster weights",
                "-",
                *int8(cluster_weights(onnx.load(work / f"dense-{tag}.onnx"), 16), f"clustered16-{tag}"),
            )
        )
    print(f"digits CNN, seed {seeds[0]}, {args.epochs} epochs dense training\n")
    print(
        table(
            rows,
            ["model", "torch acc %", "int8 TFLite acc %", "int8 zstd bytes", "package (xz) bytes", "vs dense int8"],
        )
    )

    # --- three claims from the pruning literature, over several seeds ----------------------
    # Each runs where the digits task tells the methods apart: a 90%-sparse width-1 net is at
    # the edge of what trains at all (one-shot collapses, gradual recovers), while a winning
    # ticket needs an over-parameterised net (width 4 at 95%; at width 1 both runs collapse)
    def claims(seed: int) -> dict[str, tuple[float, float]]:
        found = {}
        # (a) iterative (gradual) vs one-shot magnitude pruning, same fine-tuning budget
        dense = dense_model(1, seed)[0]
        one_shot = copy.deepcopy(dense)
        p = MagnitudePruner(one_shot, 0.9, frequency=10**9)
        p.set_sparsity(0.9)
        train(one_shot, x_tr, y_tr, args.epochs, lr=1e-3, seed=seed, pruner=p)
        gradual = copy.deepcopy(dense)
        schedule = MagnitudePruner(gradual, 0.9, end=steps_per_epoch * args.epochs * 2 // 3, frequency=10)
        train(gradual, x_tr, y_tr, args.epochs, lr=1e-3, seed=seed, pruner=schedule)
        found["w1, 90% sparse: iterative beats one-shot"] = (
            accuracy(one_shot, x_te, y_te),
            accuracy(gradual, x_te, y_te),
        )
        # (b) lottery ticket: the 95% mask of the trained dense net, retrained from theta0 vs random init
        dense, theta0 = dense_model(4, seed)
        mask_source = MagnitudePruner(copy.deepcopy(dense), 0.95)
        mask_source.set_sparsity(0.95)
        results = {}
        for label, state in (("rewound", theta0), ("random re-init", None)):
            torch.manual_seed(seed + 1000)
            ticket = DigitsCNN(4)
            if state is not None:
                ticket.load_state_dict(state)
            keeper = MagnitudePruner(ticket, 0.95, frequency=10**9)
            keeper.masks = mask_source.masks
            keeper.apply()
            train(ticket, x_tr, y_tr, args.epochs, seed=seed, pruner=keeper)
            results[label] = accuracy(ticket, x_te, y_te)
        found["w4, 95% sparse: winning ticket beats random re-init"] = (results["random re-init"], results["rewound"])
        # (c) distillation vs labels for a channel-pruned student
        # The student is the 50%-channel-pruned shape trained from scratch with the same random
        # shifts for both (Hinton et al. 2015; Beyer et al. 2022: a consistent teacher sees the
        # student's augmented views). Fine-tuned from the dense weights instead, or without the
        # shifts, the two end within noise of each other on digits; a 75%-pruned student is so
        # short of capacity that its accuracy swings by 10 points between seeds and hides the gain.
        dense = dense_model(1, seed)[0]
        masks = {k: v for k, v in channel_masks(dense, 0.5).items() if k in ("features.0", "features.3", "features.9")}
        masks["features.6"] = masks["features.3"]
        results = {}
        for label, teacher in (("labels", None), ("distilled", dense)):
            torch.manual_seed(seed + 7)
            student = DigitsCNN(1)
            apply_channel_masks(student, masks)
            train(
                student,
                x_tr,
                y_tr,
                2 * args.epochs,
                seed=seed,
                channel_mask=masks,
                teacher=teacher,
                augment=random_shift(1),
                alpha=0.9,
                temperature=4.0,
            )
            results[label] = accuracy(student, x_te, y_te)
        found["w1 student (50% channels off, from scratch): distillation beats labels"] = (
            results["labels"],
            results["distilled"],
        )
        return found

    per_seed = {seed: claims(seed) for seed in seeds}
    rows = []
    for claim in per_seed[seeds[0]]:
        pairs = [per_seed[seed][claim] for seed in seeds]
        cells = [f"{100 * base:.1f} -> {100 * method:.1f}" for base, method in pairs]
        wins = sum(method > base for base, method in pairs)
        mean_gain = 100 * float(np.mean([method - base for base, method in pairs]))
        rows.append([claim, *cells, f"{mean_gain:+.1f}", f"{wins}/{len(seeds)}"])
    print()
    print("claims from the pruning literature, digits CNN, held-out torch accuracy %")
    print(
        table(
            rows,
            ["claim (baseline -> method)", *[f"seed {seed}" for seed in seeds], "mean gain (pt)", "holds"],
        )
    )


if __name__ == "__main__":
    main()
