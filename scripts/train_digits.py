"""Train the bundled sample model: a small CNN on scikit-learn's 8x8 digits.

Writes edgekit/samples/digits_cnn.onnx (batch 1, input "image" [1, 1, 8, 8] scaled to
[0, 1], output "logits" [1, 10]) and edgekit/samples/digits_data.npz (x_calib, x_test,
y_test: a held-out split the model never saw). Deterministic for a given torch version.

    python scripts/train_digits.py            # needs the torch and dev extras
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SAMPLES = Path(__file__).resolve().parent.parent / "edgekit" / "samples"


class DigitsCNN(nn.Module):
    """The bundled sample at ``width=1`` (8.5k parameters); ``width=k`` multiplies every layer's
    channels by k (the pruning benchmark uses a wider one, whose weights outweigh the file's
    fixed structure)."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = 16 * width, 32 * width, 64 * width
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1, stride=2),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1, groups=c2),
            nn.BatchNorm2d(c2),
            nn.ReLU6(),
            nn.Conv2d(c2, c3, 1),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(c3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def load_split(seed: int = 0):
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 40, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES)
    args = parser.parse_args()
    x_train, x_test, y_train, y_test = load_split()
    torch.manual_seed(0)
    model = train(DigitsCNN(), x_train, y_train)
    print(f"held-out accuracy (torch fp32): {accuracy(model, x_test, y_test):.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 8, 8),
        str(args.out / "digits_cnn.onnx"),
        opset_version=17,
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
    )
    rng = np.random.default_rng(0)
    calib = x_train[rng.choice(len(x_train), 200, replace=False)]
    np.savez_compressed(args.out / "digits_data.npz", x_calib=calib, x_test=x_test, y_test=y_test)
    print(f"wrote {args.out / 'digits_cnn.onnx'} and {args.out / 'digits_data.npz'}")


if __name__ == "__main__":
    main()
