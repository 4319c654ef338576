"""Model packages: signed, verified before unpacking, unpacked safely."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import pytest

from edgekit import package
from edgekit.errors import PackageError


def test_build_verify_unpack(tmp_path, keys, models):
    private, public = keys
    info = package.build(
        models[0], tmp_path / "m.tar", name="fc", version="1.0", signing_key=private, latency_budget_ms=50
    )
    assert package.verify(info.path, public_key=public, sha256=info.sha256, size=info.size) == info.sha256
    manifest = package.unpack(info.path, tmp_path / "out")
    assert manifest["name"] == "fc" and (tmp_path / "out" / "v1.tflite").read_bytes() == models[0].read_bytes()


def test_tampered_package(tmp_path, keys, models):
    private, public = keys
    info = package.build(models[0], tmp_path / "m.tar", name="fc", version="1", signing_key=private)
    data = bytearray(info.path.read_bytes())
    data[-600] ^= 0xFF
    info.path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="signature"):
        package.verify(info.path, public_key=public)
    with pytest.raises(PackageError, match="sha256"):
        package.verify(info.path, public_key=public, sha256=info.sha256)


def test_wrong_key_and_size(tmp_path, keys, models):
    private, _ = keys
    other_public = package.generate_key(tmp_path / "o.key", tmp_path / "o.pub")
    info = package.build(models[0], tmp_path / "m.tar", name="fc", version="1", signing_key=private)
    with pytest.raises(PackageError, match="does not verify"):
        package.verify(info.path, public_key=other_public)
    with pytest.raises(PackageError, match="bytes but"):
        package.verify(info.path, public_key=keys[1], size=info.size + 1)
    with pytest.raises(PackageError, match="limit"):
        package.verify(info.path, public_key=keys[1], max_bytes=100)


def _evil_archive(path, name: str, kind=tarfile.REGTYPE, target: str = "") -> None:
    with tarfile.open(path, "w") as tar:
        manifest = json.dumps({"model": "m.tflite", "model_sha256": "0"}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        evil = tarfile.TarInfo(name)
        evil.type = kind
        evil.linkname = target
        tar.addfile(evil, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    ("name", "kind", "target", "message"),
    [
        ("../../escape.txt", tarfile.REGTYPE, "", "outside"),
        ("/etc/evil", tarfile.REGTYPE, "", "outside"),
        ("link", tarfile.SYMTYPE, "/etc/passwd", "links"),
        ("hard", tarfile.LNKTYPE, "manifest.json", "links"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, name, kind, target, message):
    archive = tmp_path / "evil.tar"
    _evil_archive(archive, name, kind, target)
    with pytest.raises(PackageError, match=message):
        package.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_package_cli(tmp_path, models):
    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "edgekit", "package", *a],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )

    assert run("--new-key", "k", "k.pub").returncode == 0
    result = run(str(models[0]), "--name", "fc", "--version", "2", "--sign", "k")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fc-2.tar").exists() and (tmp_path / "fc-2.tar.sig").exists()
    bad = run(str(models[0]), "--name", "fc", "--version", "2", "--sign", "missing.key")
    assert bad.returncode != 0 and "signing key" in bad.stderr and "Traceback" not in bad.stderr
