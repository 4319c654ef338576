"""Interpreter backends behind one small interface, registered by name.

``auto`` picks the first installed of: litert (ai_edge_litert), tflite-runtime, and for
``.onnx`` files onnxruntime."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import BackendError
from edgekit.runtime.signature import TensorSignature


@dataclass(frozen=True)
class TensorSpec(TensorSignature):
    """A tensor's signature bound to where the interpreter keeps it."""

    index: int = field(kw_only=True)


class Backend:
    """What a Session needs from an interpreter."""

    name = ""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    threads: int

    def set_input(self, spec: TensorSpec, value: np.ndarray) -> None:
        raise NotImplementedError

    def invoke(self) -> None:
        raise NotImplementedError

    def get_output(self, spec: TensorSpec) -> np.ndarray:
        raise NotImplementedError

    def resize_input(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        raise BackendError(f"the {self.name} backend cannot resize inputs")

    def delegated_partitions(self) -> int | None:
        return None

    def undelegated_ops(self) -> list[tuple[int, str]] | None:
        """(index, op name) of the ops no delegate took; None for a backend without delegates."""
        return None

    def tensors(self) -> list[TensorSpec]:
        """Every tensor of the model, intermediates included."""
        raise BackendError(f"the {self.name} backend cannot list the model's tensors")

    def get_tensor(self, spec: TensorSpec) -> np.ndarray | None:
        """Tensor ``spec``'s value after the last invoke; None when the interpreter kept none."""
        raise BackendError(f"the {self.name} backend cannot read the model's tensors")

    def close(self) -> None:
        pass


# backend name -> (python module it needs, factory importer, file suffixes it runs)
REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "litert": ("ai_edge_litert", "edgekit.runtime.backends.tflite:LiteRTBackend", (".tflite",)),
    "tflite-runtime": ("tflite_runtime", "edgekit.runtime.backends.tflite:TFLiteRuntimeBackend", (".tflite",)),
    "onnxruntime": ("onnxruntime", "edgekit.runtime.backends.onnx:OnnxRuntimeBackend", (".onnx",)),
}


def installed(name: str) -> bool:
    return importlib.util.find_spec(REGISTRY[name][0]) is not None


def available() -> list[str]:
    return [name for name in REGISTRY if installed(name)]


def resolve(name: str, suffix: str) -> Callable[..., Backend]:
    if name == "auto":
        for candidate, (_, _, suffixes) in REGISTRY.items():
            if suffix in suffixes and installed(candidate):
                name = candidate
                break
        else:
            wanted = "ai-edge-litert or tflite-runtime" if suffix == ".tflite" else "onnxruntime"
            raise BackendError(f"no backend installed for {suffix} models: pip install {wanted}")
    if name not in REGISTRY:
        raise BackendError(f"unknown backend '{name}'; choose auto, {', '.join(REGISTRY)}")
    module, target, suffixes = REGISTRY[name]
    if suffix not in suffixes:
        raise BackendError(f"the {name} backend runs {'/'.join(suffixes)} files, not {suffix}")
    if not installed(name):
        raise BackendError(f"backend '{name}' needs the Python package '{module}', which is not installed")
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)
