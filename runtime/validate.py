"""Check a .tflite flatbuffer before an interpreter sees it.

A damaged file can crash the process inside the interpreter (tflite-runtime builds the model
without verifying it), so the flatbuffer is verified here, in Python, where a bad offset is an
exception and not a segfault: every table the interpreter reads must have a sane vtable inside
the file, every vector and string must end inside the file, and every index (opcode, tensor,
buffer) must point at something that exists."""

from __future__ import annotations

from edgekit.errors import InvalidModelError

# vtable slots (as the schema's generated code names them) of the offset fields the
# interpreter follows: table -> {slot: element size (0 = table vector, -1 = string, -2 = table)}
OFFSET_FIELDS: dict[str, dict[int, int]] = {
    "Model": {6: 0, 8: 0, 10: -1, 12: 0, 14: 4, 16: 0, 18: 0},
    "SubGraph": {4: 0, 6: 4, 8: 4, 10: 0, 12: -1},
    "Tensor": {4: 4, 10: -1, 12: -2, 18: 4},
    "Operator": {6: 4, 8: 4, 12: -2, 14: 1, 18: 1, 20: 4},
    "Buffer": {4: 1},
    "QuantizationParameters": {4: 4, 6: 4, 8: 4, 10: 8},
    "OperatorCode": {6: -1},
    "Metadata": {4: -1},
    "SignatureDef": {4: 0, 6: 0, 8: -1},
    "TensorMap": {4: -1},
}


class _Checker:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.n:
            raise ValueError(f"offset {pos} outside the file")
        return int.from_bytes(self.data[pos : pos + 4], "little")

    def i32(self, pos: int) -> int:
        value = self.u32(pos)
        return value - (1 << 32) if value >= 1 << 31 else value

    def u16(self, pos: int) -> int:
        if pos < 0 or pos + 2 > self.n:
            raise ValueError(f"offset {pos} outside the file")
        return int.from_bytes(self.data[pos : pos + 2], "little")

    def table(self, pos: int, kind: str) -> None:
        vtable = pos - self.i32(pos)
        vsize, osize = self.u16(vtable), self.u16(vtable + 2)
        if vsize < 4 or vsize % 2 or vtable + vsize > self.n or pos + osize > self.n or osize < 4:
            raise ValueError(f"{kind} table at {pos} has a broken vtable")
        for slot in range(4, vsize, 2):
            field = self.u16(vtable + slot)
            if field and field + 1 > osize:
                raise ValueError(f"{kind} field {slot} lies outside its table")
        for slot, elem in OFFSET_FIELDS.get(kind, {}).items():
            if slot >= vsize or not self.u16(vtable + slot):
                continue
            at = pos + self.u16(vtable + slot)
            target = at + self.u32(at)
            if elem == -2:
                self.table(target, f"{kind} option")  # nested tables: vtable sanity only
                continue
            length = self.u32(target)
            size = 1 if elem == -1 else (4 if elem == 0 else elem)
            if target + 4 + length * size + (1 if elem == -1 else 0) > self.n:
                raise ValueError(f"{kind} field {slot} runs past the end of the file")


def validate_tflite(data: bytes, where: str = "model") -> None:
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise InvalidModelError(f"{where} is not a TFLite model (no TFL3 identifier); is it truncated?")
    try:
        import tflite
    except ImportError:  # pragma: no cover - the device extras install it
        return
    check = _Checker(data)
    try:
        model = tflite.Model.GetRootAs(data, 0)
        check.table(model._tab.Pos, "Model")
        n_buffers, n_codes = _check_model_tables(check, model)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        for s in range(model.SubgraphsLength()):
            _check_subgraph(check, model.Subgraphs(s), n_buffers, n_codes)
        _check_signatures(check, model)
    except Exception as exc:  # ValueError, IndexError, struct.error, UnicodeDecodeError...
        raise InvalidModelError(f"{where} is a damaged TFLite file ({exc}); re-export or re-download it") from None


def _check_model_tables(check: _Checker, model) -> tuple[int, int]:
    """Buffers, operator codes and metadata; returns how many buffers and codes there are."""
    n_buffers = model.BuffersLength()
    for i in range(n_buffers):
        check.table(model.Buffers(i)._tab.Pos, "Buffer")
    n_codes = model.OperatorCodesLength()
    for c in range(n_codes):
        check.table(model.OperatorCodes(c)._tab.Pos, "OperatorCode")
    for k in range(model.MetadataLength()):
        entry = model.Metadata(k)
        check.table(entry._tab.Pos, "Metadata")
        if not 0 <= entry.Buffer() < n_buffers:
            raise ValueError(f"metadata {k} points outside the buffers")
    return n_buffers, n_codes


def _check_subgraph(check: _Checker, sg, n_buffers: int, n_codes: int) -> None:
    check.table(sg._tab.Pos, "SubGraph")
    n_tensors = sg.TensorsLength()
    for t in range(n_tensors):
        tensor = sg.Tensors(t)
        check.table(tensor._tab.Pos, "Tensor")
        (tensor.Name() or b"").decode("utf-8")
        if not 0 <= tensor.Buffer() < max(n_buffers, 1):
            raise ValueError(f"tensor {t} points at buffer {tensor.Buffer()} of {n_buffers}")
        q = tensor.Quantization()
        if q is not None:
            check.table(q._tab.Pos, "QuantizationParameters")
            if q.ZeroPointLength() and q.ScaleLength() != q.ZeroPointLength():
                raise ValueError(f"tensor {t}: {q.ScaleLength()} scales, {q.ZeroPointLength()} zero points")
    for k in range(sg.InputsLength()):
        if not 0 <= sg.Inputs(k) < n_tensors:
            raise ValueError("subgraph input index out of range")
    for k in range(sg.OutputsLength()):
        if not 0 <= sg.Outputs(k) < n_tensors:
            raise ValueError("subgraph output index out of range")
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        check.table(op._tab.Pos, "Operator")
        if not 0 <= op.OpcodeIndex() < n_codes:
            raise ValueError(f"operator {o} uses opcode {op.OpcodeIndex()} of {n_codes}")
        for j in range(op.InputsLength()):
            if not -1 <= op.Inputs(j) < n_tensors:
                raise ValueError(f"operator {o} reads tensor {op.Inputs(j)} of {n_tensors}")
        for j in range(op.OutputsLength()):
            if not 0 <= op.Outputs(j) < n_tensors:
                raise ValueError(f"operator {o} writes tensor {op.Outputs(j)} of {n_tensors}")


def _check_signatures(check: _Checker, model) -> None:
    for k in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(k)
        check.table(sig._tab.Pos, "SignatureDef")
        for maps in (
            (sig.Inputs(j) for j in range(sig.InputsLength())),
            (sig.Outputs(j) for j in range(sig.OutputsLength())),
        ):
            for m in maps:
                check.table(m._tab.Pos, "TensorMap")
                (m.Name() or b"").decode("utf-8")
