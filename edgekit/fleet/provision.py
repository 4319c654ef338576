"""Provisioning a device: broker credentials in Mosquitto's password file, an ACL entry that
lets it publish only under its own topics and read only its own deployments and commands, and
an agent.toml with the fleet's public key pinned."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from edgekit import protocol
from edgekit.errors import FleetError

MANAGER_USER = "edgekit-fleet"


def _passwd(password_file: Path, user: str, password: str) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        raise FleetError("mosquitto_passwd is not installed (Debian package mosquitto)")
    args = [tool, "-b", str(password_file), user, password]
    if not password_file.exists():
        args.insert(1, "-c")
    subprocess.run(args, check=True, capture_output=True)


def device_acl(fleet: str, device: str) -> str:
    lines = [f"user {device}"]
    lines += [
        f"topic write {protocol.topic(fleet, device, c)}" for c in ("status", "telemetry", "progress", "cmd/resp")
    ]
    lines += [f"topic read {protocol.topic(fleet, device, c)}" for c in ("deploy", "cmd")]
    return "\n".join(lines) + "\n"


def provision(
    folder: str | os.PathLike, fleet: str, device: str, public_key: str, host: str = "127.0.0.1", port: int = 1883
) -> dict:
    """Add ``device`` to ``folder``/passwd and acl (creating the manager's account on first use)
    and write ``folder``/devices/``device``.toml. Returns the device's credentials."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    passwd, acl = folder / "passwd", folder / "acl"
    if not acl.exists():
        manager_password = secrets.token_urlsafe(24)
        _passwd(passwd, MANAGER_USER, manager_password)
        (folder / "manager.secret").write_text(manager_password)
        acl.write_text(f"user {MANAGER_USER}\ntopic readwrite {protocol.PREFIX}/#\n\n")
    if f"user {device}\n" in acl.read_text():
        raise FleetError(f"device {device} is already provisioned")
    password = secrets.token_urlsafe(24)
    _passwd(passwd, device, password)
    with acl.open("a") as f:
        f.write(device_acl(fleet, device) + "\n")
    (folder / "devices").mkdir(exist_ok=True)
    config = folder / "devices" / f"{device}.toml"
    config.write_text(
        "[agent]\n"
        f'fleet = "{fleet}"\ndevice = "{device}"\nstate_dir = "/var/lib/edgekit"\n'
        f'public_key = "{public_key}"\nhost = "{host}"\nport = {port}\n'
        f'username = "{device}"\npassword = "{password}"\n'
    )
    os.chmod(config, 0o600)
    return {"username": device, "password": password, "config": str(config)}
