"""The import rules of docs/ARCHITECTURE.md, checked on the source: the device side (runtime,
devices, the agent and what it uses) never imports the converters or the fleet manager, and the
converters never import the fleet, the agent, packaging or the CLI (the layers above them)."""

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
    bad = [n for n in imports(path) if n.startswith(FORBIDDEN)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} (docs/ARCHITECTURE.md: the device side never does)"


CONVERTERS = sorted((ROOT / "converters").rglob("*.py"))
NOT_FOR_CONVERTERS = ("edgekit.fleet", "edgekit.agent", "edgekit.package", "edgekit.commands")


@pytest.mark.parametrize("path", CONVERTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_converters_import_no_fleet_agent_package_or_cli(path):
    bad = [n for n in imports(path) if n.startswith(NOT_FOR_CONVERTERS)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} (docs/ARCHITECTURE.md: converters never do)"
