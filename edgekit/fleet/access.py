"""Who may connect to the fleet's broker and what each may publish and read: Mosquitto's own
password-file and ACL formats, written by ``fleet provision`` and read by Mosquitto and by the
embedded broker alike (so both enforce the same rules). Password hashes are Mosquitto's
``$7$``: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte salt, base64."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.keys import write_private

ITERATIONS = 101  # mosquitto_passwd's default
QUARANTINE_FILE = "quarantine.json"  # user -> until (epoch s): the manager's bar on flooding devices


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


def quarantine(folder: str | os.PathLike, user: str, seconds: float, now: float | None = None) -> float:
    """Bar ``user`` from the broker for ``seconds`` (both brokers disconnect it and refuse it until
    then); returns the time the bar ends."""
    path = Path(folder) / QUARANTINE_FILE
    now = time.time() if now is None else now
    barred = quarantined(folder, now)
    barred[user] = max(barred.get(user, 0.0), now + seconds)
    write_private(path, json.dumps(barred))
    return barred[user]


def quarantined(folder: str | os.PathLike, now: float | None = None) -> dict[str, float]:
    """The users barred at ``now``, with when each bar ends; an unreadable file bars nobody (the
    bar protects the manager's time, not the fleet's secrets)."""
    now = time.time() if now is None else now
    try:
        entries = json.loads((Path(folder) / QUARANTINE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {u: float(t) for u, t in entries.items() if isinstance(t, (int, float)) and t > now}


def active_passwd(folder: str | os.PathLike, now: float | None = None) -> str:
    """The password file the broker is given: ``passwd`` without the users barred at ``now``."""
    passwd = Path(folder) / "passwd"
    users = read_passwd(passwd) if passwd.exists() else {}
    barred = quarantined(folder, now)
    return "".join(f"{u}:{h}\n" for u, h in users.items() if u not in barred)


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
    """The embedded broker's view of ``fleet provision``'s folder: the password file, the ACL and
    the manager's quarantine, read again whenever one changes (a device provisioned while the
    broker runs)."""

    folder: Path
    users: dict[str, str] = field(default_factory=dict)
    acl: Acl = field(default_factory=Acl)
    barred: dict[str, float] = field(default_factory=dict)  # user -> until (epoch s)
    _stamp: tuple = ()
    _checked: float = 0.0

    @classmethod
    def read(cls, folder: str | os.PathLike) -> BrokerAccess:
        access = cls(Path(folder))
        access.refresh()
        return access

    def refresh(self, every_s: float = 0.0) -> None:
        """Read the files again if they changed; at most once per ``every_s`` seconds."""
        now = time.monotonic()
        if every_s and now - self._checked < every_s:
            return
        self._checked = now
        files = (self.folder / "passwd", self.folder / "acl", self.folder / QUARANTINE_FILE)
        stamp = tuple(f.stat().st_mtime_ns if f.exists() else None for f in files)
        if stamp != self._stamp:
            self.users = read_passwd(files[0]) if files[0].exists() else {}
            self.acl = Acl.read(files[1]) if files[1].exists() else Acl()
            self.barred = quarantined(self.folder)
            self._stamp = stamp

    def is_barred(self, user: str | None, every_s: float = 0.0) -> bool:
        self.refresh(every_s)
        return user is not None and self.barred.get(user, 0.0) > time.time()

    def authenticate(self, user: str | None, password: str | None) -> bool:
        if self.is_barred(user):
            return False
        stored = self.users.get(user or "")
        return stored is not None and password is not None and check_password(stored, password)
