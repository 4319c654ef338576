"""Signed fleet commands: deploy messages and ``cmd`` messages carry an ed25519 signature by the
manager's command key over their canonical JSON, the fleet and device they are meant for, a
sequence number and an expiry. A device pins the command key's public half at provisioning and
acts on nothing that does not verify (``CommandVerifier``)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgekit.protocol import SCHEMA, ProtocolError

log = logging.getLogger("edgekit.signing")
SIGNED_FIELDS = ("fleet", "device", "seq", "expires", "sig")
DEPLOY_TTL_S = 30 * 86400.0  # a retained desired state outlives a device's month offline, no longer
COMMAND_TTL_S = 3600.0


def canonical(payload: dict) -> bytes:
    body = {k: v for k, v in payload.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def new_command_key(private_path: Path, public_path: Path) -> str:
    """A new command key pair (edgekit.keys: private 0600, refuses to overwrite); returns the public."""
    from edgekit import keys

    return keys.create(private_path, public_path)


class CommandSigner:
    """The manager's side: binds a payload to its fleet and device and signs it.

    Sequence numbers are the clock in nanoseconds, but never at or below the last one issued
    (``last_seq``, and ``record`` keeps each new one, e.g. in the manager's database): devices
    refuse a sequence below what they accepted, so a clock that once ran ahead and was set back
    (a wrong manual date, NTP stepping) would otherwise lock every device out until real time
    caught up."""

    def __init__(self, private_hex: str, last_seq: int = -1, record: Callable[[int], None] | None = None) -> None:
        from nacl.signing import SigningKey

        self.key = SigningKey(bytes.fromhex(private_hex.strip().rpartition(":")[2]))
        self.public = self.key.verify_key.encode().hex()
        self.last_seq, self.record = last_seq, record
        self._lock = threading.Lock()
        self._counting_on = False  # warned that the clock is behind: said once, until it catches up

    def next_seq(self) -> int:
        with self._lock:
            now = time.time_ns()
            if now <= self.last_seq and not self._counting_on:
                log.warning("the clock is behind the last sequence issued (%d ns): counting on from it", self.last_seq)
            self._counting_on = now <= self.last_seq
            seq = max(now, self.last_seq + 1)
            if self.record is not None:
                self.record(seq)  # recorded before use: a restart never issues it again
            self.last_seq = seq
            return seq

    def sign(self, payload: dict, fleet: str, device: str, ttl_s: float) -> dict:
        signed = {
            "schema": SCHEMA,  # what protocol.encode adds: the signature covers the bytes as sent
            **payload,
            "fleet": fleet,
            "device": device,
            "seq": self.next_seq(),
            "expires": time.time() + ttl_s,
        }
        signed["sig"] = self.key.sign(canonical(signed)).signature.hex()
        return signed


class CommandVerifier:
    """The device's side: a deploy or cmd payload is acted on only when it is signed by the pinned
    command key, names this fleet and device, has not expired, and is not older than what was
    accepted on its channel before (a deploy's desired state may come again with the same
    sequence, retained; a command never). The last sequence per channel is persisted."""

    def __init__(self, public_hex: str, fleet: str, device: str, state_path: Path) -> None:
        from nacl.signing import VerifyKey

        self.key = VerifyKey(bytes.fromhex(public_hex.strip()))
        self.fleet, self.device, self.state_path = fleet, device, Path(state_path)
        try:
            self.last = {k: int(v) for k, v in json.loads(self.state_path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self.last = {}

    def check(self, channel: str, payload: dict) -> None:
        from nacl.exceptions import BadSignatureError

        sig = payload.get("sig")
        if not isinstance(sig, str) or len(sig) != 128:
            raise ProtocolError(f"{channel} message is not signed")
        try:
            self.key.verify(canonical(payload), bytes.fromhex(sig))
        except (BadSignatureError, ValueError):
            raise ProtocolError(f"{channel} message signature does not verify with the fleet's command key") from None
        if payload.get("fleet") != self.fleet or payload.get("device") != self.device:
            raise ProtocolError(
                f"{channel} message is for {payload.get('fleet')}/{payload.get('device')}, not this device"
            )
        expires, seq = payload.get("expires"), payload.get("seq")
        if not isinstance(expires, int | float) or expires < time.time():
            raise ProtocolError(f"{channel} message expired")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ProtocolError(f"{channel} message has no sequence number")
        last = self.last.get(channel, -1)
        if seq < last or (seq == last and channel != "deploy"):
            raise ProtocolError(f"{channel} message replayed (sequence {seq}, already at {last})")
        if seq != last:
            from edgekit.errors import EdgekitError
            from edgekit.keys import write_private

            try:  # unrecorded, a replay would pass after a restart: not acted on (a full disk, say)
                write_private(self.state_path, json.dumps({**self.last, channel: seq}))
            except (EdgekitError, OSError) as exc:
                raise ProtocolError(f"{channel} message not acted on: cannot record its sequence ({exc})") from None
            self.last[channel] = seq
