"""Who may connect to the fleet's broker and what each may publish and read: Mosquitto's own
password-file and ACL formats, written by ``fleet provision`` and read by Mosquitto and by the
embedded broker alike (so both enforce the same rules). Password hashes are Mosquitto's
``$7$``: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte salt, base64."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.keys import write_private

ITERATIONS = 101  # mosquitto_passwd's default


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    """Mosquitto's $7$ (PBKDF2-SHA512) and $6$ (salted SHA512) hashes; anything else never matches."""
    parts = stored.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            computed = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
        elif len(parts) == 4 and parts[1] == "6":
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            computed = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, digest)


def read_passwd(path: str | os.PathLike) -> dict[str, str]:
    users = {}
    for line in Path(path).read_text().splitlines():
        user, sep, stored = line.strip().partition(":")
        if sep and user and not user.startswith("#"):
            users[user] = stored
    return users


def add_user(path: str | os.PathLike, user: str, password: str) -> None:
    """Add or replace ``user`` in a Mosquitto password file (0600, written atomically)."""
    path = Path(path)
    users = read_passwd(path) if path.exists() else {}
    users[user] = hash_password(password)
    write_private(path, "".join(f"{u}:{h}\n" for u, h in users.items()))


def topic_matches(pattern: str, topic: str) -> bool:
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


@dataclass
class Acl:
    """Mosquitto's ACL file: ``user NAME`` opens a user's block, ``topic [read|write|readwrite] T``
    grants; lines before any ``user`` apply to everyone. What no line grants is refused."""

    rules: dict[str | None, list[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Acl:
        acl, user = cls(), None
        for raw in Path(path).read_text().splitlines():
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "user" and len(words) == 2:
                user = words[1]
            elif words[0] == "topic" and len(words) in (2, 3):
                access, pattern = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
                acl.rules.setdefault(user, []).append((access, pattern))
        return acl

    def allows(self, user: str | None, access: str, topic: str) -> bool:
        for granted, pattern in [*self.rules.get(None, []), *self.rules.get(user, [])]:
            if access in granted and topic_matches(pattern, topic):  # "read" in "readwrite", likewise "write"
                return True
        return False


@dataclass
class BrokerAccess:
    """The embedded broker's view of ``fleet provision``'s folder: the password file and the ACL,
    read again whenever either file changes (a device provisioned while the broker runs)."""

    folder: Path
    users: dict[str, str] = field(default_factory=dict)
    acl: Acl = field(default_factory=Acl)
    _stamp: tuple = ()

    @classmethod
    def read(cls, folder: str | os.PathLike) -> BrokerAccess:
        access = cls(Path(folder))
        access.refresh()
        return access

    def refresh(self) -> None:
        files = (self.folder / "passwd", self.folder / "acl")
        stamp = tuple(f.stat().st_mtime_ns if f.exists() else None for f in files)
        if stamp != self._stamp:
            self.users = read_passwd(files[0]) if files[0].exists() else {}
            self.acl = Acl.read(files[1]) if files[1].exists() else Acl()
            self._stamp = stamp

    def authenticate(self, user: str | None, password: str | None) -> bool:
        self.refresh()
        stored = self.users.get(user or "")
        return stored is not None and password is not None and check_password(stored, password)
