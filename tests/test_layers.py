"""The import rules of docs/ARCHITECTURE.md, checked on the source: the device side (runtime,
devices, the agent and what it uses) never imports the converters or the fleet manager, except
the flatbuffer layer (``converters/tflite`` and the IR it reads, which import only numpy,
flatbuffers and tflite); the converters never import the fleet, the agent, packaging or the CLI
(the layers above them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEVICE_SIDE = [
    *sorted((ROOT / "runtime").rglob("*.py")),
    *sorted((ROOT / "devices").rglob("*.py")),
    *sorted((ROOT / "edgekit" / "agent").rglob("*.py")),
    *(ROOT / "edgekit" / name for name in ("signing.py", "keys.py", "package.py", "protocol.py", "mqtt.py")),
]
FORBIDDEN = ("edgekit.converters", "edgekit.fleet")
FLATBUFFER_LAYER = ("edgekit.converters.tflite", "edgekit.converters.ir")


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", DEVICE_SIDE, ids=lambda p: str(p.relative_to(ROOT)))
def test_device_side_imports_no_server_code(path):
    bad = [n for n in imports(path) if n.startswith(FORBIDDEN) and not n.startswith(FLATBUFFER_LAYER)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} (docs/ARCHITECTURE.md: the device side never does)"


FLATBUFFER_FILES = sorted((ROOT / "converters" / "tflite").rglob("*.py")) + sorted(
    (ROOT / "converters" / "ir").rglob("*.py")
)
FLATBUFFER_DEPENDENCIES = ("numpy", "flatbuffers", "tflite", "edgekit.errors", "edgekit.files", *FLATBUFFER_LAYER)


@pytest.mark.parametrize("path", FLATBUFFER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_flatbuffer_layer_imports_only_what_a_device_has(path):
    stdlib = __import__("sys").stdlib_module_names
    bad = [
        n
        for n in imports(path)
        if n.split(".")[0] not in stdlib and n != "__future__" and not n.startswith(FLATBUFFER_DEPENDENCIES)
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the device side loads this layer (docs/ARCHITECTURE.md)"


CONVERTERS = sorted((ROOT / "converters").rglob("*.py"))
NOT_FOR_CONVERTERS = ("edgekit.fleet", "edgekit.agent", "edgekit.package", "edgekit.commands")


@pytest.mark.parametrize("path", CONVERTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_converters_import_no_fleet_agent_package_or_cli(path):
    bad = [n for n in imports(path) if n.startswith(NOT_FOR_CONVERTERS)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} (docs/ARCHITECTURE.md: converters never do)"
