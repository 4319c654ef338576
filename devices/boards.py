"""Board profiles (data files in boards/) and detection of the board we run on."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path


@dataclass(frozen=True)
class BoardProfile:
    id: str
    name: str
    cpu: str
    cores: int
    arch: str
    memory_gb: list[float] = field(default_factory=list)
    accelerators: list[str] = field(default_factory=list)
    power_sensors: list[str] = field(default_factory=list)
    idle_watts: float = 0.0
    max_watts: float = 0.0
    recommended_threads: int = 0
    match: list[str] = field(default_factory=list)


def profiles() -> dict[str, BoardProfile]:
    result = {}
    for entry in (files("edgekit.devices") / "boards").iterdir():
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text())
            result[data["id"]] = BoardProfile(**data)
    return result


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\x00", b"").decode(errors="replace").strip()
    except OSError:
        return ""


def detect(root: str | os.PathLike = "/") -> BoardProfile:
    """The profile of this machine: the device-tree model string (``/proc/device-tree/model``,
    then ``/proc/cpuinfo``'s Model line), else the generic profile for the architecture. Cores
    and threads of generic profiles are filled in from this machine."""
    root = Path(root)
    model = _read(root / "proc/device-tree/model")
    if not model:
        for line in _read(root / "proc/cpuinfo").splitlines():
            if line.startswith("Model") and ":" in line:
                model = line.split(":", 1)[1].strip()
    known = profiles()
    for profile in known.values():
        if any(m.lower() in model.lower() for m in profile.match if m):
            return profile
    arch = platform.machine()
    generic = known["generic-aarch64" if arch in ("aarch64", "arm64") else "generic-x86_64"]
    cores = os.cpu_count() or 1
    return BoardProfile(
        **{**generic.__dict__, "cores": cores, "recommended_threads": cores, "name": model or generic.name}
    )
