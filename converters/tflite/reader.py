"""Read what edgekit needs back out of a .tflite flatbuffer (metadata, ops, buffers)."""

from __future__ import annotations

import json
from pathlib import Path

import tflite

from edgekit.errors import InvalidModelError
from edgekit.files import read_model


def load_model(data: bytes | str | Path) -> tuple[tflite.Model, bytes]:
    where = "model"
    if not isinstance(data, bytes | bytearray):
        where, data = str(data), read_model(data)
    if not data:
        raise InvalidModelError(f"{where} is an empty file; give the model's .tflite file")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InvalidModelError(f"{where} is not a TFLite flatbuffer (the TFL3 identifier is missing)")
    return tflite.Model.GetRootAs(data, 0), bytes(data)


def metadata(data: bytes | str | Path) -> dict[str, object]:
    """The JSON metadata entries edgekit wrote (name -> value); other entries are skipped."""
    model, _ = load_model(data)
    result: dict[str, object] = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = entry.Name().decode()
        raw = model.Buffers(entry.Buffer()).DataAsNumpy()
        try:
            result[name] = json.loads(bytes(raw).decode())
        except (ValueError, UnicodeDecodeError, TypeError):
            continue
    return result


def operator_names(data: bytes | str | Path) -> list[str]:
    """Builtin op names of the main subgraph, in execution order."""
    model, _ = load_model(data)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    sg = model.Subgraphs(0)
    result = []
    for i in range(sg.OperatorsLength()):
        code = codes[sg.Operators(i).OpcodeIndex()]
        result.append(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    return result
