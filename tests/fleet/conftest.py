from __future__ import annotations

import pytest

from edgekit import package
from edgekit.fleet.packages import PackageStore, serve_packages
from tests.runtime.models import float_model, int8_model


@pytest.fixture
def keys(tmp_path):
    private, public = tmp_path / "fleet.key", tmp_path / "fleet.pub"
    return private, package.generate_key(private, public)


@pytest.fixture
def command_key(tmp_path):
    """The manager's command key: (private seed hex, public hex)."""
    from edgekit.signing import new_command_key

    private = tmp_path / "fleet.command.key"
    public = new_command_key(private, tmp_path / "fleet.command.pub")
    return private.read_text().strip(), public


@pytest.fixture
def models(tmp_path):
    good, other = tmp_path / "v1.tflite", tmp_path / "v2.tflite"
    good.write_bytes(float_model())
    other.write_bytes(int8_model(io_type="float32"))
    return good, other


@pytest.fixture
def server(tmp_path):
    store = PackageStore(tmp_path / "store")
    httpd = serve_packages(store)
    yield store, f"http://127.0.0.1:{httpd.server_address[1]}/packages/"
    httpd.shutdown()
