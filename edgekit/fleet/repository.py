"""The fleet's update metadata: a TUF repository, kept with python-tuf's Metadata API.

    root       the operator's root key (offline: needed to make the repository and to rotate keys)
    targets    the operator's package key: which packages exist, their length, sha256, name, version
    snapshot   the manager's online key (its command key): which targets metadata is current
    timestamp  the same online key, re-signed often: a frozen repository expires within a day

Devices pin a root at provisioning and follow its successors (``tuf.ngclient``), so rotating the
targets key is a new root version signed by the root key: no device is touched. The manager can
re-sign snapshot and timestamp but never what a package is; docs/protocol.md gives the threat
model. The operator's side (``sign_targets``, ``rotate_targets_key``) works on bytes it verifies
itself; the manager's side (``Repository``) accepts only what verifies against its trusted root."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edgekit.errors import FleetError
from edgekit.files import write_atomic

ROOT_TTL = timedelta(days=365)
TARGETS_TTL = timedelta(days=365)
SNAPSHOT_TTL = timedelta(days=7)
TIMESTAMP_TTL = timedelta(days=1)
METADATA_FILE = re.compile(r"(?:[1-9][0-9]{0,8}\.)?(?:root|targets|snapshot|timestamp)\.json")
SPEC_VERSION = "1.0.31"


def _expiry(ttl: timedelta) -> datetime:
    return (datetime.now(timezone.utc) + ttl).replace(microsecond=0)


def signer(private_hex: str):
    """A python-tuf signer over one of edgekit's ed25519 seeds (edgekit.keys)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex)))


def signer_from_file(path: str | os.PathLike, what: str):
    from edgekit import keys

    return signer(keys.read_private(path, what))


def public_key(public_hex: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)))


def _public_hex(key) -> str:
    return key.keyval["public"]


def _load(data: bytes, kind: str, what: str):
    from tuf.api.metadata import Metadata
    from tuf.api.serialization import DeserializationError

    try:
        md = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise FleetError(f"{what} is not TUF metadata: {exc}") from None
    if md.signed.type != kind:
        raise FleetError(f"{what} is {md.signed.type} metadata, not {kind}")
    return md


def _verify(delegator, role: str, md, what: str) -> None:
    from tuf.api.exceptions import UnsignedMetadataError

    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise FleetError(f"{what} is not signed by the fleet's {role} key(s): {exc}") from None
    if md.signed.is_expired():
        raise FleetError(f"{what} expired on {md.signed.expires:%Y-%m-%d %H:%M} UTC")


def _signed_by(md, signer_, what: str, role: str) -> None:
    """``md`` carries a valid signature of ``signer_``'s key: what the operator re-signs is only
    what it signed before, whatever the manager it fetched it from says."""
    from securesystemslib.exceptions import UnverifiedSignatureError

    key = signer_.public_key
    signature = md.signatures.get(key.keyid)
    try:
        if signature is None:
            raise UnverifiedSignatureError("no signature")
        key.verify_signature(signature, md.signed_bytes)
    except UnverifiedSignatureError:
        raise FleetError(f"{what} is not signed by this key; give the fleet's current {role} key") from None


def target_path(name: str, version: str) -> str:
    """The package's target path in the update metadata, and its file name on the package server."""
    from edgekit.protocol import package_id_problem

    problem = package_id_problem(name, version)
    if problem:
        raise FleetError(problem)
    return f"{name}-{version}.tar"


# --- the operator's side ------------------------------------------------------------------------
def create(folder: str | os.PathLike, root_signer, targets_signer, online_public_hex: str) -> Path:
    """A new repository in ``folder``/metadata: root version 1 (root key, the package key for
    targets, the manager's online key for snapshot and timestamp) and empty targets version 1.
    Refuses a folder that holds one already: devices pinned to it would refuse the new one."""
    from tuf.api.metadata import Metadata, Root, Targets

    metadata = Path(folder) / "metadata"
    if (metadata / "1.root.json").exists():
        raise FleetError(
            f"{metadata} holds a fleet's update metadata already; devices are pinned to it "
            "(rotate keys with edgekit fleet rotate-key instead)"
        )
    metadata.mkdir(parents=True, exist_ok=True)
    root = Root(expires=_expiry(ROOT_TTL), consistent_snapshot=True)
    root.add_key(root_signer.public_key, "root")
    root.add_key(targets_signer.public_key, "targets")
    online = public_key(online_public_hex)
    root.add_key(online, "snapshot")
    root.add_key(online, "timestamp")
    root_md = Metadata(root)
    root_md.sign(root_signer)
    targets_md = Metadata(Targets(expires=_expiry(TARGETS_TTL)))
    targets_md.sign(targets_signer)
    write_atomic(metadata / "1.targets.json", targets_md.to_bytes())
    write_atomic(metadata / "1.root.json", root_md.to_bytes())
    return metadata


def sign_targets(targets_bytes: bytes, targets_signer, archive: Path, manifest: dict) -> bytes:
    """The next targets metadata: the current one (which must carry a valid signature of
    ``targets_signer``'s own key, so a manager cannot slip a target into what the operator signs)
    plus the package ``archive`` under ``name-version.tar``."""
    from tuf.api.metadata import TargetFile

    current = _load(targets_bytes, "targets", "the fleet's targets metadata")
    _signed_by(current, targets_signer, "the fleet's current targets metadata", "targets (package)")
    path = target_path(manifest["name"], manifest["version"])
    data = archive.read_bytes()
    new = TargetFile.from_data(path, data, ["sha256"])
    new.unrecognized_fields["custom"] = {"name": manifest["name"], "version": manifest["version"]}
    published = current.signed.targets.get(path)
    if published is not None and published.hashes != new.hashes:
        raise FleetError(
            f"{manifest['name']} {manifest['version']} is published already with other contents; "
            "package the model under a new version"
        )
    current.signed.targets[path] = new
    current.signed.version += 1
    current.signed.expires = _expiry(TARGETS_TTL)
    current.signatures.clear()
    current.sign(targets_signer)
    return current.to_bytes()


def rotate_targets_key(root_bytes: bytes, targets_bytes: bytes, root_signer, new_targets_signer) -> tuple[bytes, bytes]:
    """Root version N+1, signed by the root key, trusting ``new_targets_signer``'s key for targets
    instead of the old one; and the current targets re-signed by the new key. Devices follow the
    new root on their next refresh: packages signed by the old key are refused from then on."""
    root_md = _load(root_bytes, "root", "the fleet's root metadata")
    _signed_by(root_md, root_signer, "the fleet's root metadata", "root")
    root = root_md.signed
    if root.roles["root"].keyids != [root_signer.public_key.keyid]:
        raise FleetError("the fleet's root metadata trusts other root keys than the one given; refusing to re-sign it")
    targets = _load(targets_bytes, "targets", "the fleet's targets metadata")
    _verify(root, "targets", targets, "the fleet's current targets metadata")
    for keyid in list(root.roles["targets"].keyids):
        root.revoke_key(keyid, "targets")
    root.add_key(new_targets_signer.public_key, "targets")
    root.version += 1
    root.expires = _expiry(ROOT_TTL)
    root_md.signatures.clear()
    root_md.sign(root_signer)
    targets.signed.version += 1
    targets.signed.expires = _expiry(TARGETS_TTL)
    targets.signatures.clear()
    targets.sign(new_targets_signer)
    return root_md.to_bytes(), targets.to_bytes()


# --- the manager's side -------------------------------------------------------------------------
class Repository:
    """The TUF repository the manager serves at ``/tuf/``: it accepts targets and root metadata
    only when they verify against the root it trusts, and keeps snapshot and timestamp current
    with its online key. ``timestamp_ttl`` is shortened only by the freeze-attack test."""

    def __init__(self, folder: str | os.PathLike, online_signer, timestamp_ttl: timedelta = TIMESTAMP_TTL) -> None:
        self.metadata = Path(folder) / "metadata"
        if not (self.metadata / "1.root.json").is_file():
            raise FleetError(
                f"no fleet update metadata in {self.metadata}; make it once with "
                "edgekit fleet init --root-key ROOT.key --targets-key PACKAGE.key"
            )
        self.online = online_signer
        self.timestamp_ttl = timestamp_ttl
        self.lock = threading.Lock()
        root = self.root()
        for role in ("snapshot", "timestamp"):
            if self.online.public_key.keyid not in root.signed.roles[role].keyids:
                raise FleetError(
                    f"the manager's key is not the fleet's {role} key in {self.metadata}; "
                    "start serve with the database the metadata was made for"
                )
        self.refresh()

    def _latest(self, role: str) -> int:
        versions = [int(p.name.split(".")[0]) for p in self.metadata.glob(f"*.{role}.json")]
        return max(versions, default=0)

    def _read(self, role: str, version: int | None = None):
        from tuf.api.metadata import Metadata

        name = f"{role}.json" if role == "timestamp" else f"{version or self._latest(role)}.{role}.json"
        return Metadata.from_file(str(self.metadata / name))

    def root(self):
        return self._read("root")

    def targets(self):
        return self._read("targets")

    def timestamp(self):
        return self._read("timestamp")

    def targets_public_keys(self) -> list[str]:
        root = self.root().signed
        return [_public_hex(root.keys[k]) for k in root.roles["targets"].keyids]

    def published(self) -> dict[str, tuple[str, dict]]:
        """sha256 -> (target path, custom fields) of every package the targets metadata lists."""
        return {t.hashes.get("sha256"): (path, t.custom) for path, t in self.targets().signed.targets.items()}

    def target_for(self, sha256: str) -> tuple[str, dict] | None:
        """The published target path and custom fields of the package with this sha256."""
        return self.published().get(sha256)

    def file(self, name: str) -> Path | None:
        """A metadata file to serve; ``root.json`` and ``targets.json`` are the newest versions (what
        provisioning pins, and what the operator signs the next targets from)."""
        if not METADATA_FILE.fullmatch(name):
            return None
        if name in ("root.json", "targets.json"):
            role = name.split(".")[0]
            name = f"{self._latest(role)}.{role}.json"
        path = self.metadata / name
        return path if path.is_file() else None

    def refresh(self, force: bool = False) -> bool:
        """New snapshot and timestamp when targets changed or the timestamp is past half its life."""
        from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp

        with self.lock:
            targets_version = self._latest("targets")
            snapshot_version = self._latest("snapshot")
            snapshot = self._read("snapshot") if snapshot_version else None
            stale = (
                snapshot is None
                or snapshot.signed.meta["targets.json"].version != targets_version
                or snapshot.signed.expires - datetime.now(timezone.utc) < SNAPSHOT_TTL / 2
            )
            if stale or force:
                snapshot = Metadata(
                    Snapshot(
                        version=snapshot_version + 1,
                        expires=_expiry(SNAPSHOT_TTL),
                        meta={"targets.json": MetaFile(targets_version)},
                    )
                )
                snapshot.sign(self.online)
                write_atomic(self.metadata / f"{snapshot.signed.version}.snapshot.json", snapshot.to_bytes())
            timestamp_path = self.metadata / "timestamp.json"
            timestamp = Metadata.from_file(str(timestamp_path)) if timestamp_path.exists() else None
            if (
                not stale
                and not force
                and timestamp is not None
                and timestamp.signed.snapshot_meta.version == snapshot.signed.version
                and timestamp.signed.expires - datetime.now(timezone.utc) > self.timestamp_ttl / 2
            ):
                return False
            data = snapshot.to_bytes()
            new = Metadata(
                Timestamp(
                    version=(timestamp.signed.version + 1) if timestamp else 1,
                    expires=_expiry(self.timestamp_ttl),
                    snapshot_meta=MetaFile(
                        snapshot.signed.version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()}
                    ),
                )
            )
            new.sign(self.online)
            write_atomic(timestamp_path, new.to_bytes())
            return True

    def publish_targets(self, data: bytes, stored: dict[str, int]) -> int:
        """Take new targets metadata from the operator: signed by the targets key(s) of the trusted
        root, the next version, and every target a stored package (``stored``: sha256 -> size)."""
        md = _load(data, "targets", "the uploaded targets metadata")
        with self.lock:
            root = self.root().signed
            _verify(root, "targets", md, "the uploaded targets metadata")
            self._check_next(md, self._latest("targets"), "targets")
            for path, target in md.signed.targets.items():
                sha = target.hashes.get("sha256")
                if stored.get(sha) != target.length:
                    raise FleetError(f"target {path} is not a package stored here; upload the package first")
            write_atomic(self.metadata / f"{md.signed.version}.targets.json", md.to_bytes())
        self.refresh()
        return md.signed.version

    def rotate(self, root_data: bytes, targets_data: bytes, stored: dict[str, int]) -> int:
        """Take a new root (signed by the current root key(s) and by its own) and the targets
        metadata re-signed for it, together: devices never see a root without its targets."""
        new_root = _load(root_data, "root", "the uploaded root metadata")
        with self.lock:
            trusted = self.root().signed
            _verify(trusted, "root", new_root, "the uploaded root metadata")
            _verify(new_root.signed, "root", new_root, "the uploaded root metadata (signed by its own root keys)")
            self._check_next(new_root, trusted.version, "root")
            for role in ("snapshot", "timestamp"):
                if self.online.public_key.keyid not in new_root.signed.roles[role].keyids:
                    raise FleetError(f"the uploaded root does not keep this manager's key for {role}")
            targets = _load(targets_data, "targets", "the uploaded targets metadata")
            _verify(new_root.signed, "targets", targets, "the uploaded targets metadata")
            self._check_next(targets, self._latest("targets"), "targets")
            for path, target in targets.signed.targets.items():
                if stored.get(target.hashes.get("sha256")) != target.length:
                    raise FleetError(f"target {path} is not a package stored here")
            write_atomic(self.metadata / f"{new_root.signed.version}.root.json", new_root.to_bytes())
            write_atomic(self.metadata / f"{targets.signed.version}.targets.json", targets.to_bytes())
        self.refresh()
        return new_root.signed.version

    @staticmethod
    def _check_next(md, current: int, role: str) -> None:
        if md.signed.version != current + 1:
            raise FleetError(
                f"the uploaded {role} metadata is version {md.signed.version}, the fleet's is {current}: "
                "fetch the current one and sign again"
            )
