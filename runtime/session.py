"""Session: named inputs/outputs, (de)quantization of int8 I/O, validation, profiling hooks."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputError, InvalidModelError, ParameterError, first_line
from edgekit.files import read_model
from edgekit.runtime.backends import Backend, TensorSpec, resolve
from edgekit.runtime.profiling import InvokeRecord
from edgekit.runtime.signature import Signature
from edgekit.runtime.validate import validate_tflite

Hook = Callable[[InvokeRecord], None]

log = logging.getLogger(__name__)


class Session:
    """A loaded model. ``run`` takes float arrays (quantized for int8 inputs with the model's
    own parameters) and returns float outputs, or raw integers with ``raw=True``. Another batch
    size is taken on a fresh interpreter; a model that runs batch 1 only (a batch fixed in a
    RESHAPE) runs a batch sample by sample, and returns what each sample alone gives."""

    def __init__(
        self,
        backend: Backend,
        path: str | None = None,
        rebuild: Callable[[], Backend] | None = None,
        reject_nonfinite: bool | None = None,
    ) -> None:
        self._backend = backend
        self.path = path
        self._hooks: list[Hook] = []
        self._rebuild = rebuild  # a fresh backend of the same model: how a new batch size is taken
        self._batch_fixed = False  # found to run batch 1 only: a batch is then run sample by sample
        # NaN/Inf refused: None = for quantized inputs only (where NaN silently becomes a number)
        self.reject_nonfinite = reject_nonfinite

    # --- description -------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def threads(self) -> int:
        return self._backend.threads

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._backend.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._backend.outputs

    @property
    def signature(self) -> Signature:
        """The model's inputs and outputs as the interpreter runs them (after a resize too), with
        the layouts the file records (or the fallback rule of :mod:`edgekit.runtime.signature`)."""
        return Signature.of(self.inputs, self.outputs)

    def delegated_partitions(self) -> int | None:
        return self._backend.delegated_partitions()

    def undelegated_ops(self) -> list[tuple[int, str]] | None:
        """(index, op name) of the model's ops left to the interpreter's own kernels."""
        return self._backend.undelegated_ops()

    # --- hooks -----------------------------------------------------------------------------
    def add_hook(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def remove_hook(self, hook: Hook) -> None:
        self._hooks.remove(hook)

    # --- running -----------------------------------------------------------------------------
    def _feeds(self, inputs) -> dict[str, np.ndarray]:
        names = [s.name for s in self.inputs]
        if isinstance(inputs, Mapping):
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise InputError(f"no input named {unknown[0]!r}; the model's inputs are {names}")
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InputError(f"input {missing[0]!r} is missing; the model's inputs are {names}")
            return dict(inputs)
        if isinstance(inputs, str | bytes):
            raise InputError(f"inputs must be an array, a list of arrays or a dict, not {type(inputs).__name__}")
        if isinstance(inputs, np.ndarray):
            if len(names) != 1:
                raise InputError(f"the model has {len(names)} inputs {names}: pass a dict name -> array")
            return {names[0]: inputs}
        if isinstance(inputs, Sequence):
            if len(inputs) != len(names):
                raise InputError(f"got {len(inputs)} arrays for {len(names)} inputs {names}")
            return dict(zip(names, inputs, strict=True))
        raise InputError(f"inputs must be an array, a list of arrays or a dict, not {type(inputs).__name__}")

    @staticmethod
    def _fits(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(spec.shape) and all(w in (-1, h) for w, h in zip(spec.shape, shape, strict=True))

    def _batch_shapes(self, feeds: dict) -> dict[str, tuple[int, ...]]:
        """Inputs whose arrays differ from the model's shape in the batch dimension only."""
        wanted = {}
        for spec in self.inputs:
            try:
                shape = tuple(np.shape(feeds[spec.name]))
            except (ValueError, TypeError):
                raise InputError(f"input {spec.name!r} is not an array") from None
            if not self._fits(spec, shape):
                if len(shape) != len(spec.shape) or not self._fits(spec, (spec.shape[0], *shape[1:])):
                    raise InputError(f"input {spec.name!r} has shape {list(shape)}; the model takes {list(spec.shape)}")
                wanted[spec.name] = shape
        return wanted

    def _prepare(self, spec: TensorSpec, value, raw: bool) -> np.ndarray:
        try:
            value = np.asarray(value)
        except (ValueError, TypeError):
            raise InputError(f"input {spec.name!r} is not an array") from None
        if value.dtype == object:
            raise InputError(f"input {spec.name!r} is not a numeric array")
        check = spec.quant is not None and not raw if self.reject_nonfinite is None else self.reject_nonfinite
        if check and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise InputError(
                f"input {spec.name!r} holds NaN or Inf; a quantized model would turn them into ordinary numbers"
            )
        if spec.quant is not None and not raw:
            if not np.issubdtype(value.dtype, np.floating):
                raise InputError(
                    f"input {spec.name!r} is {value.dtype}; pass float values (quantized for you) or raw=True "
                    f"with {spec.dtype} values"
                )
            return quantize(spec, value)
        if value.dtype != spec.dtype:
            if np.issubdtype(spec.dtype, np.floating) and np.issubdtype(value.dtype, np.floating):
                return value.astype(spec.dtype)
            raise InputError(f"input {spec.name!r} is {value.dtype}; the model takes {spec.dtype}")
        return value

    def run(self, inputs, raw: bool = False) -> dict[str, np.ndarray]:
        hooks = self._hooks
        t0 = time.perf_counter() if hooks else 0.0
        feeds = self._feeds(inputs)
        wanted = self._batch_shapes(feeds)
        if wanted:
            batch = self._loop_batch(feeds)
            if batch and self._batch_fixed:
                return self._run_each(feeds, batch, raw)
            try:
                self._reshape(wanted)
            except InputError:
                if not batch:
                    raise
                self._batch_fixed = True  # the model runs batch 1 only: run the samples one by one
                log.info("%s takes batch 1 only: running batches of %d one sample at a time", self.path, batch)
                return self._run_each(feeds, batch, raw)
        for spec in self.inputs:
            self._backend.set_input(spec, self._prepare(spec, feeds[spec.name], raw))
        t1 = time.perf_counter() if hooks else 0.0
        self._backend.invoke()
        t2 = time.perf_counter() if hooks else 0.0
        results = {}
        for spec in self.outputs:
            value = self._backend.get_output(spec)
            results[spec.name] = value if raw else dequantize(spec, value)
        if hooks:
            t3 = time.perf_counter()
            record = InvokeRecord(t0, t2 - t1, t1 - t0, t3 - t2, self.backend, self.threads)
            for hook in hooks:
                hook(record)
        return results

    def tensors(self) -> list[TensorSpec]:
        """Every tensor of the model; a .tflite loaded with ``preserve_all_tensors=True`` keeps the
        intermediates of the last run readable through :meth:`tensor`."""
        return self._backend.tensors()

    def tensor(self, spec: TensorSpec, raw: bool = False) -> np.ndarray | None:
        """Tensor ``spec``'s value after the last run (dequantized unless ``raw``), None when the
        interpreter kept none."""
        value = self._backend.get_tensor(spec)
        return value if value is None or raw else dequantize(spec, value)

    def _loop_batch(self, feeds: dict) -> int:
        """N when every input of the model has batch 1 and every array fed has the same batch N."""
        sizes = {np.shape(feeds[s.name])[0] for s in self.inputs if np.ndim(feeds[s.name])}
        if len(sizes) == 1 and all(s.shape and s.shape[0] == 1 for s in self.inputs):
            return sizes.pop()
        return 0

    def _run_each(self, feeds: dict, batch: int, raw: bool) -> dict[str, np.ndarray]:
        results = [self.run({k: np.asarray(v)[i : i + 1] for k, v in feeds.items()}, raw) for i in range(batch)]
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def invoke_raw(self) -> None:
        """One invoke on the tensors already set (benchmark loops)."""
        self._backend.invoke()

    def resize(self, name: str, shape: tuple[int, ...]) -> None:
        if not any(s.name == name for s in self.inputs):
            raise InputError(f"no input named {name!r}")
        self._reshape({name: tuple(shape)})

    def _reshape(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Take new input shapes on a fresh interpreter, proved by one run on zeros before it
        replaces the current one: a model that cannot run them (a batch fixed in a RESHAPE, a delegate
        that cannot reshape) is refused with one line and the session keeps working as it was."""
        if self._rebuild is None:
            for spec in self.inputs:
                if spec.name in shapes:
                    self._backend.resize_input(spec, shapes[spec.name])
            return
        fresh = self._rebuild()
        try:
            for spec in fresh.inputs:
                if spec.name in shapes:
                    fresh.resize_input(spec, shapes[spec.name])
            for spec in fresh.inputs:
                fresh.set_input(spec, np.zeros(spec.shape, spec.dtype))
            fresh.invoke()
        except Exception as exc:
            fresh.close()
            first = first_line(exc)
            now = {s.name: list(s.shape) for s in self.inputs if s.name in shapes}
            asked = {name: list(shape) for name, shape in shapes.items()}
            raise InputError(
                f"the model cannot run inputs of shape {asked} ({first}); it runs {now}: "
                "feed that batch size, or convert the model with the batch you need"
            ) from None
        self._backend.close()
        self._backend = fresh

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quantize(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """Float ``value`` as quantized tensor ``spec`` takes it (its scale and zero point)."""
    scale, zero_point = spec.quant
    info = np.iinfo(spec.dtype)
    return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(spec.dtype)


def dequantize(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    """The float values quantized tensor ``spec``'s integers stand for (``value`` itself otherwise)."""
    if spec.quant is None:
        return value
    scale, zero_point = spec.quant
    return (value.astype(np.float32) - zero_point) * np.float32(scale)


def default_threads() -> int:
    try:
        from edgekit.devices import detect

        return detect().recommended_threads
    except Exception as exc:
        log.debug("no board profile (%s): threads default to the CPU count", exc)
        return os.cpu_count() or 1


def load(
    path: str | os.PathLike | bytes,
    backend: str = "auto",
    threads: int | None = None,
    delegate: str | None = None,
    xnnpack: bool = True,
    reject_nonfinite: bool | None = None,
    preserve_all_tensors: bool = False,
) -> Session:
    """Load a ``.tflite`` or ``.onnx`` model.

    ``backend``: "auto", "litert", "tflite-runtime" or "onnxruntime". ``threads`` is always
    set on the interpreter (default: the board's recommended count). ``delegate="edgetpu"``
    or "edgetpu:usb", "edgetpu:usb:0", "edgetpu:pci", "edgetpu::1" loads the Edge TPU delegate
    (pycoral's device strings). ``xnnpack=False`` runs TFLite's built-in kernels.
    ``reject_nonfinite``: refuse NaN/Inf inputs (default: for quantized inputs only).
    ``preserve_all_tensors``: keep every intermediate of a .tflite readable (:meth:`Session.tensor`)."""
    if isinstance(path, bytes | bytearray):
        data, where, suffix = bytes(path), "model", ".tflite" if path[4:8] == b"TFL3" else ".onnx"
    else:
        where, suffix = str(path), Path(path).suffix.lower()
        data = read_model(path)
    if suffix == ".tflite":
        validate_tflite(data, where)
    elif suffix != ".onnx":
        raise InvalidModelError(f"{where}: expected a .tflite or .onnx file")
    elif not xnnpack:  # onnxruntime has no XNNPACK delegate here: the option would change nothing
        raise InputError(f"{where}: xnnpack=False is for .tflite models; onnxruntime runs its own kernels")
    device = None
    if delegate is not None:
        kind, _, device = delegate.partition(":")
        if kind != "edgetpu":
            raise InputError(f"unknown delegate '{delegate}'; the runtime knows edgetpu[:usb|:pci|:N]")
    threads = check_threads(threads)
    factory = resolve(backend, suffix)

    def rebuild() -> Backend:
        return factory(data, threads, device, xnnpack, preserve_all_tensors)

    return Session(rebuild(), where, rebuild=rebuild, reject_nonfinite=reject_nonfinite)


def max_threads() -> int:
    """More threads than 4 per core only slow a model down (and 100,000 took every PID)."""
    return 4 * (os.cpu_count() or 1)


def check_threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= max_threads():
        raise ParameterError(
            f"{{threads}} must be a whole number from 1 to {max_threads()} (4 per core)", threads=threads
        )
    return threads
