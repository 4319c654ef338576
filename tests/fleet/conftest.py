from __future__ import annotations

import pytest

from edgekit import keys as keys_module
from edgekit import package
from edgekit.agent.trust import UpdateTrust
from edgekit.fleet import repository
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


class FleetServer:
    """A package store and the fleet's TUF repository served over HTTP, as the manager serves
    them; ``keys[0]`` (the package key) signs targets. Unpacks as ``store, base_url``."""

    def __init__(self, tmp_path, package_key, command_key) -> None:
        self.root_key = tmp_path / "root.key"
        keys_module.create(self.root_key, tmp_path / "root.pub")
        self.package_key = package_key
        self.command_private = keys_module.read_private(tmp_path / "fleet.command.key")
        repository.create(
            tmp_path / "fleet.tuf",
            repository.signer_from_file(self.root_key, "root key"),
            repository.signer_from_file(package_key, "package key"),
            command_key[1],
        )
        self.repo = repository.Repository(tmp_path / "fleet.tuf", repository.signer(self.command_private))
        self.store = PackageStore(tmp_path / "store", self.repo)
        self.httpd = serve_packages(self.store)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base = f"{self.origin}/packages/"

    def __iter__(self):
        return iter((self.store, self.base))

    def root_bytes(self) -> bytes:
        return self.repo.file("root.json").read_bytes()

    def trust(self, device_folder) -> UpdateTrust:
        return UpdateTrust(f"{device_folder}-tuf", self.root_bytes())

    def publish(self, info: package.PackageInfo, key=None) -> None:
        """Store the package and list it in targets metadata signed by ``key`` (the package key)."""
        self.store.add(info.path, info.sha256)
        signed = repository.sign_targets(
            self.repo.file("targets.json").read_bytes(),
            repository.signer_from_file(key or self.package_key, "package key"),
            info.path,
            info.manifest,
        )
        self.repo.publish_targets(signed, self.store.sizes())


@pytest.fixture
def server(tmp_path, keys, command_key):
    fleet_server = FleetServer(tmp_path, keys[0], command_key)
    yield fleet_server
    fleet_server.httpd.shutdown()
