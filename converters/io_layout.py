"""What convert does with 4-D float inputs and outputs (``convert(io_layout=...)``, ``--io-layout``).

``auto`` makes NHWC those that are NCHW in the ONNX model (an output only when the graph makes it
from NHWC work) and keeps those the ONNX model has NHWC already (tf2onnx, Keras); ``nhwc`` makes
every one NHWC; ``keep`` leaves every one as the ONNX model has it. The layout each one ends up
with is recorded in the .tflite metadata, where :class:`edgekit.runtime.signature.Signature` reads
it (``METADATA``/``LAYOUTS``/``MOVED`` there name the entries). Stdlib only: the CLI reads the
choices when it starts, on a device too.
"""

from __future__ import annotations

from typing import Literal, get_args

IoLayout = Literal["auto", "nhwc", "keep"]
IO_LAYOUTS: tuple[str, ...] = get_args(IoLayout)
