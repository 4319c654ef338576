"""Provisioning a device: broker credentials in Mosquitto's password file, an ACL entry that
lets it publish only under its own topics and read only its own deployments and commands, and
an agent.toml with the fleet's root of trust (TUF root metadata) and command key pinned."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from edgekit import protocol
from edgekit.errors import FleetError
from edgekit.fleet.access import add_user
from edgekit.keys import write_private

MANAGER_USER = "edgekit-fleet"
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def device_acl(fleet: str, device: str) -> str:
    lines = [f"user {device}"]
    lines += [
        f"topic write {protocol.topic(fleet, device, c)}" for c in ("status", "telemetry", "progress", "cmd/resp")
    ]
    lines += [f"topic read {protocol.topic(fleet, device, c)}" for c in ("deploy", "cmd")]
    return "\n".join(lines) + "\n"


def check_ids(fleet: str, device: str) -> None:
    for what, value in (("fleet", fleet), ("device", device)):
        if not DEVICE_ID.fullmatch(value):
            raise FleetError(
                f"{what} id {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
    if device == MANAGER_USER:
        raise FleetError(f"{device!r} is the fleet manager's own account; choose another device id")


def ensure_manager(folder: str | os.PathLike) -> str:
    """The fleet manager's broker account in ``folder`` (passwd, acl, manager.secret 0600), made on
    first use; returns its password."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    passwd, acl, secret = folder / "passwd", folder / "acl", folder / "manager.secret"
    if not acl.exists() or not secret.exists():
        manager_password = secrets.token_urlsafe(24)
        add_user(passwd, MANAGER_USER, manager_password)
        write_private(secret, manager_password)
        if not acl.exists():
            acl.write_text(f"user {MANAGER_USER}\ntopic readwrite {protocol.PREFIX}/#\n\n")
    conf = folder / "mosquitto.conf"
    if not conf.exists():
        conf.write_text(MOSQUITTO_CONF.format(folder=folder.resolve()))
    return secret.read_text().strip()


# the Mosquitto settings the fleet relies on; include this file from the broker's own config
MOSQUITTO_CONF = """# written by edgekit fleet provision: include it from mosquitto.conf (include_dir or copy)
allow_anonymous false
password_file {folder}/passwd
acl_file {folder}/acl
# no acknowledged message dropped while the manager catches up (Mosquitto's defaults are 100/1000)
max_inflight_messages 1000
max_queued_messages 1000000
# retained desired states and the manager's queued messages survive a broker restart
persistence true
autosave_interval 60
max_packet_size 1048576
# use_username_as_clientid is a listener option: after EACH listener line of your config put
#   use_username_as_clientid true
# (a client's id is its user name: nobody takes over another's session, the manager's included)
# devices on a network: a TLS listener, e.g.
# listener 8883
# use_username_as_clientid true
# cafile /etc/mosquitto/ca.pem
# certfile /etc/mosquitto/server.pem
# keyfile /etc/mosquitto/server.key
"""


def provision(
    folder: str | os.PathLike,
    fleet: str,
    device: str,
    trusted_root: str,
    host: str = "127.0.0.1",
    port: int = 1883,
    *,
    command_key: str,
    tls_ca: str | None = None,
) -> dict:
    """Add ``device`` to ``folder``/passwd and acl (creating the manager's account on first use)
    and write ``folder``/devices/``device``.toml. Returns the device's credentials."""
    check_ids(fleet, device)
    folder = Path(folder)
    ensure_manager(folder)
    passwd, acl = folder / "passwd", folder / "acl"
    if f"user {device}\n" in acl.read_text():
        raise FleetError(f"device {device} is already provisioned")
    password = secrets.token_urlsafe(24)
    add_user(passwd, device, password)
    with acl.open("a") as f:
        f.write(device_acl(fleet, device) + "\n")
    (folder / "devices").mkdir(exist_ok=True)
    config = folder / "devices" / f"{device}.toml"
    write_private(
        config,
        "[agent]\n"
        f'fleet = "{fleet}"\ndevice = "{device}"\nstate_dir = "/var/lib/edgekit"\n'
        f'host = "{host}"\nport = {port}\n'
        f'username = "{device}"\npassword = "{password}"\ncommand_key = "{command_key}"\n'
        f"trusted_root = '''{json.dumps(json.loads(trusted_root), separators=(',', ':'))}'''\n"
        + (f"tls_ca_pem = '''\n{tls_ca.strip()}\n'''\n" if tls_ca else ""),
    )
    return {"username": device, "password": password, "config": str(config)}
