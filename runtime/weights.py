"""The constant tensors of a .tflite model, read from its flatbuffer with the ``tflite`` schema
package (device side: no converter): where their bytes lie in the file and how many distinct
values each holds, so a package can say what binary and ternary weights (2 or 3 values in an
int8 tensor) leave for its compression to take."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TFLITE_MAGIC = b"TFL3"
# tflite.TensorType names that numpy reads as they are
_NUMPY_TYPES = ("FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "INT16", "INT8", "FLOAT64", "UINT32", "UINT16")


@dataclass(frozen=True)
class ConstantTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # first byte of its values in the file
    nbytes: int
    distinct: int
    channel_distinct: int  # the most distinct values one channel (quantized dimension) holds
    scale_span: tuple[int, int] | None  # (offset, bytes) of its quantization scales in the file

    @property
    def values(self) -> int:
        return self.nbytes // np.dtype(self.dtype).itemsize

    @property
    def bits(self) -> int:
        """Bits a value needs when each channel's distinct values are numbered."""
        return max(1, math.ceil(math.log2(max(self.channel_distinct, 1))))


def _vector_span(table, field: int, item_bytes: int) -> tuple[int, int] | None:
    offset = table.Offset(field)
    if not offset:
        return None
    return table.Vector(offset), table.VectorLen(offset) * item_bytes


def _channel_distinct(values: np.ndarray, shape: tuple[int, ...], quant) -> int:
    per_channel = quant is not None and quant.ScaleLength() > 1 and len(shape) > quant.QuantizedDimension()
    if not per_channel or int(np.prod(shape)) != values.size:
        return len(np.unique(values))
    axis = quant.QuantizedDimension()
    channels = np.moveaxis(values.reshape(shape), axis, 0).reshape(shape[axis], -1)
    return max(len(np.unique(c)) for c in channels)


def constant_tensors(data: bytes) -> list[ConstantTensor]:
    """Every tensor of the first subgraph whose values the file holds; empty for a file that is
    not a .tflite model."""
    import tflite

    if data[4:8] != TFLITE_MAGIC:
        return []
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    type_names = {getattr(tflite.TensorType, n): n.lower() for n in _NUMPY_TYPES if hasattr(tflite.TensorType, n)}
    found = []
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        span = _vector_span(model.Buffers(tensor.Buffer())._tab, 4, 1)
        dtype = type_names.get(tensor.Type())
        if span is None or span[1] == 0 or dtype is None:
            continue
        offset, nbytes = span
        values = np.frombuffer(data, np.dtype(dtype), nbytes // np.dtype(dtype).itemsize, offset)
        quant = tensor.Quantization()
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        found.append(
            ConstantTensor(
                name=tensor.Name().decode(),
                dtype=dtype,
                shape=shape,
                offset=offset,
                nbytes=nbytes,
                distinct=len(np.unique(values)),
                channel_distinct=_channel_distinct(values, shape, quant),
                scale_span=_vector_span(quant._tab, 8, 4) if quant is not None else None,
            )
        )
    return found


__all__ = ["ConstantTensor", "TFLITE_MAGIC", "constant_tensors"]
