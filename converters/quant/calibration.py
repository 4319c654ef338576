"""Activation ranges for quantization: run the float model over calibration samples and feed
every intermediate tensor to an observer.

Observers share one small interface (``observe(array)``, ``range() -> (lo, hi)``) and are
registered by name; the quantizer never branches on the method."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgekit.converters.ir.graph import Graph
from edgekit.converters.quant.calibration_data import check_array, split_samples
from edgekit.errors import CalibrationError
from edgekit.progress import progress

BINS = 2048


class Observer:
    """Collects statistics of one tensor over the calibration run."""

    def observe(self, value: np.ndarray) -> None:
        raise NotImplementedError

    def range(self) -> tuple[float, float]:
        raise NotImplementedError


class MinMaxObserver(Observer):
    def __init__(self) -> None:
        self.lo, self.hi = np.inf, -np.inf

    def observe(self, value: np.ndarray) -> None:
        self.lo = min(self.lo, float(value.min()))
        self.hi = max(self.hi, float(value.max()))

    def range(self) -> tuple[float, float]:
        return self.lo, self.hi


# a tensor whose values all stay below this is zero to every scale the quantizer gives
NEGLIGIBLE = 1e-30


class HistogramObserver(MinMaxObserver):
    """A histogram of |x| over [0, R]; R doubles (merging bin pairs) when a larger value comes."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 0.0
        self.hist = np.zeros(BINS, np.float64)

    def observe(self, value: np.ndarray) -> None:
        super().observe(value)
        magnitude = np.abs(value.ravel())
        if not np.isfinite(magnitude).all():  # a -inf pad before a max pool: no bin holds it
            magnitude = magnitude[np.isfinite(magnitude)]
        top = float(magnitude.max()) if magnitude.size else 0.0
        if top < NEGLIGIBLE:  # zeros to int8 (and float32 has no BINS distinct edges below ~1e-41)
            self.hist[0] += magnitude.size
            return
        if self.limit == 0.0:
            self.limit = top
        while top > self.limit:
            self.hist = np.concatenate([self.hist.reshape(-1, 2).sum(1), np.zeros(BINS // 2)])
            self.limit *= 2
        # np.histogram's bins, read off directly: its edge checks made calibration twice as slow
        index = (magnitude * (BINS / self.limit)).astype(np.intp)
        self.hist += np.bincount(np.minimum(index, BINS - 1, out=index), minlength=BINS)

    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.limit, BINS + 1)

    def threshold(self) -> float:
        raise NotImplementedError

    def range(self) -> tuple[float, float]:
        if self.limit == 0.0:
            return self.lo, self.hi
        t = self.threshold()
        return max(self.lo, -t), min(self.hi, t)


class PercentileObserver(HistogramObserver):
    percentile = 99.99

    def threshold(self) -> float:
        cdf = np.cumsum(self.hist) / max(self.hist.sum(), 1.0)
        index = int(np.searchsorted(cdf, self.percentile / 100.0))
        return float(self.edges()[min(index + 1, BINS)])


class EntropyObserver(HistogramObserver):
    """The clipping threshold whose 128-level quantized distribution is closest (KL) to the
    observed one, the method TensorRT made standard."""

    def threshold(self) -> float:
        hist = self.hist.copy()
        hist[0] = 0  # exact zeros (ReLU's spike) quantize exactly whatever the threshold
        # a one-sided tensor gets all 256 asymmetric levels on [0, T]; a signed one 128 a side
        levels = 256 if self.lo >= 0 else 128
        best, best_kl = BINS, np.inf
        for stop in range(levels, BINS + 1, 16):
            p = hist[:stop].copy()
            p[stop - 1] += hist[stop:].sum()
            if p.sum() == 0:
                continue
            chunks = np.array_split(hist[:stop], levels)
            q = np.concatenate([np.where(c > 0, c.sum() / max(np.count_nonzero(c), 1), 0.0) for c in chunks])
            p, q = p / p.sum(), q / max(q.sum(), 1e-12)
            mask = p > 0
            kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
            if kl < best_kl:
                best, best_kl = stop, kl
        return float(self.edges()[best])


class MSEObserver(HistogramObserver):
    """The clipping threshold minimising the expected squared error of 8-bit quantization."""

    def threshold(self) -> float:
        centers = (self.edges()[:-1] + self.edges()[1:]) / 2
        best, best_err = self.limit, np.inf
        for fraction in np.linspace(0.05, 1.0, 96):
            t = self.limit * fraction
            step = t / 127.5
            clipped = np.minimum(centers, t)
            err = np.sum(self.hist * ((centers - clipped) ** 2 + np.where(centers <= t, step**2 / 12, 0.0)))
            if err < best_err:
                best, best_err = t, err
        return float(best)


OBSERVERS: dict[str, Callable[[], Observer]] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "entropy": EntropyObserver,
    "mse": MSEObserver,
}


def prepare_samples(calibration, graph: Graph) -> list[dict]:
    """Split calibration data into per-invoke feeds for ``graph``'s inputs (source layout, the
    input's dtype), checking shape and values."""
    input_names = graph.metadata["_signature"]["inputs"]
    tensors = dict(zip(input_names, graph.inputs, strict=True))
    if calibration is None:
        raise CalibrationError(
            "int8 quantization needs calibration data: pass --calibration samples.npy (an array in the "
            "model's input layout) or a folder of images"
        )
    if isinstance(calibration, np.ndarray):
        if len(input_names) != 1:
            raise CalibrationError(
                f"the model has inputs {input_names}: pass calibration data as a .npz with those names"
            )
        calibration = {input_names[0]: calibration}
    missing = [n for n in input_names if n not in calibration]
    if missing:
        held = ", ".join(calibration) or "no array"
        raise CalibrationError(
            f"calibration data has no samples for input(s) {missing} (it holds {held}); name the arrays "
            "after the model's inputs, or pass a .npy for a single-input model"
        )
    per_input = {}
    for name in input_names:
        tensor = tensors[name]
        array = check_array(np.asarray(calibration[name]), f"for input '{name}'", dtype=graph.dtype(tensor))
        per_input[name] = split_samples(array, tuple(graph.shape(tensor)), f"calibration samples for '{name}'")
    count = min(len(v) for v in per_input.values())
    return [{n: per_input[n][i] for n in input_names} for i in range(count)]


def calibrate(
    model: bytes,
    samples: list[dict[str, np.ndarray]],
    io_layout: dict[str, list[int]],
    method: str = "minmax",
    channel_means: dict[str, np.ndarray] | None = None,
) -> dict[str, tuple[float, float]]:
    """Run the float model on every sample; returns tensor name -> (lo, hi) of its values.

    Tensors named in ``channel_means`` also get the mean of each channel (last axis) over the
    run, written back into that dict (bias correction uses them)."""
    return calibrate_each(model, samples, io_layout, (method,), channel_means)[method]


def calibrate_each(
    model: bytes,
    samples: list[dict[str, np.ndarray]],
    io_layout: dict[str, list[int]],
    methods: tuple[str, ...],
    channel_means: dict[str, np.ndarray] | None = None,
    taps: dict[str, list[Callable[[np.ndarray], None]]] | None = None,
) -> dict[str, dict[str, tuple[float, float]]]:
    """:func:`calibrate` by each of ``methods`` from one run of the model: method -> ranges.
    ``taps`` (tensor name -> functions) are called with each sample's value of their tensor."""
    from edgekit.converters.harness import open_tflite

    for method in methods:
        if method not in OBSERVERS:
            raise CalibrationError(f"unknown calibration method '{method}'; choose one of {sorted(OBSERVERS)}")
    session = open_tflite(model, threads=2, xnnpack=False, preserve_all_tensors=True)
    inputs = {spec.name: spec for spec in session.inputs}
    tensors = [t for t in session.tensors() if t.dtype == np.float32]
    observers: dict[str, dict[str, Observer]] = {method: {} for method in methods}
    with progress(f"calibrating ({', '.join(methods)})", total=len(samples), unit="samples") as bar:
        for sample in samples:
            feeds = {}
            for name, value in sample.items():
                perm = io_layout.get(name)
                value = np.transpose(value, perm) if perm else value
                feeds[name] = np.ascontiguousarray(value, inputs[name].dtype).reshape(inputs[name].shape)
            session.run(feeds)
            for tensor in tensors:
                value = session.tensor(tensor, raw=True)
                if value is None or value.size == 0:
                    continue
                for method, observed in observers.items():
                    observed.setdefault(tensor.name, OBSERVERS[method]()).observe(value)
                if channel_means is not None and tensor.name in channel_means:
                    means = value.reshape(-1, value.shape[-1]).mean(axis=0) / len(samples)
                    channel_means[tensor.name] = channel_means[tensor.name] + means
                for tap in (taps or {}).get(tensor.name, ()):
                    tap(value)
            bar.update()
    # graph outputs keep their full range: clipping what the user reads costs more than it saves
    output_indices = {spec.index for spec in session.outputs}
    outputs = {t.name for t in session.tensors() if t.index in output_indices}
    return {
        method: {name: (obs.lo, obs.hi) if name in outputs else obs.range() for name, obs in observed.items()}
        for method, observed in observers.items()
    }
