"""The fleet's ed25519 keys as files: which is which, written so that none is ever lost or leaked.

A key file says what it holds: ``edgekit-ed25519-private:HEX`` (the 32-byte seed, mode 0600) or
``edgekit-ed25519-public:HEX`` (0644). Files of bare hex from earlier releases still read. Two
pairs exist: the package key (``edgekit keys new``; the operator's, never on the manager: devices
install only what it signed) and the manager's command key (``fleet serve`` makes it beside its
database: devices act only on deploys and commands it signed). docs/protocol.md gives the threat
model."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgekit.errors import InputError
from edgekit.files import umask_mode, write_atomic

PRIVATE_TAG = "edgekit-ed25519-private"
PUBLIC_TAG = "edgekit-ed25519-public"
HEX_KEY = re.compile(r"[0-9a-f]{64}")


def write_private(path: str | os.PathLike, text: str) -> None:
    """A secret file: 0600 from its first byte, written atomically."""
    write_atomic(path, text, 0o600)


def create(private_path: str | os.PathLike, public_path: str | os.PathLike, force: bool = False) -> str:
    """A new key pair; returns the public key (hex). Refuses to overwrite an existing file without
    ``force`` (a fleet pinned to the old public key would refuse everything signed with the new
    one) and refuses one path for both halves."""
    from nacl.signing import SigningKey

    private, public = Path(private_path), Path(public_path)
    if private.resolve() == public.resolve():
        raise InputError(f"the private and the public key need two different files (both were {private})")
    for path in (private, public):
        if not path.parent.is_dir():
            raise InputError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
        if path.is_dir():
            raise InputError(f"cannot write the key to {path}: it is a folder")
        if path.exists() and not force:
            raise InputError(
                f"{path} exists already: a fleet pinned to that key would refuse what the new one signs; "
                "choose another path, or pass --force to replace it"
            )
    key = SigningKey.generate()
    public_hex = key.verify_key.encode().hex()
    write_private(private, f"{PRIVATE_TAG}:{key.encode().hex()}\n")
    write_atomic(public, f"{PUBLIC_TAG}:{public_hex}\n", umask_mode(0o644))  # nobody else may change it
    return public_hex


def _read(path: str | os.PathLike, what: str) -> tuple[str | None, str]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from None
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a key file (binary data); give the {what}") from None
    tag, _, value = text.rpartition(":")
    if not HEX_KEY.fullmatch(value) or tag not in ("", PRIVATE_TAG, PUBLIC_TAG):
        kind = " (a PEM file, as openssl writes)" if text.startswith("-----BEGIN") else ""
        raise InputError(
            f"{path} is not an ed25519 key file of edgekit's{kind}; give the {what}, "
            "or make a pair with `edgekit keys new PRIVATE PUBLIC`"
        )
    return tag or None, value


def hex_of(text: str) -> str:
    """A key as written in a config (``agent.toml``): tagged or bare hex -> the hex."""
    return text.strip().rpartition(":")[2]


def read_public(path: str | os.PathLike) -> str:
    """The public key (hex) in ``path``; a private key here is refused, it must never travel."""
    tag, value = _read(path, "public key")
    if tag == PRIVATE_TAG:
        raise InputError(f"{path} is a private key; give its public half (the .pub file)")
    return value


def read_private(path: str | os.PathLike, what: str = "private key") -> str:
    """The private seed (hex) in ``path``; a public key here is refused (it cannot sign)."""
    tag, value = _read(path, what)
    if tag == PUBLIC_TAG:
        raise InputError(f"{path} is a public key; signing needs the private one")
    return value


def describe(path: str | os.PathLike) -> dict:
    """What a key file holds, without its secret: kind and public key."""
    from nacl.signing import SigningKey

    tag, value = _read(path, "key")
    if tag == PRIVATE_TAG:
        return {"kind": "private", "public_key": SigningKey(bytes.fromhex(value)).verify_key.encode().hex()}
    return {"kind": "public" if tag == PUBLIC_TAG else "unmarked (an earlier release's bare hex)", "public_key": value}
