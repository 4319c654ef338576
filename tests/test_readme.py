"""The README's examples run as written (from the repository root)."""

from __future__ import annotations

import atexit
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the README writes to /tmp/...; here every run gets a folder of its own instead (keys are never
# overwritten, so a second run into the same /tmp would rightly be refused)
WORK = Path(tempfile.mkdtemp(prefix="edgekit-readme-"))
atexit.register(shutil.rmtree, WORK, True)
README = (ROOT / "README.md").read_text().replace("/tmp/", f"{WORK}/")
# lines naming files a reader supplies (model.onnx, ...) are templates, not examples
PLACEHOLDERS = re.compile(r"(?<![\w/])(model\.onnx|model\.tflite|PACKAGE|DEVICE)\b")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def edgekit_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            runs = command.startswith("edgekit ") or command.startswith("python -c ")  # setup lines run too, in order
            if runs and not PLACEHOLDERS.search(command):
                lines.append(command)
    return lines


@pytest.mark.parametrize("command", edgekit_lines())
def test_cli_example(command):
    program, *args = shlex.split(command)
    prefix = [sys.executable, "-m", "edgekit"] if program == "edgekit" else [sys.executable]
    result = subprocess.run([*prefix, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example(index):
    result = subprocess.run(
        [sys.executable, "-c", blocks("python")[index]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_has_examples():
    assert len(edgekit_lines()) >= 3 and blocks("python")
