"""Model packages for over-the-air updates.

A package is a tar archive of ``manifest.json`` and the model file, xz-compressed by default
(Python's own lzma, so a device needs nothing extra; the zeros of a sparse model and the few
values of a clustered one shrink the download), plus a detached ed25519 signature over the
archive's sha256. It is verified (size, sha256, signature with the fleet key pinned at
provisioning) BEFORE anything is unpacked, and unpacking refuses path traversal, links,
devices and members or totals over the size limit. Plain (uncompressed) tar packages still
read."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import lzma
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import InvalidModelError, PackageError
from edgekit.files import check_output_path, write_atomic
from edgekit.protocol import package_id_problem
from edgekit.runtime.signature import Signature

MANIFEST = "manifest.json"
MAX_PACKAGE_BYTES = 512 * 1024 * 1024
MANIFEST_SCHEMA = 1
XZ_MAGIC = b"\xfd7zXZ\x00"
# preset 6: an 8 MiB dictionary, so a Raspberry Pi Zero decompresses in ~9 MiB of memory
XZ_PRESET = 6
COMPRESSIONS = ("xz", "none")


@dataclass(frozen=True)
class PackageInfo:
    path: Path
    sha256: str
    size: int
    signature: bytes
    manifest: dict


def generate_key(private_path: str | os.PathLike, public_path: str | os.PathLike, force: bool = False) -> str:
    """A new ed25519 signing key pair (edgekit.keys); returns the public key (hex)."""
    from edgekit import keys

    return keys.create(private_path, public_path, force=force)


def _signing_key(path: str | os.PathLike):
    from nacl.signing import SigningKey

    from edgekit import keys

    return SigningKey(bytes.fromhex(keys.read_private(path, "signing key")))


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
    compression: str = "xz",
    validate: bool = True,
    io_change: bool = False,
) -> PackageInfo:
    """Write ``output`` (a tar archive, xz-compressed unless ``compression="none"``) and
    ``output.sig``; returns what a deployment needs to know. The manifest carries the model's
    signature (``io``: each input's and output's name, shape, dtype, layout, int8 scale and zero
    point; :class:`edgekit.runtime.signature.Signature`), the preprocessing, the latency budget and
    a compression report. ``validate=False`` packages a .tflite that does not parse as it is (the
    device's health check then refuses it: how the tests exercise that)."""
    _check_request(name, version, latency_budget_ms, compression)
    if compression == "none" and Path(output).suffix.lower() == ".xz":  # an .xz name on a plain tar misleads
        raise PackageError(f"{output}: the name says xz, but compression is none; name it .tar")
    signer = _signing_key(signing_key)  # a public key or an unreadable file: refused before any work
    model = Path(model)
    output = Path(output)
    inputs = {"model": model, "signing_key": signing_key}  # a folder, /proc, an input: refused before any work
    check_output_path(output, option="output", named=inputs)
    check_output_path(output.with_suffix(output.suffix + ".sig"), option="output", named=inputs)
    if not model.is_file():
        raise PackageError(f"{model}: no such model file")
    data = model.read_bytes()
    signature = model_signature(model.name, data, strict=validate)
    if preprocessing:
        problems = preprocessing_problems(preprocessing, signature)
        if problems:
            raise PackageError(f"--preprocess does not fit {model.name}: " + "; ".join(problems))
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "name": name,
        "version": version,
        "model": model.name,
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "model_size": len(data),
        "latency_budget_ms": latency_budget_ms,
        "io": signature.to_dict() if signature is not None else None,
        "io_change": io_change,  # the operator says a new I/O signature is intended
        "preprocessing": preprocessing or {},
        "compression": _compression_report(data, compression),
        **(extra or {}),
    }
    archive = _archive({MANIFEST: _manifest_json(manifest), model.name: data}, compression)
    digest = hashlib.sha256(archive).hexdigest()
    signature_bytes = signer.sign(bytes.fromhex(digest)).signature
    write_atomic(output, archive)
    write_atomic(output.with_suffix(output.suffix + ".sig"), signature_bytes.hex().encode())
    return PackageInfo(output, digest, len(archive), signature_bytes, manifest)


def _check_request(name: str, version: str, latency_budget_ms: float | None, compression: str) -> None:
    """What ``build`` is asked for, refused before any work: a name or version devices and the
    fleet would not take as an id (they become file names: ``../x`` would land elsewhere), a
    latency budget that is no limit (NaN passes every comparison, and is not JSON), an unknown
    compression."""
    problem = package_id_problem(name, version)
    if problem:
        raise PackageError(problem)
    if latency_budget_ms is not None and not (
        isinstance(latency_budget_ms, int | float)
        and not isinstance(latency_budget_ms, bool)
        and math.isfinite(latency_budget_ms)
        and latency_budget_ms > 0
    ):
        raise PackageError(f"latency_budget_ms must be a number of milliseconds > 0 (got {latency_budget_ms!r})")
    if compression not in COMPRESSIONS:
        raise PackageError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")


def _manifest_json(manifest: dict) -> bytes:
    """The manifest as strict JSON: NaN or infinity (in ``preprocessing``, ``extra``) is refused,
    naming the field, since JSON has no such numbers and a device's reader may take them for none."""
    for field, value in manifest.items():
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise PackageError(f"the manifest's {field} holds NaN or infinity; give finite numbers") from None
    return json.dumps(manifest, indent=1, allow_nan=False).encode()


def _archive(members: dict[str, bytes], compression: str) -> bytes:
    """A tar archive of ``members`` (name -> bytes) with fixed modes and times, xz-compressed or not."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, payload in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(payload), 0o644, 0
            tar.addfile(info, io.BytesIO(payload))
    archive = buffer.getvalue()
    return lzma.compress(archive, preset=XZ_PRESET) if compression == "xz" else archive


def _compression_report(data: bytes, compression: str) -> dict:
    """What the download is made of: the compression, the model's bytes and their share of
    zeros (what sparsity buys); the compressed size is the package's own (``PackageInfo.size``)."""
    report = {"method": compression, "model_bytes": len(data)}
    if data:
        report["zero_byte_share"] = round(data.count(0) / len(data), 4)
    low_bit = _low_bit_weights(data)
    if low_bit:
        report["low_bit_weights"] = low_bit
    return report


# an int8 weight tensor with this many distinct values or fewer in each channel is binary or ternary
LOW_BIT_MAX_VALUES = 4


def _low_bit_weights(data: bytes) -> dict | None:
    """The int8 tensors of a .tflite model holding 2 to ``LOW_BIT_MAX_VALUES`` distinct values in
    each channel (binary and ternary weights): how many values, the bytes they take in the model
    and the bytes they need at the bits their values need (each channel's values numbered);
    compression takes most of the difference. None for other models, none such or without the
    ``tflite`` schema package."""
    try:
        from edgekit.runtime.weights import constant_tensors

        tensors = constant_tensors(data)
    except ImportError:
        return None
    except Exception:  # the flatbuffer reader raises whatever a damaged file provokes; not ours to judge here
        return None
    low = [t for t in tensors if t.dtype == "int8" and 2 <= t.channel_distinct <= LOW_BIT_MAX_VALUES]
    if not low:
        return None
    return {
        "tensors": len(low),
        "values": sum(t.values for t in low),
        "model_bytes": sum(t.nbytes for t in low),
        "packed_bytes": sum(math.ceil(t.values * t.bits / 8) for t in low),
        "int8_weight_bytes": sum(t.nbytes for t in tensors if t.dtype == "int8"),
    }


def model_signature(name: str, data: bytes, strict: bool = True) -> Signature | None:
    """The signature the manifest records for a .tflite or .onnx model; None for other files,
    without the reader package (``tflite``, ``onnx``), or for an unreadable model unless ``strict``."""
    if not name.endswith((".tflite", ".onnx")):
        return None
    try:
        return Signature.from_model(name, data)
    except ImportError:
        return None
    except InvalidModelError as exc:
        if not strict:
            return None
        raise PackageError(f"{name} is {exc}; convert it with edgekit convert") from None


def manifest_signature(manifest: dict) -> Signature | None:
    """The signature a manifest records (``io``); None when it records none (an .onnx model
    packaged before edgekit recorded theirs). Manifests of older edgekit versions read too."""
    io_spec = manifest.get("io")
    if io_spec is None:
        return None
    try:
        return Signature.from_dict(io_spec)
    except ValueError as exc:
        raise PackageError(f"the package manifest's io is malformed: {exc}") from None


def preprocessing_problems(preprocessing: dict, signature: Signature | dict | None) -> list[str]:
    """Why a preprocessing spec cannot feed the model's first input (empty when it can): the
    spec's layout against the layout the signature records, then channels, mean/std and size."""
    from edgekit.errors import InputError
    from edgekit.runtime.preprocess import PreprocessSpec, fit_problems

    try:
        spec = PreprocessSpec.from_dict(preprocessing)
    except (InputError, TypeError, ValueError) as exc:
        return [str(exc)]
    if isinstance(signature, dict):
        signature = manifest_signature({"io": signature})
    if signature is None or not signature.inputs:
        return []
    first = signature.inputs[0]
    problems = []
    if first.layout and len(first.shape) == 4 and spec.layout != first.layout.lower():
        problems.append(f"layout {spec.layout} for input {first.name!r}, which is {first.layout}")
    return problems + fit_problems(spec, first.shape)


def io_differences(serving: dict | None, candidate: dict | None) -> list[str]:
    """:meth:`Signature.differences` of two manifests' ``io`` (nothing when either records none)."""
    old, new = manifest_signature({"io": serving}), manifest_signature({"io": candidate})
    return new.differences(old) if old is not None and new is not None else []


def _open_archive(path: Path) -> tarfile.TarFile:
    """The package's tar archive, xz-compressed or plain (told by its first bytes, not its name)."""
    with open(path, "rb") as f:
        head = f.read(len(XZ_MAGIC))
    return tarfile.open(path, mode="r:xz" if head == XZ_MAGIC else "r:")


def check_digest(
    path: str | os.PathLike, sha256: str | None = None, size: int | None = None, max_bytes: int = MAX_PACKAGE_BYTES
) -> str:
    """The package file is the one described (size, sha256) before anything reads its content;
    returns its sha256."""
    path = Path(path)
    actual = path.stat().st_size
    if actual > max_bytes:
        raise PackageError(f"package is {actual} bytes, over the {max_bytes}-byte limit")
    if size is not None and actual != size:
        raise PackageError(f"package is {actual} bytes but its signed description says {size}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if sha256 is not None and digest.hexdigest() != sha256:
        raise PackageError(
            f"package sha256 {digest.hexdigest()[:16]}... does not match its signed description's {sha256[:16]}..."
        )
    return digest.hexdigest()


def verify(
    path: str | os.PathLike,
    *,
    public_key: str | list[str],
    sha256: str | None = None,
    size: int | None = None,
    signature: bytes | None = None,
    max_bytes: int = MAX_PACKAGE_BYTES,
) -> str:
    """Check a package and its detached signature (``public_key``: one key or any of several)
    before touching its content; returns its sha256."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    path = Path(path)
    digest = check_digest(path, sha256, size, max_bytes)
    if signature is None:
        sig_path = path.with_suffix(path.suffix + ".sig")
        try:
            signature = bytes.fromhex(sig_path.read_text().strip())
        except (OSError, ValueError):
            raise PackageError(f"package signature {sig_path} is missing or unreadable") from None
    for key in [public_key] if isinstance(public_key, str) else public_key:
        try:
            VerifyKey(bytes.fromhex(key.strip().rpartition(":")[2])).verify(bytes.fromhex(digest), signature)
            return digest
        except (BadSignatureError, ValueError):
            continue
    raise PackageError("package signature does not verify with the fleet's package key: refusing it")


def _manifest_object(data: bytes | str) -> dict:
    """A manifest's text as a JSON object, or PackageError."""
    try:  # NaN and Infinity are not JSON: a NaN latency budget would pass every health check
        manifest = json.loads(data, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8, an integer of 4,300+ digits
        raise PackageError(f"the package manifest is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"the package manifest is a JSON {type(manifest).__name__}, not an object")
    return manifest


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a (verified) package, read without unpacking anything else."""
    try:
        with _open_archive(Path(path)) as tar:
            member = tar.getmember(MANIFEST)
            if not member.isfile() or member.size > 1 << 20:
                raise PackageError("package manifest is not a small regular file")
            data = tar.extractfile(member).read()
    except (tarfile.TarError, lzma.LZMAError, EOFError, KeyError, OSError, ValueError) as exc:
        raise PackageError(f"cannot read the package manifest: {exc}") from None
    manifest = _manifest_object(data)
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise PackageError(f"package manifest has an unknown schema (this side reads {MANIFEST_SCHEMA})")
    return manifest


# errors creating a member that the archive's names cause (a file "a" and a member "a/b", a name
# too long): the package is bad. Others (a full disk or quota, a read-only or failing disk) are the device's.
NAME_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})


def unpack(path: str | os.PathLike, destination: str | os.PathLike, max_member_bytes: int = MAX_PACKAGE_BYTES) -> dict:
    """Extract a verified package into ``destination`` (must not exist); returns the manifest.
    ``max_member_bytes`` bounds each member and all of them together, so a small compressed
    archive cannot fill the device's disk. The manifest's model must be one of the members."""
    destination = Path(destination)
    try:
        with _open_archive(Path(path)) as tar:
            members = tar.getmembers()
            files = _checked_members(members, destination, max_member_bytes)
            destination.mkdir(parents=True)
            for m in members:
                _extract(tar, m, destination)
    except (tarfile.TarError, lzma.LZMAError, EOFError) as exc:
        raise PackageError(f"package is not a readable archive: {exc}") from None
    manifest = _manifest_object((destination / MANIFEST).read_bytes())
    model = manifest.get("model")
    if not isinstance(model, str) or (destination / model).resolve() not in files:
        raise PackageError(f"the package manifest's model {str(model)[:80]!r} is not one of the package's files")
    if hashlib.sha256((destination / model).read_bytes()).hexdigest() != manifest.get("model_sha256"):
        raise PackageError("the model inside the package does not match its manifest")
    return manifest


def _checked_members(members: list[tarfile.TarInfo], destination: Path, max_member_bytes: int) -> set[Path]:
    """Where each member will land, once every one is a regular file inside ``destination``
    within the size limits and the manifest is among them; PackageError otherwise."""
    total = sum(m.size for m in members)
    if total > max_member_bytes:
        raise PackageError(f"package unpacks to {total} bytes, over the {max_member_bytes}-byte limit")
    files = set()
    for m in members:
        target = (destination / m.name).resolve()
        if not m.isfile():
            raise PackageError(f"package member {m.name!r} is not a regular file (links are refused)")
        if m.name.startswith("/") or ".." in Path(m.name).parts or destination.resolve() not in target.parents:
            raise PackageError(f"package member {m.name!r} would land outside the package folder")
        if m.size > max_member_bytes:
            raise PackageError(f"package member {m.name!r} is {m.size} bytes, over the limit")
        files.add(target)
    if (destination / MANIFEST).resolve() not in files:
        raise PackageError("package has no manifest.json")
    return files


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    target = destination / member.name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tar.extractfile(member).read())
    except OSError as exc:
        if exc.errno not in NAME_ERRNOS:
            raise
        raise PackageError(f"package member {member.name!r} cannot be unpacked: {exc.strerror}") from None
