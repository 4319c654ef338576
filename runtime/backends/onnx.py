"""onnxruntime for .onnx models on the device."""

from __future__ import annotations

import dataclasses

import numpy as np

from edgekit.errors import BackendError, mapped
from edgekit.runtime.backends import Backend, TensorSpec
from edgekit.runtime.signature import LayoutRecord

_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
    "tensor(double)": np.float64,
}


# onnxruntime's graph optimization levels by short name
OPTIMIZATION_LEVELS = {
    "none": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model: bytes,
        threads: int,
        delegate: str | None = None,
        xnnpack: bool = True,
        preserve_all_tensors: bool = False,
        optimization: str | None = None,
    ) -> None:
        """``threads`` 0: onnxruntime's own choice. ``optimization``: a key of OPTIMIZATION_LEVELS
        (None: onnxruntime's default, every optimization)."""
        import onnxruntime as ort

        if delegate is not None:
            raise BackendError("the onnxruntime backend takes no delegate; the Edge TPU runs .tflite models")
        if preserve_all_tensors:
            raise BackendError("the onnxruntime backend keeps no intermediates: make them outputs of the model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if optimization is not None:
            if optimization not in OPTIMIZATION_LEVELS:
                raise BackendError(f"unknown optimization '{optimization}'; choose one of {list(OPTIMIZATION_LEVELS)}")
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
        self.profiling = False
        with mapped(BackendError, "onnxruntime cannot load the model"):
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.threads = threads
        self.inputs = [self._spec(i, k) for k, i in enumerate(self.session.get_inputs())]
        self.outputs = [self._spec(o, k) for k, o in enumerate(self.session.get_outputs())]
        self._feeds: dict[str, np.ndarray] = {}
        self._results: list[np.ndarray] = []

    @staticmethod
    def _spec(arg, index: int) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        spec = TensorSpec(arg.name, shape, np.dtype(_TYPES.get(arg.type, np.float32)), index=index)
        return LayoutRecord(".onnx").label(spec)

    def set_input(self, spec: TensorSpec, value: np.ndarray) -> None:
        self._feeds[spec.name] = value

    def invoke(self) -> None:
        self._results = self.session.run(None, self._feeds)

    def get_output(self, spec: TensorSpec) -> np.ndarray:
        return self._results[spec.index]

    def resize_input(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        # onnxruntime takes any shape its graph allows; the spec records the one asked for, so a run
        # on it shows whether the graph allows it
        self.inputs[spec.index] = dataclasses.replace(spec, shape=tuple(shape))
