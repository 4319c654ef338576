"""Check a .tflite flatbuffer before an interpreter sees it: a corrupt or truncated file can
crash the process inside the interpreter, so every table and vector the model uses is walked
here (in Python, where a bad offset is an exception, not a segfault)."""

from __future__ import annotations

from edgekit.errors import InvalidModelError


def validate_tflite(data: bytes, where: str = "model") -> None:
    try:
        import tflite
    except ImportError:  # pragma: no cover - the device extra installs it
        _check_header(data, where)
        return
    _check_header(data, where)
    try:
        model = tflite.Model.GetRootAs(data, 0)
        n_buffers = model.BuffersLength()
        for i in range(n_buffers):
            length = model.Buffers(i).DataLength()
            if length > len(data):
                raise ValueError(f"buffer {i} claims {length} bytes")
            if length:
                model.Buffers(i).DataAsNumpy()
        n_codes = model.OperatorCodesLength()
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            n_tensors = sg.TensorsLength()
            for t in range(n_tensors):
                tensor = sg.Tensors(t)
                tensor.ShapeAsNumpy() if tensor.ShapeLength() else None
                (tensor.Name() or b"").decode("utf-8")
                if not 0 <= tensor.Buffer() < max(n_buffers, 1):
                    raise ValueError(f"tensor {t} points at buffer {tensor.Buffer()} of {n_buffers}")
                q = tensor.Quantization()
                if q is not None and q.ScaleLength() != q.ZeroPointLength() and q.ZeroPointLength():
                    raise ValueError(f"tensor {t} has {q.ScaleLength()} scales and {q.ZeroPointLength()} zero points")
            for index_list in (sg.InputsAsNumpy(), sg.OutputsAsNumpy()):
                if not isinstance(index_list, int) and any(not 0 <= i < n_tensors for i in index_list):
                    raise ValueError("subgraph input/output index out of range")
            for o in range(sg.OperatorsLength()):
                op = sg.Operators(o)
                if not 0 <= op.OpcodeIndex() < n_codes:
                    raise ValueError(f"operator {o} uses opcode {op.OpcodeIndex()} of {n_codes}")
                for j in range(op.InputsLength()):
                    if not -1 <= op.Inputs(j) < n_tensors:
                        raise ValueError(f"operator {o} reads tensor {op.Inputs(j)} of {n_tensors}")
                for j in range(op.OutputsLength()):
                    if not 0 <= op.Outputs(j) < n_tensors:
                        raise ValueError(f"operator {o} writes tensor {op.Outputs(j)} of {n_tensors}")
        for k in range(model.SignatureDefsLength()):
            sig = model.SignatureDefs(k)
            for j in range(sig.InputsLength()):
                (sig.Inputs(j).Name() or b"").decode("utf-8")
            for j in range(sig.OutputsLength()):
                (sig.Outputs(j).Name() or b"").decode("utf-8")
    except InvalidModelError:
        raise
    except Exception as exc:  # IndexError, struct.error, ValueError from a damaged file
        raise InvalidModelError(f"{where} is a damaged TFLite file ({exc}); re-export or re-download it") from None


def _check_header(data: bytes, where: str) -> None:
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise InvalidModelError(f"{where} is not a TFLite model (no TFL3 identifier); is it truncated?")
    root = int.from_bytes(data[0:4], "little")
    if root >= len(data):
        raise InvalidModelError(f"{where} is truncated (root table beyond the end of the file)")
