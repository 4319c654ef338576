"""Provisioning a device: broker credentials in Mosquitto's password file, an ACL entry that
lets it publish only under its own topics and read only its own deployments and commands, and
an agent.toml with the fleet's public key pinned."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from edgekit import protocol
from edgekit.errors import FleetError

MANAGER_USER = "edgekit-fleet"
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _passwd(password_file: Path, user: str, password: str) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        raise FleetError("mosquitto_passwd is not installed (Debian package mosquitto)")
    args = [tool, "-b", str(password_file), user, password]
    if not password_file.exists():
        args.insert(1, "-c")
    subprocess.run(args, check=True, capture_output=True)
    os.chmod(password_file, 0o600)  # password hashes: Mosquitto warns about (and will refuse) readable ones


def _write_secret(path: Path, text: str) -> None:
    """A secret file readable by its owner only, from its first byte (never 0644 for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def device_acl(fleet: str, device: str) -> str:
    lines = [f"user {device}"]
    lines += [
        f"topic write {protocol.topic(fleet, device, c)}" for c in ("status", "telemetry", "progress", "cmd/resp")
    ]
    lines += [f"topic read {protocol.topic(fleet, device, c)}" for c in ("deploy", "cmd")]
    return "\n".join(lines) + "\n"


def provision(
    folder: str | os.PathLike,
    fleet: str,
    device: str,
    public_key: str,
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    command_key: str,
) -> dict:
    """Add ``device`` to ``folder``/passwd and acl (creating the manager's account on first use)
    and write ``folder``/devices/``device``.toml. Returns the device's credentials."""
    for what, value in (("fleet", fleet), ("device", device)):
        if not DEVICE_ID.fullmatch(value):
            raise FleetError(
                f"{what} id {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
    if device == MANAGER_USER:
        raise FleetError(f"{device!r} is the fleet manager's own account; choose another device id")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    passwd, acl = folder / "passwd", folder / "acl"
    if not acl.exists():
        manager_password = secrets.token_urlsafe(24)
        _passwd(passwd, MANAGER_USER, manager_password)
        _write_secret(folder / "manager.secret", manager_password)
        acl.write_text(f"user {MANAGER_USER}\ntopic readwrite {protocol.PREFIX}/#\n\n")
    if f"user {device}\n" in acl.read_text():
        raise FleetError(f"device {device} is already provisioned")
    password = secrets.token_urlsafe(24)
    _passwd(passwd, device, password)
    with acl.open("a") as f:
        f.write(device_acl(fleet, device) + "\n")
    (folder / "devices").mkdir(exist_ok=True)
    config = folder / "devices" / f"{device}.toml"
    _write_secret(
        config,
        "[agent]\n"
        f'fleet = "{fleet}"\ndevice = "{device}"\nstate_dir = "/var/lib/edgekit"\n'
        f'public_key = "{public_key}"\nhost = "{host}"\nport = {port}\n'
        f'username = "{device}"\npassword = "{password}"\ncommand_key = "{command_key}"\n',
    )
    return {"username": device, "password": password, "config": str(config)}
