"""Run a converted model on LiteRT and its ONNX source on onnxruntime, on the same inputs,
and say how far apart they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.converters.harness import OnnxRunner, TFLiteRunner
from edgekit.converters.quant.calibration_data import load_array_file, refuse_non_finite
from edgekit.errors import InputError
from edgekit.files import read_model
from edgekit.runtime.validate import validate_tflite


@dataclass
class OutputComparison:
    name: str
    sqnr_db: float
    cosine: float
    max_abs_error: float
    top1_agreement: float | None


# an output this far from the reference carries little of it: an int8 mel spectrogram at -8.6 dB had
# 97% of its values at the floor, a recogniser's logits at 9.9 dB read 83% of the lines
POOR_SQNR_DB = 10.0


@dataclass
class VerificationReport:
    samples: int
    outputs: list[OutputComparison] = field(default_factory=list)

    @property
    def min_sqnr_db(self) -> float:
        """The lowest output SQNR; NaN when any output's is NaN (min() would skip it by order)."""
        figures = [o.sqnr_db for o in self.outputs]
        return float("nan") if any(np.isnan(f) for f in figures) else min(figures)

    def meets(self, min_sqnr_db: float) -> bool:
        """Whether every output's SQNR is at least ``min_sqnr_db``; a NaN SQNR is no evidence and never meets it."""
        if not np.isfinite(min_sqnr_db):
            raise InputError(f"min_sqnr_db must be a finite number of dB, not {min_sqnr_db}")
        return all(o.sqnr_db >= min_sqnr_db for o in self.outputs)

    def poor_outputs(self, below_db: float = POOR_SQNR_DB) -> list[OutputComparison]:
        """The outputs whose SQNR is under ``below_db`` (or NaN): what a user should hear about."""
        return [o for o in self.outputs if not o.sqnr_db >= below_db]

    def table(self) -> str:
        # whole names: exporters give outputs names alike up to their last characters
        width = max([24, *(len(o.name) for o in self.outputs)])
        lines = [f"{'output':<{width}} {'SQNR dB':>9} {'cosine':>9} {'max |err|':>11} {'top-1':>7}"]
        for o in self.outputs:
            top1 = "-" if o.top1_agreement is None else f"{100 * o.top1_agreement:.1f}%"
            row = f"{o.sqnr_db:>9.2f} {o.cosine:>9.6f} {o.max_abs_error:>11.3g} {top1:>7}"
            lines.append(f"{o.name:<{width}} {row}")
        lines.append(f"({self.samples} samples)")
        return "\n".join(lines)


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    noise = float(np.sum((reference - value.astype(np.float64)) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return 1.0 if denom == 0 and np.array_equal(a, b) else float(a @ b / denom) if denom else 0.0


def load_samples(data, input_names: list[str], what: str = "data") -> dict[str, np.ndarray]:
    """``data``: an array (single input), a dict, a .npy/.npz file, or a folder of .npy files.
    Floating-point samples must be finite: a comparison of NaN outputs says nothing. ``what``
    is what the errors call ``data``."""
    samples = _samples_by_input(data, input_names, what)
    for name, values in samples.items():
        refuse_non_finite(values, f"{what} for input '{name}'")
    return samples


def _samples_by_input(data, input_names: list[str], what: str) -> dict[str, np.ndarray]:
    if isinstance(data, np.ndarray):
        return {input_names[0]: data}
    if isinstance(data, dict):
        return {k: np.asarray(v) for k, v in data.items()}
    path = Path(data)
    if path.is_dir():
        return {input_names[0]: _stacked_folder(path, what)}
    loaded = load_array_file(path, what)
    if isinstance(loaded, np.ndarray):
        return {input_names[0]: loaded}
    keys = list(loaded)
    if all(n in keys for n in input_names):
        return {n: loaded[n] for n in input_names}
    if len(input_names) == 1 and keys:
        return {input_names[0]: loaded[keys[0]]}
    raise InputError(f"{what} {path} has arrays {keys}; name them after the model's inputs {input_names}")


def _stacked_folder(folder: Path, what: str) -> np.ndarray:
    """The .npy samples of ``folder``, one per file, stacked."""
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise InputError(f"{what} {folder} holds no .npy files; pass a .npy/.npz file or a folder of .npy samples")
    arrays = [load_array_file(f, what) for f in files]
    if any(not isinstance(a, np.ndarray) for a in arrays) or len({a.shape for a in arrays}) > 1:
        raise InputError(f"{what} {folder}: the .npy samples must be single arrays of one shape, one sample each")
    return np.stack(arrays)


RANDOM_SAMPLES = 8  # random N(0,1) inputs when no data is given


def verify(
    onnx_model,
    tflite_model,
    *,
    data=None,
    samples: int = RANDOM_SAMPLES,
    seed: int = 0,
    threads: int | None = None,
) -> VerificationReport:
    """Compare ``tflite_model`` (path or bytes) with ``onnx_model`` (path/bytes/ModelProto)."""
    from edgekit.converters.onnx.frontend import input_dtype, read_model

    source = read_model(onnx_model)
    runner = TFLiteRunner(_tflite_bytes(tflite_model), threads)
    reference = _onnx_runner(source.model)
    onnx_inputs = {i.name: i for i in source.model.graph.input}
    if set(runner.input_names) - set(onnx_inputs):
        raise InputError(
            f"the TFLite model's inputs {runner.input_names} are not inputs of the ONNX model; "
            "is this the model it was converted from?"
        )
    dtypes = {name: input_dtype(onnx_inputs[name]) for name in runner.input_names}
    if data is not None:
        feeds_all = load_samples(data, runner.input_names)
    else:
        feeds_all = _random_samples(runner, dtypes, samples, seed)
    count = min(len(v) for v in feeds_all.values())
    count = min(count, samples) if data is None else count
    refs: dict[str, list[np.ndarray]] = {n: [] for n in runner.output_names}
    outs: dict[str, list[np.ndarray]] = {n: [] for n in runner.output_names}
    for i in range(count):
        feed = {name: _sample(runner, name, values, i, dtypes[name]) for name, values in feeds_all.items()}
        ref = reference(feed)
        got = runner(feed)
        for name in runner.output_names:
            refs[name].append(np.asarray(ref[name], np.float32))
            outs[name].append(np.asarray(got[name], np.float32).reshape(np.shape(ref[name])))
    report = VerificationReport(samples=count)
    report.outputs = [_compare(name, np.stack(refs[name]), np.stack(outs[name])) for name in runner.output_names]
    return report


def _tflite_bytes(tflite_model) -> bytes:
    """The .tflite model's bytes (a path or bytes), checked before an interpreter sees them."""
    if isinstance(tflite_model, bytes | bytearray):
        data, where = bytes(tflite_model), "model"
    else:
        where = str(tflite_model)
        data = read_model(tflite_model)
    validate_tflite(data, where)
    return data


def _onnx_runner(model) -> OnnxRunner:
    # onnxruntime's extended optimisations fuse QDQ pairs into int8 kernels whose u8s8 dot
    # products saturate in int16 on x86 CPUs without VNNI (AVX2); basic level keeps the QDQ
    # arithmetic the ONNX spec gives, which is the reference the TFLite model must meet.
    qdq = any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)
    return OnnxRunner(model, optimization="basic" if qdq else None)


def _random_samples(runner: TFLiteRunner, dtypes: dict, samples: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in runner.input_names:
        shape = runner.source_shape(name)
        feeds[name] = rng.standard_normal((samples, *shape)).astype(dtypes[name])
        if shape and shape[0] == 1:  # a 0-d input (a scalar such as a sample rate) has no batch
            feeds[name] = feeds[name][:, 0]
    return feeds


def _fits(sample: np.ndarray, want) -> bool:
    """A sample verification can feed: the input's shape, or the same values flattened."""
    return sample.size == int(np.prod(want))


def check_sample_shapes(samples: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], what: str) -> None:
    """Refuse, before any work, ``samples`` (input name -> [N, ...]) verification could not feed."""
    for name, values in samples.items():
        values, want = np.asarray(values), shapes[name]
        if values.ndim == 0 or len(values) == 0 or not _fits(values[0], want):
            raise InputError(
                f"{what}: the samples for input {name!r} have shape {list(values.shape)}; the model "
                f"takes {list(want)} (pass an array of shape [{', '.join(['N', *map(str, want[1:])])}])"
            )


def _sample(runner: TFLiteRunner, name: str, values, i: int, dtype) -> np.ndarray:
    """Sample ``i`` of input ``name`` in the source model's shape."""
    sample = np.asarray(values[i])
    want = runner.source_shape(name)
    if sample.shape != want:
        if not _fits(sample, want):
            raise InputError(f"sample {i} for input '{name}' has shape {sample.shape}; the model takes {list(want)}")
        sample = sample.reshape(want)
    return sample.astype(dtype)


def _compare(name: str, r: np.ndarray, o: np.ndarray) -> OutputComparison:
    count = len(r)
    top1 = None
    if r.ndim >= 2 and r.shape[-1] > 1 and r[0].size == r.shape[-1]:
        top1 = float(np.mean(r.reshape(count, -1).argmax(-1) == o.reshape(count, -1).argmax(-1)))
    return OutputComparison(name, sqnr_db(r, o), cosine(r, o), float(np.max(np.abs(r - o))), top1)
