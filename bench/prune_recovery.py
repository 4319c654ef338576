"""Bias correction after channel pruning, no training: the bundled digits CNN (trained on
scikit-learn's 8x8 digits) pruned uniformly at several ratios, corrected on the calibration
split, measured with onnxruntime on the held-out split: output SQNR against the dense model and
accuracy, without and with the correction.

    python -m bench.prune_recovery [--criterion l1]
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", choices=("l1", "l2", "fpgm"), default="l1")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    args = parser.parse_args()

    import onnx

    from edgekit.converters.prune import correct_bias, prune_channels
    from edgekit.converters.prune.sensitivity import _outputs
    from edgekit.converters.verification import sqnr_db

    dense = onnx.load(str(files("edgekit") / "samples" / "digits_cnn.onnx"))
    data = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))
    x, y = data["x_test"], data["y_test"]
    reference = _outputs(dense, x)
    rows = [["dense", "-", "-", f"{100 * np.mean(reference.argmax(1) == y):.2f}", "-"]]
    for ratio in args.ratios:
        pruned = prune_channels(dense, ratio, args.criterion, round_to=1)  # exactly the ratio in every group
        corrected = correct_bias(dense, pruned, data["x_calib"])
        plain, fixed = _outputs(pruned, x), _outputs(corrected, x)
        rows.append(
            [
                f"{ratio:.0%} channels ({args.criterion})",
                f"{sqnr_db(reference, plain):.2f}",
                f"{sqnr_db(reference, fixed):.2f}",
                f"{100 * np.mean(plain.argmax(1) == y):.2f}",
                f"{100 * np.mean(fixed.argmax(1) == y):.2f}",
            ]
        )
    print(f"digits CNN, {len(data['x_calib'])} calibration samples, {len(x)} held-out samples (onnxruntime)\n")
    print(table(rows, ["model", "SQNR dB", "SQNR dB corrected", "accuracy %", "accuracy % corrected"]))


if __name__ == "__main__":
    main()
