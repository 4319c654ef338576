"""The fleet's MQTT protocol: one topic tree under a prefix, JSON payloads that carry a schema
version. Data, builders and validation only; docs/protocol.md explains it.

    {prefix}/{fleet}/{device}/status       birth/death, retained (death is the last will)
    {prefix}/{fleet}/{device}/telemetry    telemetry windows, QoS 1
    {prefix}/{fleet}/{device}/deploy       desired state (which package), retained
    {prefix}/{fleet}/{device}/progress     deployment progress and results, QoS 1
    {prefix}/{fleet}/{device}/cmd          commands to the device
    {prefix}/{fleet}/{device}/cmd/resp     command responses
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

SCHEMA = 1
PREFIX = "edgekit/v1"
CHANNELS = ("status", "telemetry", "deploy", "progress", "cmd", "cmd/resp")

# channel -> required payload fields (besides "schema")
REQUIRED: dict[str, tuple[str, ...]] = {
    "status": ("state", "seq", "ts"),
    "telemetry": ("seq", "ts", "window_s", "count"),
    "deploy": ("deployment", "package", "sha256", "url", "size"),
    "deploy cancel": ("deployment", "cancel"),  # a withdrawn desired state: deploy with "cancel": true
    "progress": ("deployment", "step", "ts"),
    "cmd": ("id", "command"),
    "cmd/resp": ("id", "ok"),
}
NUMBER = (int, float)
OPTIONAL_TEXT = (str, type(None))
MAX_WHOLE = 2**63 - 1  # a counter or size a database column holds (SQLite and PostgreSQL BIGINT)
# fields whose type is checked wherever they appear (bool is not a number here)
TYPES: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "ts": NUMBER,
    "window_s": NUMBER,
    "count": (int,),
    "size": (int,),
    "state": (str,),
    "step": (str,),
    "deployment": (str,),
    "package": (str,),
    "sha256": (str, type(None)),
    "url": (str,),
    "id": (str,),
    "command": (str,),
    "ok": (bool,),
    "tags": (list,),
    "board": (str,),
    "model": OPTIONAL_TEXT,
    "version": OPTIONAL_TEXT,
    "errors": (int,),
    "cancel": (bool,),
}
WHOLE_NUMBERS = ("seq", "count", "size", "errors")  # 0 .. MAX_WHOLE wherever they appear
STATUS_STATES = ("online", "offline")

# A deployment (rollout) id: what a device accepts in a deploy (it reaches the device's state and
# logs) and the manager's API takes as a path segment. The one rule both sides apply.
ID_MAX = 64
SAFE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{ID_MAX - 1}}}")
SAFE_ID_RULE = f"1 to {ID_MAX} characters of A-Z a-z 0-9 . _ -, the first a letter or digit"
# a package version: an id, or a semantic version with build metadata (1.0+cuda); it names files
SAFE_VERSION = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._+-]{{0,{ID_MAX - 1}}}")
SAFE_VERSION_RULE = f"1 to {ID_MAX} characters of A-Z a-z 0-9 . _ - +, the first a letter or digit"


def package_id_problem(name: object, version: object) -> str | None:
    """Why ``name`` and ``version`` cannot name a package, or None: they become file names and
    update-metadata target paths (``../x`` would name a file elsewhere)."""
    for what, value, rule, said in (
        ("name", name, SAFE_ID, SAFE_ID_RULE),
        ("version", version, SAFE_VERSION, SAFE_VERSION_RULE),
    ):
        if not isinstance(value, str) or not rule.fullmatch(value):
            return f"package {what} {str(value)[:80]!r} is not valid: it must be {said}"
    return None


def safe_id(text: str, suffix: str = "") -> str:
    """An id SAFE_ID accepts, made from ``text`` and ending in ``suffix``: characters the rule
    refuses become ``_``, leading punctuation goes, ``text`` is cut so the whole fits."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-") or "deployment"
    result = stem[: ID_MAX - len(suffix)] + suffix
    if not SAFE_ID.fullmatch(result):  # only a suffix outside the rule gets here
        raise ValueError(f"cannot make an id ending in {suffix!r}: ids are {SAFE_ID_RULE}")
    return result


class Step(str, Enum):
    """A deployment's steps on a device, in order, and its two bad ends: the one list the agent,
    the protocol and the manager share."""

    RECEIVED = "received"
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    INSTALLED = "installed"
    HEALTH_OK = "health_ok"
    SWITCHED = "switched"
    COMMITTED = "committed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"

    __str__ = str.__str__
    __format__ = str.__format__


PROGRESS_STEPS = tuple(step.value for step in Step)
FINAL_STEPS = frozenset({Step.COMMITTED, Step.FAILED, Step.ROLLED_BACK})  # nothing follows on that device
FAILED_STEPS = frozenset({Step.FAILED, Step.ROLLED_BACK})  # the device does not serve the new model


class RolloutState(str, Enum):
    """A rollout's states, as the manager stores them and the API, console and CLI show them.
    ``paused`` waits for a person: one paused it, or a wave ran out of time without evidence."""

    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"  # every wave passed its gates
    ABORTED = "aborted"  # stopped by a person or a gate; a gate also rolls its devices back
    ROLLED_BACK = "rolled_back"  # stopped and rolled back because a person asked

    __str__ = str.__str__
    __format__ = str.__format__


ROLLOUT_ENDS = frozenset({RolloutState.DONE, RolloutState.ABORTED, RolloutState.ROLLED_BACK})


class ProtocolError(ValueError):
    """A message that does not follow the protocol (logged and counted, never fatal)."""


@dataclass(frozen=True)
class Topic:
    fleet: str
    device: str
    channel: str

    def __str__(self) -> str:
        return f"{PREFIX}/{self.fleet}/{self.device}/{self.channel}"


def topic(fleet: str, device: str, channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    for part in (fleet, device):
        if not part or any(c in part for c in "/+#") or part != part.strip():
            raise ValueError(f"invalid fleet or device id {part!r}")
    return str(Topic(fleet, device, channel))


def parse_topic(text: str) -> Topic:
    parts = text.split("/")
    head = PREFIX.split("/")
    if parts[: len(head)] != head or len(parts) < len(head) + 3:
        raise ProtocolError(f"not an edgekit topic: {text!r}")
    fleet, device = parts[len(head)], parts[len(head) + 1]
    channel = "/".join(parts[len(head) + 2 :])
    if channel not in CHANNELS:
        raise ProtocolError(f"unknown channel {channel!r} in {text!r}")
    return Topic(fleet, device, channel)


def encode(channel: str, **fields: Any) -> bytes:
    payload = {"schema": SCHEMA, **fields}
    validate(channel, payload)
    return json.dumps(payload, separators=(",", ":")).encode()


def decode(channel: str, data: bytes) -> dict[str, Any]:
    if not data:
        return {}  # an empty retained message clears a topic
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, or an integer of 4,300+ digits
        raise ProtocolError(f"malformed JSON on {channel}: {exc}") from None
    except RecursionError:
        raise ProtocolError(f"malformed JSON on {channel}: nested too deep") from None
    validate(channel, payload)
    return payload


def validate(channel: str, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise ProtocolError(f"{channel} payload must be a JSON object")
    if payload.get("schema") != SCHEMA:
        raise ProtocolError(f"{channel} payload has schema {payload.get('schema')!r}; this side speaks {SCHEMA}")
    cancel = channel == "deploy" and payload.get("cancel") is True
    missing = [f for f in REQUIRED["deploy cancel" if cancel else channel] if f not in payload]
    if missing:
        raise ProtocolError(f"{channel} payload lacks {missing}")
    for name, kinds in TYPES.items():
        value = payload.get(name)
        if name in payload and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise ProtocolError(f"{channel} field {name!r} has the wrong type ({type(value).__name__})")
    for name in WHOLE_NUMBERS:
        if name in payload and not 0 <= payload[name] <= MAX_WHOLE:
            raise ProtocolError(f"{channel} field {name!r} must be a whole number from 0 to 2**63-1")
    if "ts" in payload and not (_finite(payload["ts"]) and payload["ts"] <= MAX_WHOLE):
        raise ProtocolError(f"{channel} field 'ts' must be a time in seconds, from 0 to 2**63-1")
    if not all(isinstance(tag, str) for tag in payload.get("tags", [])):
        raise ProtocolError(f"{channel} field 'tags' must be a list of strings")
    if channel == "status" and payload["state"] not in STATUS_STATES:
        raise ProtocolError(f"status state {payload['state']!r} is not one of {STATUS_STATES}")
    if channel == "progress" and payload["step"] not in PROGRESS_STEPS:
        raise ProtocolError(f"progress step {payload['step']!r} is not one of {PROGRESS_STEPS}")
    if channel == "telemetry":
        _validate_window(payload)


def _finite(value: Any, minimum: float = 0.0) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool) and math.isfinite(value) and value >= minimum


def _validate_window(payload: dict) -> None:
    """A telemetry window a health gate can judge, or a ProtocolError at ingest (never in a gate)."""
    if not _finite(payload["window_s"]):
        raise ProtocolError("telemetry count and window_s must not be negative")
    latency = payload.get("latency")
    percentiles = ("p50_ms", "p90_ms", "p99_ms")
    if latency is not None and (not isinstance(latency, dict) or not all(_finite(latency.get(k)) for k in percentiles)):
        raise ProtocolError("telemetry latency must hold p50_ms, p90_ms and p99_ms as numbers >= 0")
    power = payload.get("power")
    if power is not None and (
        not isinstance(power, dict) or not (power.get("watts") is None or _finite(power["watts"]))
    ):
        raise ProtocolError("telemetry power must be an object whose watts is a number >= 0 or null")


def now() -> float:
    return round(time.time(), 3)
