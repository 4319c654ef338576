"""LiteRT (ai_edge_litert) and tflite-runtime: the same interpreter API from two packages."""

from __future__ import annotations

import ctypes
import importlib
import re

import numpy as np

from edgekit.errors import BackendError, InputError, InvalidModelError, mapped
from edgekit.runtime.backends import Backend, TensorSpec
from edgekit.runtime.native_log import to_logging
from edgekit.runtime.signature import LayoutRecord

EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_DEVICE = re.compile(r"^(usb|pci)?(:\d+)?$")


def _spec(detail: dict, name: str) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    quant = (float(scale), int(zero_point)) if scale else None
    shape = tuple(int(d) for d in detail["shape"])
    return TensorSpec(name, shape, np.dtype(detail["dtype"]), quant=quant, index=detail["index"])


class _InterpreterBackend(Backend):
    module = ""

    def __init__(
        self,
        model: bytes,
        threads: int,
        delegate: str | None = None,
        xnnpack: bool = True,
        preserve_all_tensors: bool = False,
    ) -> None:
        api = importlib.import_module(self.module)
        kwargs = {"model_content": model, "num_threads": threads}
        if preserve_all_tensors:  # intermediates stay readable after invoke (per-layer work)
            kwargs["experimental_preserve_all_tensors"] = True
        delegates = []
        if delegate is not None:
            delegates.append(load_edgetpu(api, delegate))
            kwargs["experimental_delegates"] = delegates
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with mapped(InvalidModelError, f"{self.name} cannot load the model"):  # the interpreter's refusal
            with to_logging():  # the XNNPACK delegate announces itself on the first allocation
                self.interpreter = api.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
            self.threads = threads
            self._layouts = LayoutRecord.of_model(".tflite", model)
            self._refresh()

    def _refresh(self) -> None:
        names_in: dict[int, str] = {}
        names_out: dict[int, str] = {}
        signatures = self.interpreter.get_signature_list()
        if "serving_default" in signatures:
            runner = self.interpreter.get_signature_runner("serving_default")
            names_in = {d["index"]: n for n, d in runner.get_input_details().items()}
            names_out = {d["index"]: n for n, d in runner.get_output_details().items()}
            del runner  # it keeps views of the interpreter's buffers
        label = self._layouts.label
        self.inputs = [
            label(_spec(d, names_in.get(d["index"], d["name"]))) for d in self.interpreter.get_input_details()
        ]
        self.outputs = [
            label(_spec(d, names_out.get(d["index"], d["name"]))) for d in self.interpreter.get_output_details()
        ]

    def set_input(self, spec: TensorSpec, value: np.ndarray) -> None:
        self.interpreter.set_tensor(spec.index, value)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_output(self, spec: TensorSpec) -> np.ndarray:
        return self.interpreter.get_tensor(spec.index)

    def resize_input(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        self.interpreter.resize_tensor_input(spec.index, list(shape), strict=False)
        self.interpreter.allocate_tensors()
        self._refresh()

    def delegated_partitions(self) -> int:
        return sum(1 for op in self.interpreter._get_ops_details() if op["op_name"] == "DELEGATE")

    def undelegated_ops(self) -> list[tuple[int, str]]:
        """The model's ops no delegate took, as (index, op name), read off the loaded interpreter:
        a DELEGATE node stands for the ops its outputs come from, back to its inputs; the rest
        run on TFLite's own kernels, and each is where a partition ends."""
        details = self.interpreter._get_ops_details()
        own = {d["index"]: d for d in details if d["op_name"] != "DELEGATE"}
        producer = {int(t): index for index, d in own.items() for t in d["outputs"]}
        taken: set[int] = set()
        for delegate in (d for d in details if d["op_name"] == "DELEGATE"):
            boundary = {int(t) for t in delegate["inputs"]}
            pending = [int(t) for t in delegate["outputs"]]
            while pending:
                index = producer.get(tensor := pending.pop())
                if tensor in boundary or index is None or index in taken:
                    continue
                taken.add(index)
                pending += [int(t) for t in own[index]["inputs"] if t >= 0]
        return [(index, d["op_name"]) for index, d in sorted(own.items()) if index not in taken]

    def tensors(self) -> list[TensorSpec]:
        return [_spec(d, d["name"]) for d in self.interpreter.get_tensor_details()]

    def get_tensor(self, spec: TensorSpec) -> np.ndarray | None:
        try:
            return self.interpreter.get_tensor(spec.index)
        except ValueError:  # an intermediate the interpreter did not keep, or one without data
            return None

    def close(self) -> None:
        self.interpreter = None


def load_edgetpu(api, device: str):
    """The Edge TPU delegate; ``device`` as pycoral's make_interpreter takes it: "usb",
    "usb:N", "pci", "pci:N", ":N" (the Nth Edge TPU of any kind), or "" for the first."""
    if not EDGETPU_DEVICE.match(device):
        raise InputError(f"Edge TPU device '{device}' is not one of usb, usb:N, pci, pci:N, :N")
    options = {"device": device} if device else {}
    try:  # look for the library first: a failed load_delegate leaves a noisy half-made object
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError:
        raise BackendError(
            f"the Edge TPU library {EDGETPU_LIBRARY} is not installed: install libedgetpu1-std from Coral's "
            "Debian repository"
        ) from None
    try:
        return api.load_delegate(EDGETPU_LIBRARY, options)
    except (ValueError, OSError) as exc:
        text = str(exc)
        if "not found" in text.lower() or "cannot open" in text.lower() or "no such file" in text.lower():
            raise BackendError(
                f"the Edge TPU library {EDGETPU_LIBRARY} is not installed: install libedgetpu1-std from Coral's "
                "Debian repository"
            ) from None
        raise BackendError(f"no Edge TPU found for device '{device or 'any'}': is it plugged in? ({text})") from None


class LiteRTBackend(_InterpreterBackend):
    name = "litert"
    module = "ai_edge_litert.interpreter"


class TFLiteRuntimeBackend(_InterpreterBackend):
    name = "tflite-runtime"
    module = "tflite_runtime.interpreter"
