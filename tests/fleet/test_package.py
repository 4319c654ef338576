"""Model packages: signed, verified before unpacking, unpacked safely."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import lzma
import os
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
    assert info.path.read_bytes()[:6] == package.XZ_MAGIC  # compressed by default
    manifest = package.unpack(info.path, tmp_path / "out")
    assert manifest["name"] == "fc" and (tmp_path / "out" / "v1.tflite").read_bytes() == models[0].read_bytes()
    assert package.read_manifest(info.path) == manifest


def test_manifest_records_io_and_compression(tmp_path, keys, models):
    from edgekit.runtime import load

    info = package.build(models[1], tmp_path / "m.tar.xz", name="fc", version="1", signing_key=keys[0])
    io_spec, report = info.manifest["io"], info.manifest["compression"]
    with load(models[1]) as session:  # the interpreter's own view of the model
        assert [(t["name"], tuple(t["shape"])) for t in io_spec["inputs"]] == [
            (s.name, tuple(s.shape)) for s in session.inputs
        ]
        assert [t["name"] for t in io_spec["outputs"]] == [s.name for s in session.outputs]
        assert [t["dtype"] for t in io_spec["inputs"]] == [str(s.dtype) for s in session.inputs]
        assert package.manifest_signature(info.manifest) == session.signature  # scale, zero point too
    assert report["method"] == "xz" and report["model_bytes"] == models[1].stat().st_size
    assert 0 <= report["zero_byte_share"] <= 1
    plain = package.build(
        models[1], tmp_path / "m.tar", name="fc", version="1", signing_key=keys[0], compression="none"
    )
    assert plain.size > info.size and package.unpack(plain.path, tmp_path / "plain")["version"] == "1"
    with pytest.raises(PackageError, match="the name says xz, but compression is none"):  # a CLI probe's find
        package.build(models[1], tmp_path / "p.tar.xz", name="fc", version="1", signing_key=keys[0], compression="none")
    assert not (tmp_path / "p.tar.xz").exists()


def test_bad_preprocessing_and_model(tmp_path, keys, models):
    with pytest.raises(Exception, match="unknown preprocessing keys"):
        package.build(
            models[0], tmp_path / "m.tar", name="fc", version="1", signing_key=keys[0], preprocessing={"resise": [8, 8]}
        )
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(PackageError, match="not a readable .tflite"):
        package.build(broken, tmp_path / "b.tar", name="fc", version="1", signing_key=keys[0])
    assert not (tmp_path / "m.tar").exists() and not (tmp_path / "b.tar").exists()


def test_decompression_bomb_is_refused(tmp_path):
    """A few KB of xz that would unpack to 64 MiB: refused by the total limit before any write."""
    archive = tmp_path / "bomb.tar.xz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        manifest = json.dumps({"model": "m.tflite", "model_sha256": "0"}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for i in range(4):
            big = tarfile.TarInfo(f"zeros{i}")
            big.size = 16 << 20
            tar.addfile(big, io.BytesIO(bytes(big.size)))
    archive.write_bytes(lzma.compress(buffer.getvalue()))
    assert archive.stat().st_size < 100_000
    with pytest.raises(PackageError, match="unpacks to .* over the"):
        package.unpack(archive, tmp_path / "out", max_member_bytes=32 << 20)
    assert not (tmp_path / "out").exists()
    archive.write_bytes(archive.read_bytes()[:5000])  # truncated xz stream: one clean error
    with pytest.raises(PackageError, match="not a readable archive|cannot read"):
        package.unpack(archive, tmp_path / "out2")


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
    (tmp_path / "m.tar.sig").unlink()  # issue 26: a package without its signature passed as signed
    with pytest.raises(PackageError, match="signature .* is missing"):
        package.verify(info.path, public_key=keys[1])


def _evil_archive(path, name: str, kind=tarfile.REGTYPE, target: str = "", mode: str = "w") -> None:
    with tarfile.open(path, mode) as tar:
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
@pytest.mark.parametrize("mode", ["w", "w:xz"])
def test_unsafe_archives_are_refused(tmp_path, name, kind, target, message, mode):
    archive = tmp_path / "evil.tar"
    _evil_archive(archive, name, kind, target, mode)
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
    from edgekit.converters import convert
    from tests.fleet.test_cli import ROOT

    digits = tmp_path / "digits.tflite"
    convert(str(ROOT / "edgekit" / "samples" / "digits_cnn.onnx"), digits)
    spec = '{"resize": [8, 8], "color": "L"}'
    result = run(str(digits), "--name", "fc", "--version", "2", "--sign", "k", "--preprocess", spec)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fc-2.tar.xz").exists() and (tmp_path / "fc-2.tar.xz.sig").exists()
    assert package.read_manifest(tmp_path / "fc-2.tar.xz")["preprocessing"] == {"resize": [8, 8], "color": "L"}
    misfit = run(str(models[0]), "--name", "fc", "--version", "3", "--sign", "k", "--preprocess", '{"resize": [4, 4]}')
    assert misfit.returncode == 2 and "does not fit" in misfit.stderr and "4-D inputs" in misfit.stderr
    for bad_json, message in (("{resize", "not valid JSON"), ("[1]", "JSON object"), ('{"x": 1}', "unknown")):
        bad = run(str(models[0]), "--name", "fc", "--version", "3", "--sign", "k", "--preprocess", bad_json)
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert not (tmp_path / "fc-3.tar.xz").exists()
    bad = run(str(models[0]), "--name", "fc", "--version", "2", "--sign", "missing.key")
    assert bad.returncode != 0 and "signing key" in bad.stderr and "Traceback" not in bad.stderr


def test_a_model_that_does_not_match_its_manifest_is_refused(tmp_path):
    """Issue 26: dropping the model-vs-manifest sha256 check on unpack passed every test."""
    archive = tmp_path / "swapped.tar"
    model_bytes = b"TFL3 pretend model"
    with tarfile.open(archive, mode="w") as tar:
        for name, payload in (
            ("manifest.json", json.dumps({"model": "m.tflite", "model_sha256": "ab" * 32}).encode()),
            ("m.tflite", model_bytes),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(PackageError, match="does not match its manifest"):
        package.unpack(archive, tmp_path / "out")


def test_a_package_with_an_old_format_manifest_still_verifies_and_unpacks(tmp_path, keys, models):
    """Packages written before manifests carried layouts: their io has no layout keys."""
    import hashlib

    from nacl.signing import SigningKey

    from edgekit import keys as key_files

    data = models[0].read_bytes()
    io_spec = {
        "inputs": [{"name": "features", "shape": [1, 6], "dtype": "float32"}],
        "outputs": [{"name": "scores", "shape": [1, 4], "dtype": "float32"}],
    }
    manifest = {
        "schema": 1,
        "name": "fc",
        "version": "1",
        "model": "v1.tflite",
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "model_size": len(data),
        "latency_budget_ms": None,
        "io": io_spec,
        "preprocessing": {},
    }
    archive = tmp_path / "old.tar"
    with tarfile.open(archive, "w") as tar:
        for name, payload in (("manifest.json", json.dumps(manifest).encode()), ("v1.tflite", data)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    signer = SigningKey(bytes.fromhex(key_files.read_private(keys[0], "signing key")))
    (tmp_path / "old.tar.sig").write_text(signer.sign(bytes.fromhex(digest)).signature.hex())
    assert package.verify(archive, public_key=keys[1]) == digest
    unpacked = package.unpack(archive, tmp_path / "out")
    old = package.manifest_signature(unpacked)
    assert [t.layout for t in old.inputs] == [None]
    new = package.build(models[0], tmp_path / "new.tar", name="fc", version="2", signing_key=keys[0])
    assert package.io_differences(unpacked["io"], new.manifest["io"]) == []
    assert package.manifest_signature(new.manifest).differences(old) == []


def _archive_of(path, members: list[tuple[str, bytes]]):
    """A plain tar of regular files, in this order (what a hand-made or hostile package holds)."""
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _manifest_naming(model: str, data: bytes) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    return json.dumps({"schema": 1, "name": "m", "version": "2", "model": model, "model_sha256": digest}).encode()


@pytest.mark.parametrize(
    ("model", "members"),
    [
        ("../state/secret.bin", []),  # a file outside the slot whose sha256 the manifest knows
        ("SECRET", []),  # an absolute path (filled in below)
        ("sub", [("sub/m.tflite", b"TFL3")]),  # a folder the members make
        ("m.tflite", []),  # no such member
        (None, []),  # not a name at all
    ],
)
def test_the_manifests_model_must_be_one_of_the_packages_files(tmp_path, model, members):
    """Red team finding 9(a): a manifest whose model lay outside the package unpacked fine; the
    health check and the agent would then have run that file."""
    secret = tmp_path / "state" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"not in the package")
    model = str(secret) if model == "SECRET" else model
    manifest = _manifest_naming(model, secret.read_bytes()) if model else json.dumps({"model": model}).encode()
    archive = _archive_of(tmp_path / "p.tar", [("manifest.json", manifest), *members])
    with pytest.raises(PackageError, match="model .* is not one of the package's files"):
        package.unpack(archive, tmp_path / "slot")


def test_a_model_in_a_subfolder_of_the_package_unpacks(tmp_path):
    data = b"TFL3 pretend model"
    archive = _archive_of(
        tmp_path / "p.tar", [("manifest.json", _manifest_naming("sub/m.tflite", data)), ("sub/m.tflite", data)]
    )
    assert package.unpack(archive, tmp_path / "slot")["model"] == "sub/m.tflite"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00{", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b"7", "JSON int"),
        # a CLI probe signed NaN into a manifest; a device read it and its health check, NaN
        # comparing false to every latency, passed: a device refuses it whoever signed it
        (b'{"schema": 1, "latency_budget_ms": NaN}', "NaN is not a JSON number"),
        (b'{"schema": 1, "latency_budget_ms": Infinity}', "Infinity is not a JSON number"),
    ],
)
def test_a_manifest_that_is_no_json_object_is_a_package_error(tmp_path, manifest, message):
    """Red team finding 9(b): JSONDecodeError and AttributeError escaped unpack, which the agent's
    Slots.deploy does not catch: no `failed` progress, the deployment stuck at `verified`."""
    archive = _archive_of(tmp_path / "p.tar", [("manifest.json", manifest)])
    with pytest.raises(PackageError, match=message):
        package.unpack(archive, tmp_path / "slot")
    with pytest.raises(PackageError, match=message):
        package.read_manifest(archive)


@pytest.mark.parametrize("order", [("a", "a/b"), ("a/b", "a")])
def test_members_that_cannot_both_exist_are_a_package_error(tmp_path, order):
    """Red team finding 9(c): a file `a` and a member `a/b` raised FileExistsError, which the agent
    takes for disk trouble and retries forever; the package is what is wrong."""
    archive = _archive_of(tmp_path / "p.tar", [("manifest.json", b"{}"), *((name, b"x") for name in order)])
    with pytest.raises(PackageError, match="cannot be unpacked"):
        package.unpack(archive, tmp_path / "slot")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO])
def test_the_devices_own_disk_errors_stay_os_errors(tmp_path, monkeypatch, code):
    """A full disk or quota, a read-only or failing disk: not the package's fault, so not a
    PackageError (the agent frees the space, reports and retries the desired state later)."""
    data = b"TFL3 pretend model"
    archive = _archive_of(
        tmp_path / "p.tar", [("manifest.json", _manifest_naming("m.tflite", data)), ("m.tflite", data)]
    )

    def failing_write(self, payload):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(package.Path, "write_bytes", failing_write)
    with pytest.raises(OSError) as raised:
        package.unpack(archive, tmp_path / "slot")
    assert raised.value.errno == code and not isinstance(raised.value, PackageError)
