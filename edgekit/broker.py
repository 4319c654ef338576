"""A small embedded MQTT 3.1.1 broker (asyncio) so one machine needs nothing else:
``edgekit fleet serve`` starts it when no broker is configured. It speaks what the agents and the
fleet manager use — CONNECT with a last will, PUBLISH at QoS 0/1 with PUBACK, retained messages,
SUBSCRIBE/UNSUBSCRIBE with ``+``/``#`` wildcards, PINGREQ, DISCONNECT. Production fleets use
Mosquitto (authentication, ACLs, TLS, persistence)."""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def topic_matches(pattern: str, topic: str) -> bool:
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


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
    will: tuple[str, bytes, int, bool] | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    next_id: int = 0

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id


class Broker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self.clients: dict[str, _Client] = {}
        self.retained: dict[str, tuple[bytes, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()

    # --- running in a background thread -----------------------------------------------------
    def start(self) -> Broker:
        threading.Thread(target=self._run, name="edgekit-broker", daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("embedded broker did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            for client in list(self.clients.values()):
                client.writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    # --- protocol -----------------------------------------------------------------------------
    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        head = (await reader.readexactly(1))[0]
        length, multiplier = 0, 1
        while True:
            byte = (await reader.readexactly(1))[0]
            length += (byte & 0x7F) * multiplier
            if not byte & 0x80:
                break
            multiplier *= 128
            if multiplier > 128**3:
                raise ValueError("malformed remaining length")
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
            self._connect(client, body)
            writer.write(_packet(CONNACK, 0, b"\x00\x00"))
            while True:
                kind, flags, body = await self._read_packet(reader)
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
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, UnicodeDecodeError, struct.error):
            pass
        finally:
            if self.clients.get(client.client_id) is client:
                del self.clients[client.client_id]
            if not clean and client.will is not None:
                self._route(*client.will)
            writer.close()

    def _connect(self, client: _Client, body: bytes) -> None:
        _, pos = _string(body, 0)  # protocol name
        flags = body[pos + 1]
        pos += 4  # level, flags, keepalive
        client.client_id, pos = _string(body, pos)
        if flags & 0x04:
            will_topic, pos = _string(body, pos)
            (length,) = struct.unpack_from("!H", body, pos)
            will_payload = body[pos + 2 : pos + 2 + length]
            client.will = (will_topic, will_payload, (flags >> 3) & 3, bool(flags & 0x20))
        old = self.clients.get(client.client_id)
        if old is not None:
            old.writer.close()
        self.clients[client.client_id] = client

    def _publish_in(self, client: _Client, flags: int, body: bytes) -> None:
        qos, retain = (flags >> 1) & 3, bool(flags & 1)
        topic, pos = _string(body, 0)
        if qos:
            (pid,) = struct.unpack_from("!H", body, pos)
            pos += 2
            client.writer.write(_packet(PUBACK, 0, struct.pack("!H", pid)))
        self._route(topic, body[pos:], qos, retain)

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
        for client in list(self.clients.values()):
            granted = max(
                (q for pattern, q in client.subscriptions.items() if topic_matches(pattern, topic)), default=None
            )
            if granted is not None:
                self._send(client, topic, payload, min(qos, granted), False)

    def _send(self, client: _Client, topic: str, payload: bytes, qos: int, retain: bool) -> None:
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
    args = parser.parse_args()
    broker = Broker(args.host, args.port).start()
    print(f"embedded MQTT broker on {args.host}:{broker.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        broker.stop()


if __name__ == "__main__":
    main()
