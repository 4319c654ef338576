"""A small embedded MQTT 3.1.1 broker (asyncio) so one machine needs nothing else:
``edgekit fleet serve`` starts it when no broker is configured. It speaks what the agents and the
fleet manager use — CONNECT with a last will, PUBLISH at QoS 0/1 with PUBACK, retained messages,
SUBSCRIBE/UNSUBSCRIBE with ``+``/``#`` wildcards, PINGREQ, DISCONNECT — and holds clients to the
same rules as Mosquitto with ``fleet provision``'s files: with ``access``, every client
authenticates against the password file, its client id is its user name (no takeover of another's
session), and the ACL decides what it may publish and read. Dead clients time out (1.5 x their
keepalive), packets over ``max_packet`` bytes and clients whose unsent backlog passes
``max_backlog`` are cut off, and retained messages (the desired states) survive a restart in
``retained_path``. It listens on loopback only: a network-facing fleet uses Mosquitto (TLS)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.fleet.access import BrokerAccess, topic_matches

log = logging.getLogger("edgekit.broker")
# what ends one client's connection: silence past its keepalive, a hang-up, a malformed packet
CLIENT_GONE = (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError, struct.error, IndexError)

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + length].decode("utf-8"), pos + 2 + length


def _encode_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind << 4 | flags]) + bytes(encoded) + body


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    client_id: str = ""
    user: str | None = None
    keepalive: int = 0
    will: tuple[str, bytes, int, bool] | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    next_id: int = 0

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Broker:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        access: BrokerAccess | None = None,
        retained_path: str | Path | None = None,
        max_packet: int = 1 << 20,
        max_backlog: int = 8 << 20,
    ) -> None:
        if not _loopback(host):
            raise ValueError(
                f"the embedded broker listens on loopback only, not {host}; devices on a network connect to "
                "Mosquitto (fleet serve --host, with fleet provision's passwd/acl and TLS)"
            )
        self.host, self.port = host, port
        self.access, self.max_packet, self.max_backlog = access, max_packet, max_backlog
        self.clients: dict[str, _Client] = {}
        self.refused = 0  # connections refused (credentials), publishes and deliveries the ACL stopped
        self.denied = 0
        self.retained_path = Path(retained_path) if retained_path else None
        self.retained: dict[str, tuple[bytes, int]] = self._load_retained()
        self._dirty = False
        self._failed: OSError | None = None
        self._saver: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()

    # --- running in a background thread -----------------------------------------------------
    def start(self) -> Broker:
        threading.Thread(target=self._run, name="edgekit-broker", daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("embedded broker did not start")
        if self._failed is not None:
            raise self._failed
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except OSError as exc:  # the port is taken: start() says so at once
            self._failed = exc
            self._loop.close()
            self._loop = None
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.retained_path is not None:
            self._saver = asyncio.ensure_future(self._save_loop())

    # --- retained messages across restarts -------------------------------------------------------
    def _load_retained(self) -> dict[str, tuple[bytes, int]]:
        if self.retained_path is None or not self.retained_path.exists():
            return {}
        try:
            saved = json.loads(self.retained_path.read_text())
            return {t: (base64.b64decode(p), int(q)) for t, (p, q) in saved.items()}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("retained messages in %s unreadable (%s); starting without them", self.retained_path, exc)
            return {}

    def _save_retained(self) -> None:
        from edgekit.keys import write_private

        if self.retained_path is None or not self._dirty:
            return
        self._dirty = False
        data = {t: [base64.b64encode(p).decode(), q] for t, (p, q) in self.retained.items()}
        write_private(self.retained_path, json.dumps(data))

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._save_retained()

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            for client in list(self.clients.values()):
                client.writer.close()
            if self._saver is not None:
                self._saver.cancel()
            self._save_retained()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # client handlers end here, not as "destroyed but pending" at exit
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    # --- protocol -----------------------------------------------------------------------------
    async def _read_packet(self, reader: asyncio.StreamReader, keepalive: int = 0) -> tuple[int, int, bytes]:
        # a client silent for 1.5 keepalives is dead (MQTT 3.1.1, 3.1.2.10); before CONNECT, 10 s
        timeout = 1.5 * keepalive if keepalive else 10.0
        head = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
        length, multiplier = 0, 1
        while True:
            byte = (await reader.readexactly(1))[0]
            length += (byte & 0x7F) * multiplier
            if not byte & 0x80:
                break
            multiplier *= 128
            if multiplier > 128**3:
                raise ValueError("malformed remaining length")
        if length > self.max_packet:
            raise ValueError(f"packet of {length} bytes over the {self.max_packet}-byte limit")
        return head >> 4, head & 0x0F, await reader.readexactly(length)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        clean = False
        try:
            kind, _, body = await self._read_packet(reader)
            if kind != CONNECT:
                return
            _, pos = _string(body, 0)
            if body[pos] != 4:  # MQTT 3.1.1 only: "unacceptable protocol version", as the spec says
                writer.write(_packet(CONNACK, 0, b"\x00\x01"))
                await writer.drain()
                return
            refusal = self._connect(client, body)
            if refusal:  # 4: bad user name or password
                self.refused += 1
                writer.write(_packet(CONNACK, 0, bytes([0, refusal])))
                await writer.drain()
                return
            writer.write(_packet(CONNACK, 0, b"\x00\x00"))
            while True:
                kind, flags, body = await self._read_packet(reader, client.keepalive or 600)
                if self.access is not None and self.access.is_barred(client.user, every_s=0.5):
                    log.warning("disconnected %s: barred by the fleet manager", client.user)
                    clean = True  # a barred device says nothing more, its will included
                    return
                if kind == PUBLISH:
                    self._publish_in(client, flags, body)
                elif kind == SUBSCRIBE:
                    self._subscribe(client, body)
                elif kind == UNSUBSCRIBE:
                    (pid,) = struct.unpack_from("!H", body, 0)
                    pos = 2
                    while pos < len(body):
                        topic, pos = _string(body, pos)
                        client.subscriptions.pop(topic, None)
                    writer.write(_packet(UNSUBACK, 0, struct.pack("!H", pid)))
                elif kind == PINGREQ:
                    writer.write(_packet(PINGRESP, 0, b""))
                elif kind == DISCONNECT:
                    clean = True
                    return
                await writer.drain()
        except CLIENT_GONE:
            pass  # a dead, slow or malformed client goes; the broker stays
        finally:
            if self.clients.get(client.client_id) is client:
                del self.clients[client.client_id]
            if not clean and client.will is not None and self._may(client, "write", client.will[0]):
                self._route(*client.will)
            writer.close()

    def _connect(self, client: _Client, body: bytes) -> int:
        """Parse CONNECT; 0 when the client may stay, else the CONNACK refusal code."""
        _, pos = _string(body, 0)  # protocol name
        flags = body[pos + 1]
        (client.keepalive,) = struct.unpack_from("!H", body, pos + 2)
        pos += 4  # level, flags, keepalive
        client.client_id, pos = _string(body, pos)
        if flags & 0x04:
            will_topic, pos = _string(body, pos)
            (length,) = struct.unpack_from("!H", body, pos)
            will_payload = body[pos + 2 : pos + 2 + length]
            pos += 2 + length
            client.will = (will_topic, will_payload, (flags >> 3) & 3, bool(flags & 0x20))
        password = None
        if flags & 0x80:
            client.user, pos = _string(body, pos)
        if flags & 0x40:
            (length,) = struct.unpack_from("!H", body, pos)
            password = body[pos + 2 : pos + 2 + length].decode("utf-8")
        if self.access is not None:
            if not self.access.authenticate(client.user, password):
                log.warning("refused a client (%s): bad user name or password", client.user or "anonymous")
                return 4
            client.client_id = client.user  # one session per user: nobody takes over another's
        old = self.clients.get(client.client_id)
        if old is not None:
            old.writer.close()
        self.clients[client.client_id] = client
        return 0

    def _may(self, client: _Client, access: str, topic: str) -> bool:
        if self.access is None or self.access.acl.allows(client.user, access, topic):
            return True
        self.denied += 1
        return False

    def _publish_in(self, client: _Client, flags: int, body: bytes) -> None:
        qos, retain = (flags >> 1) & 3, bool(flags & 1)
        topic, pos = _string(body, 0)
        if qos:
            (pid,) = struct.unpack_from("!H", body, pos)
            pos += 2
            client.writer.write(_packet(PUBACK, 0, struct.pack("!H", pid)))
        if self._may(client, "write", topic):  # as Mosquitto: acknowledged, then dropped when denied
            self._route(topic, body[pos:], qos, retain)

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
            self._dirty = True
        # only clients that subscribed: a fleet's idle or publish-only connections cost nothing per message
        for client in [c for c in self.clients.values() if c.subscriptions]:
            granted = max(
                (q for pattern, q in client.subscriptions.items() if topic_matches(pattern, topic)), default=None
            )
            if granted is not None:
                self._send(client, topic, payload, min(qos, granted), False)

    def _send(self, client: _Client, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if not self._may(client, "read", topic):
            return
        transport = client.writer.transport
        if transport is not None and transport.get_write_buffer_size() > self.max_backlog:
            log.warning(
                "client %s reads too slowly (%d bytes unsent); disconnecting it",
                client.client_id,
                transport.get_write_buffer_size(),
            )
            client.writer.close()
            return
        body = _encode_string(topic) + (struct.pack("!H", client.packet_id()) if qos else b"") + payload
        client.writer.write(_packet(PUBLISH, (qos << 1) | int(retain), body))

    def _subscribe(self, client: _Client, body: bytes) -> None:
        (pid,) = struct.unpack_from("!H", body, 0)
        pos, granted = 2, []
        new = []
        while pos < len(body):
            pattern, pos = _string(body, pos)
            qos = min(body[pos], 1)
            pos += 1
            client.subscriptions[pattern] = qos
            granted.append(qos)
            new.append((pattern, qos))
        client.writer.write(_packet(SUBACK, 0, struct.pack("!H", pid) + bytes(granted)))
        for topic, (payload, msg_qos) in list(self.retained.items()):
            for pattern, qos in new:
                if topic_matches(pattern, topic):
                    self._send(client, topic, payload, min(qos, msg_qos), True)
                    break


def main() -> None:
    """``python -m edgekit.broker --port 1883``: the embedded broker on its own."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="edgekit's embedded MQTT 3.1.1 broker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument(
        "--access", metavar="DIR", help="fleet provision's folder: authenticate with its passwd and acl"
    )
    args = parser.parse_args()
    broker = Broker(args.host, args.port, BrokerAccess.read(args.access) if args.access else None).start()
    print(f"embedded MQTT broker on {args.host}:{broker.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        broker.stop()


if __name__ == "__main__":
    main()
