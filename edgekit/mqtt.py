"""MQTT clients for the agent and the fleet manager: MQTT 5 where the broker speaks it, 3.1.1
otherwise. The broker is asked once with a bare MQTT 5 CONNECT: a 5 broker answers with a
version-5 CONNACK (which carries properties, so it is longer than 3.1.1's two bytes) even when it
refuses the anonymous probe; a 3.1.1 broker answers "unacceptable protocol version" or hangs up."""

from __future__ import annotations

import os
import socket
import ssl
import struct

MQTT_V311, MQTT_V5 = 4, 5
VERSION_NAMES = {"5": MQTT_V5, "5.0": MQTT_V5, "4": MQTT_V311, "3.1.1": MQTT_V311, "311": MQTT_V311}


def _connect_packet(client_id: str) -> bytes:
    body = b"\x00\x04MQTT" + bytes([5, 0x02]) + struct.pack("!H", 10) + b"\x00"  # level 5, clean start, no props
    body += struct.pack("!H", len(client_id)) + client_id.encode()
    return bytes([0x10, len(body)]) + body


def choose_version(wanted: int | str, host: str, port: int, tls: dict | None = None) -> int:
    """``auto`` asks the broker; 5 or 4 (also "3.1.1") are taken as given."""
    if str(wanted) == "auto":
        return broker_version(host, port, tls)
    if str(wanted) in VERSION_NAMES:
        return VERSION_NAMES[str(wanted)]
    raise ValueError(f"mqtt_version must be auto, 5 or 3.1.1 (got {wanted!r})")


def broker_version(host: str, port: int, tls: dict | None = None, timeout: float = 5.0) -> int:
    """5 or 4 (3.1.1); 4 when the broker cannot be reached (the client then retries as 3.1.1)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = raw
            if tls:
                context = ssl.create_default_context(cafile=tls.get("ca"))
                if tls.get("cert"):
                    context.load_cert_chain(tls["cert"], tls.get("key"))
                sock = context.wrap_socket(raw, server_hostname=host)
            sock.settimeout(timeout)
            sock.sendall(_connect_packet(f"edgekit-probe-{os.urandom(4).hex()}"))
            header = sock.recv(2)
            if len(header) == 2 and header[0] >> 4 == 2 and header[1] >= 3:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
                return MQTT_V5
            return MQTT_V311
    except (OSError, ssl.SSLError):
        return MQTT_V311


def tls_file_problem(path: str) -> str | None:
    """Why ``path`` cannot serve as a TLS file (CA, certificate, key), or None: checked before
    anything connects, so a typo is one line and not an ssl traceback from inside paho."""
    if not os.path.exists(path):
        return f"{path}: no such file"
    if not os.path.isfile(path):
        return f"{path}: not a file"
    if not os.access(path, os.R_OK):
        return f"{path}: cannot be read (permissions)"
    return None


def check_tls(tls: dict | None) -> None:
    """Refuse a ``tls`` dict ({"ca", "cert", "key"}) whose files cannot be used."""
    for role, path in (tls or {}).items():
        problem = tls_file_problem(path) if path else None
        if problem:
            raise ValueError(f"tls {role} file {problem}")


def make_client(
    client_id: str,
    version: int,
    username: str | None = None,
    password: str | None = None,
    tls: dict | None = None,
    persistent: bool = False,
    manual_ack: bool = False,
):
    """A paho client (v2 callback API) for ``version``; an MQTT 5 session is set at connect
    (``connect_args``), a 3.1.1 one here."""
    import paho.mqtt.client as mqtt

    check_tls(tls)
    if version == MQTT_V5:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
        )
    else:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key"))
    return client


def connect_args(version: int, persistent: bool) -> dict:
    """Keyword arguments for connect()/connect_async(): a persistent session survives the client's
    reconnects and, with a persistent broker, the broker's restarts."""
    if version != MQTT_V5:
        return {}
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    if not persistent:
        return {"clean_start": True}
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 7 * 24 * 3600
    return {"clean_start": False, "properties": properties}
