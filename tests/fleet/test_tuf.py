"""Issue 17: the device believes only the fleet's TUF metadata (python-tuf's ngclient on the
device, its Metadata API on the manager). Each attack a repository or network attacker can make
on update metadata, tried against a real served repository and a real Slots."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from edgekit import package
from edgekit.errors import FleetError
from edgekit.fleet import repository
from tests.fleet.test_ota import Log, _deployment


def _slots(tmp_path, server, name="device"):
    from edgekit.agent.ota import Slots

    return Slots(tmp_path / name, server.trust(tmp_path / name)), Log()


def test_frozen_metadata_is_refused_until_it_is_fresh(tmp_path, server, keys, models):
    """A repository (or a network in between) that keeps serving the last timestamp: once it
    expires the device refuses to act, and it is a retry, not a verdict, when it is fresh again."""
    server.repo.timestamp_ttl = timedelta(seconds=2)
    server.repo.refresh(force=True)
    slots, log = _slots(tmp_path, server)
    d = _deployment(tmp_path, server, keys, models[0])  # publishing re-signs the timestamp (2 s)
    deadline = time.time() + 10
    while time.time() < deadline and not server.repo.timestamp().signed.is_expired():
        time.sleep(0.1)
    assert not slots.deploy(d, log)
    assert "expired" in log.details[-1][1]["reason"] and slots.current() is None
    assert d.id not in slots.state().get("given_up", [])  # tried again once the manager re-signs
    assert server.repo.refresh() is True  # the manager's loop re-signs a timestamp past half its life
    assert slots.deploy(d, log) and slots.current()["version"] == "1"


def test_bytes_that_do_not_match_the_signed_target_are_refused(tmp_path, server, keys, models):
    """The manager (or a mirror) serves other bytes under a published package's name: refused
    after the download, before anything is unpacked; the device keeps serving."""
    slots, log = _slots(tmp_path, server)
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0]), log)
    d = _deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2")
    stored = server.store.root / f"{d.sha256}.tar"
    other = package.build(models[0], tmp_path / "other.tar", name="fc", version="2", signing_key=keys[0])
    data = other.path.read_bytes()
    stored.write_bytes(data[: d.size].ljust(d.size, b"\0"))  # the announced size, other content
    assert not slots.deploy(d, log)
    assert "does not match its signed description" in log.details[-1][1]["reason"]
    assert slots.current()["version"] == "1"
    assert list((tmp_path / "device" / "downloads").iterdir()) == []


def test_a_rolled_back_timestamp_is_refused(tmp_path, server, keys, models):
    """Replaying an older timestamp (an attacker hiding a newer package) is refused by ngclient."""
    slots, log = _slots(tmp_path, server)
    old = (server.repo.metadata / "timestamp.json").read_bytes()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0]), log)  # the device saw a newer one
    (server.repo.metadata / "timestamp.json").write_bytes(old)
    d = _deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2")
    (server.repo.metadata / "timestamp.json").write_bytes(old)
    assert not slots.deploy(d, log)
    assert "BadVersionNumberError" in log.details[-1][1]["reason"]
    assert slots.current()["version"] == "1"


def test_rotated_key_old_signatures_are_refused_without_reprovisioning(tmp_path, server, keys, models):
    """Rotate the package key: a device provisioned with root v1 follows root v2 and installs what
    the new key published; targets signed by the old key (leaked, say, and pushed by a compromised
    manager) are refused; the manager refuses them too."""
    slots, log = _slots(tmp_path, server)
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0]), log)
    new_key = tmp_path / "package2.key"
    package.generate_key(new_key, tmp_path / "package2.pub")
    root_signer = repository.signer_from_file(server.root_key, "root key")
    new_signer = repository.signer_from_file(new_key, "package key")
    root, targets = repository.rotate_targets_key(
        server.repo.file("root.json").read_bytes(),
        server.repo.file("targets.json").read_bytes(),
        root_signer,
        new_signer,
    )
    assert server.repo.rotate(root, targets, server.store.sizes()) == 2

    # the old key can no longer publish, at the manager ...
    v2 = package.build(models[1], tmp_path / "fc-2.tar", name="fc", version="2", signing_key=keys[0])
    server.store.add(v2.path, v2.sha256)
    with pytest.raises(FleetError, match="not signed by this key"):
        server.publish(v2)
    current = server.repo.targets()
    forged = repository.sign_targets(
        server.repo.file("targets.json").read_bytes(), new_signer, v2.path, v2.manifest
    )  # what the new key would sign; re-signed below by the old key
    from tuf.api.metadata import Metadata

    old_signed = Metadata.from_bytes(forged)
    old_signed.signatures.clear()
    old_signed.sign(repository.signer_from_file(keys[0], "package key"))
    with pytest.raises(FleetError, match="not signed by the fleet's targets key"):
        server.repo.publish_targets(old_signed.to_bytes(), server.store.sizes())
    # ... and at the device, when a compromised manager writes them into its repository anyway
    (server.repo.metadata / f"{current.signed.version + 1}.targets.json").write_bytes(old_signed.to_bytes())
    server.repo.refresh(force=True)
    d = _deployment_of(v2, server, "d2")
    assert not slots.deploy(d, log)
    assert "UnsignedMetadataError" in log.details[-1][1]["reason"]
    assert slots.current()["version"] == "1"
    assert (tmp_path / "device-tuf" / "root_history" / "2.root.json").exists()  # followed the new root

    (server.repo.metadata / f"{current.signed.version + 1}.targets.json").unlink()
    server.repo.refresh(force=True)
    server.publish(v2, key=new_key)
    assert slots.deploy(_deployment_of(v2, server, "d3"), log), log.details[-1]
    assert slots.current()["version"] == "2"


def _deployment_of(info, server, dep_id):
    from edgekit.agent.ota import Deployment

    return Deployment(dep_id, repository.target_path("fc", info.manifest["version"]), info.sha256, info.size,
                      f"{server.base}{info.sha256}.tar", "fc", info.manifest["version"])  # fmt: skip


def test_manager_refuses_metadata_that_does_not_verify(tmp_path, server, keys, models):
    """Uploads of targets metadata: not the next version, unsigned, naming a package not stored."""
    info = package.build(models[0], tmp_path / "fc-1.tar", name="fc", version="1", signing_key=keys[0])
    signer = repository.signer_from_file(keys[0], "package key")
    current = server.repo.file("targets.json").read_bytes()
    not_stored = repository.sign_targets(current, signer, info.path, info.manifest)
    with pytest.raises(FleetError, match="not a package stored here"):
        server.repo.publish_targets(not_stored, server.store.sizes())
    server.store.add(info.path, info.sha256)
    server.repo.publish_targets(not_stored, server.store.sizes())
    with pytest.raises(FleetError, match="version 2, the fleet's is 2"):
        server.repo.publish_targets(not_stored, server.store.sizes())  # a replay of the same upload
    with pytest.raises(FleetError, match="not TUF metadata"):
        server.repo.publish_targets(b"{}", server.store.sizes())
    with pytest.raises(FleetError, match="published already with other contents"):
        other = package.build(models[1], tmp_path / "x.tar", name="fc", version="1", signing_key=keys[0])
        repository.sign_targets(server.repo.file("targets.json").read_bytes(), signer, other.path, other.manifest)


@pytest.mark.parametrize(("name", "version"), [("../evil", "1"), ("fc", "1/../../x"), ("fc", ".hidden")])
def test_a_target_path_is_made_only_of_valid_names(name, version):
    """Defence behind package.build's own check: the manager signs and serves targets by this path."""
    with pytest.raises(FleetError, match="is not valid"):
        repository.target_path(name, version)
    assert repository.target_path("fc", "1.0+cuda") == "fc-1.0+cuda.tar"
