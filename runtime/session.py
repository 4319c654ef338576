"""Session: named inputs/outputs, (de)quantization of int8 I/O, validation, profiling hooks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputError, InvalidModelError
from edgekit.runtime.backends import Backend, TensorSpec, resolve
from edgekit.runtime.profiling import InvokeRecord
from edgekit.runtime.validate import validate_tflite

Hook = Callable[[InvokeRecord], None]


class Session:
    """A loaded model. ``run`` takes float arrays (quantized for int8 inputs with the model's
    own parameters) and returns float outputs, or raw integers with ``raw=True``."""

    def __init__(self, backend: Backend, path: str | None = None) -> None:
        self._backend = backend
        self.path = path
        self._hooks: list[Hook] = []

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

    def delegated_partitions(self) -> int | None:
        return self._backend.delegated_partitions()

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
        if isinstance(inputs, np.ndarray):
            if len(names) != 1:
                raise InputError(f"the model has {len(names)} inputs {names}: pass a dict name -> array")
            return {names[0]: inputs}
        if isinstance(inputs, Sequence):
            if len(inputs) != len(names):
                raise InputError(f"got {len(inputs)} arrays for {len(names)} inputs {names}")
            return dict(zip(names, inputs, strict=True))
        raise InputError(f"inputs must be an array, a list of arrays or a dict, not {type(inputs).__name__}")

    def _prepare(self, spec: TensorSpec, value, raw: bool) -> np.ndarray:
        value = np.asarray(value)
        shape = tuple(value.shape)
        if len(shape) != len(spec.shape) or any(w not in (-1, h) for w, h in zip(spec.shape, shape, strict=False)):
            if len(shape) == len(spec.shape) and shape[1:] == spec.shape[1:]:
                self.resize(spec.name, shape)  # a different batch size
                spec = next(s for s in self.inputs if s.name == spec.name)
            else:
                raise InputError(f"input {spec.name!r} has shape {list(shape)}; the model takes {list(spec.shape)}")
        if spec.quant is not None and not raw:
            if not np.issubdtype(value.dtype, np.floating):
                raise InputError(
                    f"input {spec.name!r} is {value.dtype}; pass float values (quantized for you) or raw=True "
                    f"with {spec.dtype} values"
                )
            scale, zero_point = spec.quant
            info = np.iinfo(spec.dtype)
            return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(spec.dtype)
        if value.dtype != spec.dtype:
            if np.issubdtype(spec.dtype, np.floating) and np.issubdtype(value.dtype, np.floating):
                return value.astype(spec.dtype)
            raise InputError(f"input {spec.name!r} is {value.dtype}; the model takes {spec.dtype}")
        return value

    def run(self, inputs, raw: bool = False) -> dict[str, np.ndarray]:
        hooks = self._hooks
        t0 = time.perf_counter() if hooks else 0.0
        feeds = self._feeds(inputs)
        for spec in self.inputs:
            self._backend.set_input(spec, self._prepare(spec, feeds[spec.name], raw))
        t1 = time.perf_counter() if hooks else 0.0
        self._backend.invoke()
        t2 = time.perf_counter() if hooks else 0.0
        results = {}
        for spec in self.outputs:
            value = self._backend.get_output(spec)
            if spec.quant is not None and not raw:
                scale, zero_point = spec.quant
                value = (value.astype(np.float32) - zero_point) * np.float32(scale)
            results[spec.name] = value
        if hooks:
            t3 = time.perf_counter()
            record = InvokeRecord(t0, t2 - t1, t1 - t0, t3 - t2, self.backend, self.threads)
            for hook in hooks:
                hook(record)
        return results

    def invoke_raw(self) -> None:
        """One invoke on the tensors already set (benchmark loops)."""
        self._backend.invoke()

    def resize(self, name: str, shape: tuple[int, ...]) -> None:
        spec = next((s for s in self.inputs if s.name == name), None)
        if spec is None:
            raise InputError(f"no input named {name!r}")
        self._backend.resize_input(spec, tuple(shape))

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_threads() -> int:
    try:
        from edgekit.devices import detect

        return detect().recommended_threads
    except Exception:
        return os.cpu_count() or 1


def load(
    path: str | os.PathLike | bytes,
    backend: str = "auto",
    threads: int | None = None,
    delegate: str | None = None,
    xnnpack: bool = True,
) -> Session:
    """Load a ``.tflite`` or ``.onnx`` model.

    ``backend``: "auto", "litert", "tflite-runtime" or "onnxruntime". ``threads`` is always
    set on the interpreter (default: the board's recommended count). ``delegate="edgetpu"``
    or "edgetpu:usb", "edgetpu:usb:0", "edgetpu:pci", "edgetpu::1" loads the Edge TPU delegate
    (pycoral's device strings). ``xnnpack=False`` runs TFLite's built-in kernels."""
    if isinstance(path, bytes | bytearray):
        data, where, suffix = bytes(path), "model", ".tflite" if path[4:8] == b"TFL3" else ".onnx"
    else:
        where, suffix = str(path), Path(path).suffix.lower()
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidModelError(f"{path}: {exc.strerror}") from None
    if suffix == ".tflite":
        validate_tflite(data, where)
    elif suffix != ".onnx":
        raise InvalidModelError(f"{where}: expected a .tflite or .onnx file")
    device = None
    if delegate is not None:
        kind, _, device = delegate.partition(":")
        if kind != "edgetpu":
            raise InputError(f"unknown delegate '{delegate}'; the runtime knows edgetpu[:usb|:pci|:N]")
    factory = resolve(backend, suffix)
    return Session(factory(data, threads or default_threads(), device, xnnpack), where)
