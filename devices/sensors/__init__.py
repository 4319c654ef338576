"""Sensors, each a small reader behind one registry.

A reader takes the sysfs root (and tools) from a ``SensorContext`` so tests can build fake
trees; it returns readings or None when its hardware is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SensorContext:
    root: Path = Path("/")
    vcgencmd: str | None = None

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def read_text(self, path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def read_number(self, path: Path) -> float | None:
        text = self.read_text(path)
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None

    def run_vcgencmd(self, *args: str) -> str | None:
        tool = self.vcgencmd or shutil.which("vcgencmd")
        if not tool:
            return None
        try:
            return subprocess.run([tool, *args], capture_output=True, text=True, timeout=2, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None


Reader = Callable[[SensorContext], dict | None]
SENSORS: dict[str, Reader] = {}


def sensor(name: str):
    def register(fn: Reader) -> Reader:
        SENSORS[name] = fn
        return fn

    return register


def context(root: str | os.PathLike = "/", vcgencmd: str | None = None) -> SensorContext:
    return SensorContext(Path(root), vcgencmd)


from edgekit.devices.sensors import readers  # noqa: E402,F401  (registration)
