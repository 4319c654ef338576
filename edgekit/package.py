"""Model packages for over-the-air updates.

A package is a tar archive of ``manifest.json`` and the model file, plus a detached ed25519
signature over the archive's sha256. It is verified (size, sha256, signature with the fleet
key pinned at provisioning) BEFORE anything is unpacked, and unpacking refuses path traversal,
links, devices and oversized members."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import PackageError

MANIFEST = "manifest.json"
MAX_PACKAGE_BYTES = 512 * 1024 * 1024
MANIFEST_SCHEMA = 1


@dataclass(frozen=True)
class PackageInfo:
    path: Path
    sha256: str
    size: int
    signature: bytes
    manifest: dict


def generate_key(private_path: str | os.PathLike, public_path: str | os.PathLike) -> str:
    """A new ed25519 signing key (hex files); returns the public key (hex)."""
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    _write(private_path, key.encode().hex().encode(), mode=0o600)
    public = key.verify_key.encode().hex()
    _write(public_path, public.encode())
    return public


def _write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _signing_key(path: str | os.PathLike):
    from nacl.signing import SigningKey

    try:
        return SigningKey(bytes.fromhex(Path(path).read_text().strip()))
    except (OSError, ValueError) as exc:
        raise PackageError(f"cannot read the signing key {path}: {exc}") from None


def build(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    name: str,
    version: str,
    signing_key: str | os.PathLike,
    latency_budget_ms: float | None = None,
    preprocessing: dict | None = None,
    extra: dict | None = None,
) -> PackageInfo:
    """Write ``output`` (.tar) and ``output.sig``; returns what a deployment needs to know."""
    model = Path(model)
    if not model.is_file():
        raise PackageError(f"{model}: no such model file")
    data = model.read_bytes()
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "name": name,
        "version": version,
        "model": model.name,
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "model_size": len(data),
        "latency_budget_ms": latency_budget_ms,
        "preprocessing": preprocessing or {},
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, payload in ((MANIFEST, json.dumps(manifest, indent=1).encode()), (model.name, data)):
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(payload), 0o644, 0
            tar.addfile(info, io.BytesIO(payload))
    archive = buffer.getvalue()
    digest = hashlib.sha256(archive).hexdigest()
    signature = _signing_key(signing_key).sign(bytes.fromhex(digest)).signature
    output = Path(output)
    _write(output, archive)
    _write(output.with_suffix(output.suffix + ".sig"), signature.hex().encode())
    return PackageInfo(output, digest, len(archive), signature, manifest)


def verify(
    path: str | os.PathLike,
    *,
    public_key: str,
    sha256: str | None = None,
    size: int | None = None,
    signature: bytes | None = None,
    max_bytes: int = MAX_PACKAGE_BYTES,
) -> str:
    """Check a downloaded package before touching its content; returns its sha256."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    path = Path(path)
    actual = path.stat().st_size
    if actual > max_bytes:
        raise PackageError(f"package is {actual} bytes, over the {max_bytes}-byte limit")
    if size is not None and actual != size:
        raise PackageError(f"package is {actual} bytes but the deployment says {size}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha256 is not None and digest != sha256:
        raise PackageError(f"package sha256 {digest[:16]}... does not match the deployment's {sha256[:16]}...")
    if signature is None:
        sig_path = path.with_suffix(path.suffix + ".sig")
        try:
            signature = bytes.fromhex(sig_path.read_text().strip())
        except (OSError, ValueError):
            raise PackageError(f"package signature {sig_path} is missing or unreadable") from None
    try:
        VerifyKey(bytes.fromhex(public_key)).verify(bytes.fromhex(digest), signature)
    except (BadSignatureError, ValueError):
        raise PackageError("package signature does not verify with the fleet key: refusing it") from None
    return digest


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a (verified) package, read without unpacking anything else."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.getmember(MANIFEST)
            if not member.isfile() or member.size > 1 << 20:
                raise PackageError("package manifest is not a small regular file")
            manifest = json.loads(tar.extractfile(member).read())
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise PackageError(f"cannot read the package manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise PackageError(f"package manifest has an unknown schema (this side reads {MANIFEST_SCHEMA})")
    return manifest


def unpack(path: str | os.PathLike, destination: str | os.PathLike, max_member_bytes: int = MAX_PACKAGE_BYTES) -> dict:
    """Extract a verified package into ``destination`` (must not exist); returns the manifest."""
    destination = Path(destination)
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = tar.getmembers()
            names = set()
            for m in members:
                target = (destination / m.name).resolve()
                if not m.isfile():
                    raise PackageError(f"package member {m.name!r} is not a regular file (links are refused)")
                if m.name.startswith("/") or ".." in Path(m.name).parts or destination.resolve() not in target.parents:
                    raise PackageError(f"package member {m.name!r} would land outside the package folder")
                if m.size > max_member_bytes:
                    raise PackageError(f"package member {m.name!r} is {m.size} bytes, over the limit")
                names.add(m.name)
            if MANIFEST not in names:
                raise PackageError("package has no manifest.json")
            destination.mkdir(parents=True)
            for m in members:
                source = tar.extractfile(m)
                (destination / m.name).parent.mkdir(parents=True, exist_ok=True)
                (destination / m.name).write_bytes(source.read())
    except tarfile.TarError as exc:
        raise PackageError(f"package is not a readable archive: {exc}") from None
    manifest = json.loads((destination / MANIFEST).read_text())
    model = destination / manifest.get("model", "")
    if not model.is_file() or hashlib.sha256(model.read_bytes()).hexdigest() != manifest.get("model_sha256"):
        raise PackageError("the model inside the package does not match its manifest")
    return manifest
