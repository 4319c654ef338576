"""pyproject.toml lists every package of the tree, and the device extra stays light."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVER_ONLY = {"onnx", "onnxruntime", "torch", "torchvision", "scikit-learn", "fastapi", "tensorflow"}


def test_every_package_folder_is_listed():
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    missing = found - set(setuptools["packages"])
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_device_extra_pulls_no_server_package():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("device", "tflite-runtime"):
        names = {dep.split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for dep in extras[extra]}
        assert not names & SERVER_ONLY, (extra, names & SERVER_ONLY)
