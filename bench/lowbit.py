"""Binary, ternary and PACT on a model trained on real data: the 4x wide digits CNN
(scikit-learn's 8x8 digits, held-out split of scripts/train_digits.py).

Weights: fp32, TTQ ternary and BWN binary (fine-tuned from the fp32 model with the STE, first
and last layers int8), each exported as the QDQ model of its int8 computation (``export_lowbit``
with calibration samples), on the converter's own int8 grids and on ``CompactGrids`` (short
scales, coarser biases, one scale per low-bit layer where it can move), and converted to int8
TFLite with those parameters; the dense int8 package on the converter's grids is the
reference the goals are stated against, the compact dense one is shown too; accuracy of the
TFLite model, its int8 output codes against the exported ONNX run on onnxruntime (graph
optimizations off: the ONNX arithmetic as specified), the most distinct int8 values in an
output channel of the low-bit layers, the signed xz package's size against the dense int8 one,
and where the package's bytes go (each part's share measured by blanking it before xz).
Activations: PACT against a fixed ReLU6 clip, both fake-quantized to 4 bits (and 2, where the
clip matters more) and fine-tuned the same way from the same fp32 model, over several seeds in
this run (test accuracy and test cross-entropy, finer than accuracy near 100%); at 8 bits, the int8 TFLite
model with PACT's trained ranges (its output scales checked against alpha / 255) against
calibrated ranges.

    python -m bench.lowbit [--epochs 30] [--finetune 10] [--seeds 0,1,2,3]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table, work_dir  # noqa: E402


def output_scale(onnx_path: Path, output: str = "logits") -> float | None:
    """The int8 scale of a QDQ export's output (None for a float export)."""
    import onnx
    from onnx import numpy_helper

    found = [t for t in onnx.load(str(onnx_path)).graph.initializer if t.name == f"{output}_scale"]
    return float(numpy_helper.to_array(found[0])) if found else None


def package_bytes(model: bytes, package_size: int) -> dict[str, int]:
    """Where a package's xz bytes go: each part's share is what the model's xz size drops by
    when that part's bytes are zeroed; the rest is the flatbuffer's structure (operators,
    names, metadata), the manifest and the tar headers."""
    import lzma

    from edgekit.runtime.weights import constant_tensors

    tensors = constant_tensors(model)
    int8 = [t for t in tensors if t.dtype == "int8"]
    parts = {
        "low-bit weights": [(t.offset, t.nbytes) for t in int8 if t.channel_distinct <= 4],
        "int8 weights": [(t.offset, t.nbytes) for t in int8 if t.channel_distinct > 4],
        "biases": [(t.offset, t.nbytes) for t in tensors if t.dtype == "int32"],
        "channel scales": [t.scale_span for t in tensors if t.scale_span and t.scale_span[1] > 4],
    }
    full = len(lzma.compress(model, preset=6))
    shares = {}
    for part, spans in parts.items():
        blank = bytearray(model)
        for offset, size in spans:
            blank[offset : offset + size] = bytes(size)
        shares[part] = full - len(lzma.compress(bytes(blank), preset=6))
    shares["rest"] = package_size - sum(shares.values())
    return shares


@dataclass
class Bench:
    """The data, the work folder and the signing key every section uses."""

    x_tr: np.ndarray
    x_te: np.ndarray
    y_tr: np.ndarray
    y_te: np.ndarray
    work: Path
    key: Path
    finetune: int

    @property
    def calibration(self) -> np.ndarray:
        return self.x_tr[:200]

    def int8(self, onnx_path: Path, calibration=None) -> dict:
        """Convert to int8 TFLite (a QDQ export needs no calibration); accuracy, int8 output
        codes against onnxruntime, package size and where its bytes go."""
        import onnxruntime

        from edgekit import package
        from edgekit.converters import convert
        from edgekit.converters.quant.int8_rules import distinct_weight_values
        from edgekit.converters.tflite.importer import read_graph
        from edgekit.converters.verification import TFLiteRunner

        out = onnx_path.with_suffix(".tflite")
        result = convert(str(onnx_path), out, quantize="int8", calibration=calibration)
        runner = TFLiteRunner(out.read_bytes(), threads=1)
        tflite_logits = np.stack([runner({"image": v[None]})["logits"][0] for v in self.x_te])
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        onnx_logits = np.concatenate([session.run(None, {"image": v[None]})[0] for v in self.x_te])
        scale = output_scale(onnx_path) or float(np.abs(onnx_logits).max()) / 127
        steps = np.abs(np.round(tflite_logits / scale) - np.round(onnx_logits / scale))
        pkg = package.build(out, self.work / f"{out.stem}.tar.xz", name=out.stem, version="1", signing_key=self.key)
        return {
            "acc": float(np.mean(tflite_logits.argmax(1) == self.y_te)),
            "codes_equal": float(np.mean((steps == 0).all(1))),
            "max_steps": int(steps.max()),
            "values": distinct_weight_values(read_graph(out.read_bytes())),
            "package": pkg.size,
            "report": pkg.manifest["compression"],
            "bytes": package_bytes(out.read_bytes(), pkg.size),
            "partitions": result.partitions,
            "tflite": out,
        }


def weights_section(bench: Bench, dense) -> dict:
    """fp32, TTQ (per-channel and per-layer scales) and BWN, each as int8 TFLite; prints the
    table and where the package bytes go; returns the dense int8 model's figures."""
    from edgekit.converters.torch import accuracy
    from edgekit.converters.torch_lowbit import deployable, export_lowbit, lowbit_weights, train_lowbit

    models = {"fp32 (dense int8)": dense}
    variants = {
        "TTQ ternary": ("ttq", {}),
        "TTQ ternary, layer scales": ("ttq", {"per_channel_scales": False}),
        "BWN binary": ("binary", {}),
    }
    for label, (method, options) in variants.items():
        lowbit = lowbit_weights(dense, method, **options)
        models[label] = train_lowbit(lowbit, bench.x_tr, bench.y_tr, bench.finetune, lr=1e-3, seed=0)
    found = {}
    for k, (label, model) in enumerate(models.items()):
        for compact in (False, True):  # the converter's own int8 grids, then CompactGrids
            path = bench.work / f"model{k}{'c' * compact}.onnx"
            export_lowbit(model, _example(), str(path), calibration=bench.calibration, compact=compact)
            found[label, compact] = bench.int8(path)
    fp32_acc = accuracy(dense, bench.x_te, bench.y_te)
    dense_sizes = [found["fp32 (dense int8)", compact]["package"] for compact in (False, True)]
    rows, byte_rows = [], []
    for (name, compact), f in found.items():
        label = f"{name}, {'compact grids' if compact else 'converter grids'}"
        inner = list(f["values"].values())[1:-1]  # the first and last layers stay int8
        torch_acc = accuracy(deployable(models[name]), bench.x_te, bench.y_te)
        rows.append(
            [label, f"{100 * torch_acc:.2f}", f"{100 * f['acc']:.2f}", f"{100 * (f['acc'] - fp32_acc):+.2f}"]
            + [f"{min(inner)}-{max(inner)}", f"{100 * f['codes_equal']:.1f}%", f["max_steps"], f["partitions"]]
            + [f"{f['package']:,}", *[f"{f['package'] / size:.1%}" for size in dense_sizes]]
        )
        low = f["report"].get("low_bit_weights", {})
        byte_rows.append([label, *[f"{v:,}" for v in f["bytes"].values()], f"{low.get('packed_bytes', '-')}"])
    header = ["weights, QDQ export", "torch acc %", "int8 TFLite acc %", "vs fp32 pt", "values/channel (inner layers)"]
    header += ["int8 output = ORT (samples)", "max steps", "partitions", "package xz bytes", "vs dense int8"]
    print(table(rows, header + ["vs dense int8, compact grids"]))
    print("\nwhere the package's xz bytes go (each part blanked before xz; rest = structure, manifest, tar)")
    parts = list(found["fp32 (dense int8)", False]["bytes"])
    print(table(byte_rows, ["weights", *parts, "low-bit packed bytes (report)"]))
    return found["fp32 (dense int8)", False]


def _test_loss(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)))


def pact_section(bench: Bench, dense, seeds: list[int], bits: int) -> None:
    """PACT against the fixed ReLU6 clip, activations fake-quantized to ``bits``, per seed."""
    from edgekit.converters.torch import accuracy
    from edgekit.converters.torch_lowbit import pact_activations, pact_alphas, train_lowbit

    rows, wins, found = [], 0, {"ReLU6 clip": [], "PACT": []}
    for seed in seeds:
        for label, learn in (("ReLU6 clip", False), ("PACT", True)):
            model = pact_activations(dense, alpha=6.0, bits=bits, learn_alpha=learn)
            train_lowbit(
                model, bench.x_tr, bench.y_tr, bench.finetune, lr=1e-3, seed=seed, alpha_decay=1e-3, alpha_lr=0.05
            )
            found[label].append((accuracy(model, bench.x_te, bench.y_te), _test_loss(model, bench.x_te, bench.y_te)))
        (clip_acc, clip_loss), (pact_acc, pact_loss) = found["ReLU6 clip"][-1], found["PACT"][-1]
        wins += pact_acc > clip_acc
        shown = ", ".join(f"{a:.2f}" for a in pact_alphas(model).values())
        rows.append([seed, f"{100 * clip_acc:.2f}", f"{clip_loss:.4f}", f"{100 * pact_acc:.2f}", f"{pact_loss:.4f}"])
        rows[-1].append(shown)
    means = {label: np.mean(values, axis=0) for label, values in found.items()}
    clip, pact = means["ReLU6 clip"], means["PACT"]
    rows.append(["mean", f"{100 * clip[0]:.2f}", f"{clip[1]:.4f}", f"{100 * pact[0]:.2f}", f"{pact[1]:.4f}", ""])
    print(f"\n{bits}-bit activations (torch, fake-quantized), fine-tuned {bench.finetune} epochs per seed;", end=" ")
    print(f"PACT ahead in {wins}/{len(seeds)} (accuracy)")
    header = ["seed", "ReLU6 clip acc %", "ReLU6 clip test loss", "PACT acc %", "PACT test loss", "PACT alphas"]
    print(table(rows, header))


def eight_bit_section(bench: Bench, dense, dense_int8: dict, seed: int) -> None:
    """At 8 bits: the int8 model with PACT's trained ranges against calibrated ranges."""
    import torch
    from torch import nn

    from edgekit.converters.quant.quantizer import WEIGHTED
    from edgekit.converters.tflite.importer import read_graph
    from edgekit.converters.torch import accuracy, export_onnx
    from edgekit.converters.torch_lowbit import (
        PACT,
        deployable,
        export_lowbit,
        pact_activations,
        pact_alphas,
        train_lowbit,
    )

    pact8 = pact_activations(dense, alpha=6.0, bits=8)
    train_lowbit(pact8, bench.x_tr, bench.y_tr, bench.finetune, lr=1e-3, seed=seed, alpha_decay=1e-3, alpha_lr=0.05)
    export_lowbit(pact8, _example(), str(bench.work / "pact8.onnx"), calibration=bench.calibration, compact=False)

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
    export_onnx(calibrated, _example(), str(bench.work / "pact8_calibrated.onnx"), input_name="image")
    trained = bench.int8(bench.work / "pact8.onnx")
    eight = [
        ("fp32 ReLU, ranges from calibration samples", dense_int8),
        ("PACT 8-bit, calibrated ranges", bench.int8(bench.work / "pact8_calibrated.onnx", bench.calibration)),
        ("PACT 8-bit, trained alpha ranges", trained),
    ]
    print(f"\n8-bit activations, int8 TFLite (PACT torch acc {100 * accuracy(pact8, bench.x_te, bench.y_te):.2f}%)")
    rows = [[label, f"{100 * f['acc']:.2f}", f"{100 * f['codes_equal']:.1f}%", f["partitions"]] for label, f in eight]
    print(table(rows, ["model", "int8 TFLite acc %", "int8 output = ORT (samples)", "partitions"]))
    graph = read_graph(trained["tflite"].read_bytes())
    scales = [float(graph.tensors[n.outputs[0]].quant.scale[0]) for n in graph.nodes if n.op in WEIGHTED][:-1]
    alphas = list(pact_alphas(pact8).values())
    print("PACT alpha / 255 vs the int8 output scale of its layer:", end=" ")
    print(", ".join(f"{a / 255:.6g}/{s:.6g}" for a, s in zip(alphas, scales, strict=True)))


def _example():
    import torch

    return torch.zeros(1, 1, 8, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="fp32 training")
    parser.add_argument("--finetune", type=int, default=10, help="low-bit and PACT fine-tuning")
    parser.add_argument("--seeds", default="0,1,2,3", help="seeds of the PACT / ReLU6 comparison")
    parser.add_argument("--activation-bits", default="4,2", help="PACT / ReLU6 comparisons to run")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(v) for v in args.seeds.split(",")]

    import torch

    from edgekit import package
    from edgekit.converters.torch import accuracy, train
    from scripts.train_digits import DigitsCNN, load_split

    torch.set_num_threads(args.threads)
    work = work_dir("edgekit-lowbit-")
    package.generate_key(work / "fleet.key", work / "fleet.pub")
    bench = Bench(*load_split(), work=work, key=work / "fleet.key", finetune=args.finetune)
    start = time.perf_counter()
    torch.manual_seed(0)
    dense = train(DigitsCNN(args.width), bench.x_tr, bench.y_tr, args.epochs, seed=0)
    print(f"digits CNN width {args.width}, fp32 {args.epochs} epochs, low-bit fine-tuning {args.finetune} epochs\n")
    dense_int8 = weights_section(bench, dense)
    for bits in (int(v) for v in args.activation_bits.split(",")):
        pact_section(bench, dense, seeds, bits)
    eight_bit_section(bench, dense, dense_int8, seeds[0])
    fp32_acc = accuracy(dense, bench.x_te, bench.y_te)
    print(f"\nfp32 torch accuracy {100 * fp32_acc:.2f}%; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
