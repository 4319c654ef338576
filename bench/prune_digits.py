"""Pruning claims on a model trained on real data: the digits CNN (scikit-learn's 8x8 digits,
held-out split of scripts/train_digits.py). Every accuracy is measured on the int8 TFLite model
edgekit produces unless marked torch; sizes are the signed, xz-compressed edgekit package a
device downloads (and the zstd-compressed .tflite). Seeds are fixed and printed.

The compression table runs at two widths: the bundled sample (width 1, 8k parameters), where
the file's fixed structure (per-channel scales, int32 biases, the graph) is most of the
compressed bytes, and a 4x wider CNN (110k parameters), where the weights dominate as they do
in any real model. The three literature claims run over several seeds, each at the width
where digits tells the methods apart (see the comments there).

    python -m bench.prune_digits [--epochs 30] [--widths 1,4] [--seeds 0,1,2,3]
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table, work_dir  # noqa: E402

KEPT_LAYERS = ("features.0", "features.3", "features.9")  # the convolutions whose channels are pruned


@dataclass
class Digits:
    """The split, the training budget, where models go, and the dense models trained so far."""

    x_tr: np.ndarray
    x_te: np.ndarray
    y_tr: np.ndarray
    y_te: np.ndarray
    epochs: int
    work: Path
    key: Path  # the package signing key
    trained: dict = field(default_factory=dict)  # (width, seed) -> (trained model, initial weights)

    @property
    def steps_per_epoch(self) -> int:
        return (len(self.x_tr) + 63) // 64

    def dense(self, width: int, seed: int):
        """The dense digits CNN of that width trained with that seed, and its initial weights."""
        import torch

        from edgekit.converters.torch import train
        from scripts.train_digits import DigitsCNN

        if (width, seed) not in self.trained:
            torch.manual_seed(seed)
            init = DigitsCNN(width)
            start_state = copy.deepcopy(init.state_dict())
            self.trained[(width, seed)] = (train(init, self.x_tr, self.y_tr, self.epochs, seed=seed), start_state)
        return self.trained[(width, seed)]


def export(model, path: Path) -> Path:
    import torch

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


def int8(d: Digits, model_or_path, name: str) -> tuple[float, int, int]:
    """Accuracy of the int8 TFLite model, its zstd-compressed size and its package's size."""
    import onnx
    import zstandard

    from edgekit import package
    from edgekit.converters import convert
    from edgekit.converters.verification import TFLiteRunner

    path = d.work / f"{name}.onnx"
    if isinstance(model_or_path, onnx.ModelProto):
        onnx.save(model_or_path, path)
    else:
        export(model_or_path, path)
    out = d.work / f"{name}.tflite"
    convert(str(path), out, quantize="int8", calibration=d.x_tr[:200])
    runner = TFLiteRunner(out.read_bytes())
    logits = np.stack([runner({"image": v[None]})["logits"][0] for v in d.x_te])
    size = len(zstandard.ZstdCompressor(level=19).compress(out.read_bytes()))
    packaged = package.build(out, d.work / f"{name}.tar.xz", name=name, version="1", signing_key=d.key).size
    return float(np.mean(logits.argmax(1) == d.y_te)), size, packaged


def half_channel_masks(model) -> dict:
    """Masks keeping half the channels of the pruned convolutions; the depthwise conv carries
    features.3's channels."""
    from edgekit.converters.torch import channel_masks

    masks = {k: v for k, v in channel_masks(model, 0.5).items() if k in KEPT_LAYERS}
    masks["features.6"] = masks["features.3"]
    return masks


def compression_row(width: int, label: str, torch_acc: str, measured: tuple, dense: tuple) -> list:
    """One row of the compression table; ``measured`` and ``dense`` are what :func:`int8` returns."""
    (acc, size, pkg), (dense_acc, dense_size, dense_pkg) = measured, dense
    ratio = "" if pkg == dense_pkg else f" ({pkg / dense_pkg:.0%})"
    zratio = "" if size == dense_size else f" ({size / dense_size:.0%})"
    delta = "-" if pkg == dense_pkg and acc == dense_acc else f"{100 * (acc - dense_acc):+.2f}"
    return [f"w{width} {label}", torch_acc, f"{100 * acc:.2f}", f"{size}{zratio}", f"{pkg}{ratio}", delta]


def compression_rows(d: Digits, width: int, seed: int) -> list[list]:
    """Dense, 50% channels pruned, 80% sparse and 16-cluster int8 models of one width."""
    import onnx

    from edgekit.converters.prune import cluster_weights, prune_channels
    from edgekit.converters.torch import MagnitudePruner, accuracy, apply_channel_masks, train

    model_dense, tag = d.dense(width, seed)[0], f"w{width}"
    params = sum(p.numel() for p in model_dense.parameters())
    dense = int8(d, model_dense, f"dense-{tag}")
    torch_acc = f"{100 * accuracy(model_dense, d.x_te, d.y_te):.2f}"
    rows = [compression_row(width, f"dense ({params:,} params)", torch_acc, dense, dense)]

    # 1. 50% channel pruning + fine-tuning, then removed for real by edgekit prune
    model = copy.deepcopy(model_dense)
    masks = half_channel_masks(model)
    apply_channel_masks(model, masks)
    train(model, d.x_tr, d.y_tr, d.epochs, lr=1e-3, seed=seed, channel_mask=masks, teacher=model_dense)
    pruned = prune_channels(onnx.load(export(model, d.work / f"masked-{tag}.onnx")), 0.5, round_to=1)
    torch_acc = f"{100 * accuracy(model, d.x_te, d.y_te):.2f}"
    rows.append(
        compression_row(width, "50% channels + fine-tune", torch_acc, int8(d, pruned, f"channels50-{tag}"), dense)
    )

    # 2. 80% magnitude sparsity (gradual, then fine-tuned at 80%) + int8: compressed size
    model = copy.deepcopy(model_dense)
    pruner = MagnitudePruner(model, 0.8, begin=0, end=d.steps_per_epoch * d.epochs // 3, frequency=10)
    train(model, d.x_tr, d.y_tr, d.epochs, lr=1e-3, seed=seed, pruner=pruner)
    torch_acc = f"{100 * accuracy(model, d.x_te, d.y_te):.2f}"
    rows.append(compression_row(width, "80% magnitude sparsity", torch_acc, int8(d, model, f"sparse80-{tag}"), dense))

    # 3. 16-cluster weight sharing (post-training) + int8
    clustered = cluster_weights(onnx.load(d.work / f"dense-{tag}.onnx"), 16)
    rows.append(compression_row(width, "16-cluster weights", "-", int8(d, clustered, f"clustered16-{tag}"), dense))
    return rows


# --- three claims from the pruning literature, over several seeds ----------------------------
# Each runs where the digits task tells the methods apart: a 90%-sparse width-1 net is at the
# edge of what trains at all (one-shot collapses, gradual recovers), while a winning ticket needs
# an over-parameterised net (width 4 at 95%; at width 1 both runs collapse). Each returns the
# held-out torch accuracy of (baseline, method).


def iterative_vs_one_shot(d: Digits, seed: int) -> tuple[float, float]:
    """Gradual against one-shot magnitude pruning to 90%, the same fine-tuning budget."""
    from edgekit.converters.torch import MagnitudePruner, accuracy, train

    dense = d.dense(1, seed)[0]
    one_shot = copy.deepcopy(dense)
    p = MagnitudePruner(one_shot, 0.9, frequency=10**9)
    p.set_sparsity(0.9)
    train(one_shot, d.x_tr, d.y_tr, d.epochs, lr=1e-3, seed=seed, pruner=p)
    gradual = copy.deepcopy(dense)
    schedule = MagnitudePruner(gradual, 0.9, end=d.steps_per_epoch * d.epochs * 2 // 3, frequency=10)
    train(gradual, d.x_tr, d.y_tr, d.epochs, lr=1e-3, seed=seed, pruner=schedule)
    return accuracy(one_shot, d.x_te, d.y_te), accuracy(gradual, d.x_te, d.y_te)


def lottery_ticket(d: Digits, seed: int) -> tuple[float, float]:
    """The 95% mask of the trained dense net, retrained from a random init against from theta0."""
    import torch

    from edgekit.converters.torch import MagnitudePruner, accuracy, train
    from scripts.train_digits import DigitsCNN

    dense, theta0 = d.dense(4, seed)
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
        train(ticket, d.x_tr, d.y_tr, d.epochs, seed=seed, pruner=keeper)
        results[label] = accuracy(ticket, d.x_te, d.y_te)
    return results["random re-init"], results["rewound"]


def distillation(d: Digits, seed: int) -> tuple[float, float]:
    """A channel-pruned student trained on labels against distilled from the dense net.

    The student is the 50%-channel-pruned shape trained from scratch with the same random shifts
    for both (Hinton et al. 2015; Beyer et al. 2022: a consistent teacher sees the student's
    augmented views). Fine-tuned from the dense weights instead, or without the shifts, the two
    end within noise of each other on digits; a 75%-pruned student is so short of capacity that
    its accuracy swings by 10 points between seeds and hides the gain."""
    import torch

    from edgekit.converters.torch import accuracy, apply_channel_masks, random_shift, train
    from scripts.train_digits import DigitsCNN

    dense = d.dense(1, seed)[0]
    masks = half_channel_masks(dense)
    results = {}
    for label, teacher in (("labels", None), ("distilled", dense)):
        torch.manual_seed(seed + 7)
        student = DigitsCNN(1)
        apply_channel_masks(student, masks)
        options = {"teacher": teacher, "augment": random_shift(1), "alpha": 0.9, "temperature": 4.0}
        train(student, d.x_tr, d.y_tr, 2 * d.epochs, seed=seed, channel_mask=masks, **options)
        results[label] = accuracy(student, d.x_te, d.y_te)
    return results["labels"], results["distilled"]


CLAIMS = {
    "w1, 90% sparse: iterative beats one-shot": iterative_vs_one_shot,
    "w4, 95% sparse: winning ticket beats random re-init": lottery_ticket,
    "w1 student (50% channels off, from scratch): distillation beats labels": distillation,
}


def claim_rows(d: Digits, seeds: list[int]) -> list[list]:
    per_seed = {seed: {claim: run(d, seed) for claim, run in CLAIMS.items()} for seed in seeds}
    rows = []
    for claim in CLAIMS:
        pairs = [per_seed[seed][claim] for seed in seeds]
        cells = [f"{100 * base:.1f} -> {100 * method:.1f}" for base, method in pairs]
        wins = sum(method > base for base, method in pairs)
        mean_gain = 100 * float(np.mean([method - base for base, method in pairs]))
        rows.append([claim, *cells, f"{mean_gain:+.1f}", f"{wins}/{len(seeds)}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--widths", default="1,4", help="channel multipliers of the compression table")
    parser.add_argument("--seeds", default="0,1,2,3", help="seeds of the literature claims")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]

    from edgekit import package
    from scripts.train_digits import load_split

    work = work_dir("edgekit-digits-")
    package.generate_key(work / "fleet.key", work / "fleet.pub")
    d = Digits(*load_split(), epochs=args.epochs, work=work, key=work / "fleet.key")
    rows = [row for width in widths for row in compression_rows(d, width, seeds[0])]
    print(f"digits CNN, seed {seeds[0]}, {args.epochs} epochs dense training\n")
    header = ["model", "torch acc %", "int8 TFLite acc %", "int8 zstd bytes", "package (xz) bytes", "vs dense int8"]
    print(table(rows, header))
    print()
    print("claims from the pruning literature, digits CNN, held-out torch accuracy %")
    header = ["claim (baseline -> method)", *[f"seed {seed}" for seed in seeds], "mean gain (pt)", "holds"]
    print(table(claim_rows(d, seeds), header))


if __name__ == "__main__":
    main()
