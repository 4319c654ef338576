"""The agent's settings (``[agent]`` of agent.toml): every field checked by type and range when
a config is made, so a mistake is one line naming the field before the agent starts, not a
traceback from a thread or an agent flooding its manager."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

from edgekit.mqtt import VERSION_NAMES, tls_file_problem


@dataclass(frozen=True)
class Rule:
    """What a field takes: ``accepts`` says whether a value fits, ``says`` what fits, in words."""

    accepts: Callable[[object], bool]
    says: str


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(low: int, high: int) -> Rule:
    return Rule(lambda v: _whole(v) and low <= v <= high, f"a whole number from {low} to {high}")


def number(low: float, high: float, unit: str, above_low: bool = False) -> Rule:
    """A finite number in [low, high], or (low, high] with ``above_low``."""
    if above_low:
        return Rule(lambda v: _real(v) and low < v <= high, f"{unit} in ({low:g}, {high:g}]")
    return Rule(lambda v: _real(v) and low <= v <= high, f"{unit} from {low:g} to {high:g}")


TEXT = Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
OPTIONAL_TEXT = Rule(lambda v: v is None or isinstance(v, str), "a string")
TEXT_LIST = Rule(lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings")
FLAG = Rule(lambda v: isinstance(v, bool), "true or false")
MQTT_VERSION = Rule(lambda v: str(v) == "auto" or str(v) in VERSION_NAMES, "auto, 5 or 3.1.1")
TLS_FILES = ("tls_ca", "tls_cert", "tls_key")  # paths: each must be a readable file when given

FIELD_RULES: dict[str, Rule] = {
    "fleet": TEXT,
    "device": TEXT,
    "state_dir": TEXT,
    "trusted_root": TEXT,
    "host": TEXT,
    "port": whole(1, 65_535),
    "username": OPTIONAL_TEXT,
    "password": OPTIONAL_TEXT,
    # a window a second at most: shorter ones flood the manager (every device sends them)
    "telemetry_interval_s": number(1, 86_400, "a number of seconds"),
    "outbox_limit": whole(1, 10_000_000),
    "send_rate": number(0, 10_000, "a number of messages a second", above_low=True),
    "error_rate_threshold": number(0, 1, "a fraction"),
    "watch_invocations": whole(0, 10_000_000),
    "tags": TEXT_LIST,
    "board": OPTIONAL_TEXT,
    "workload_images": OPTIONAL_TEXT,
    # a rate, never "as fast as it goes": that takes a core
    "workload_rate_hz": number(0, 1000, "a rate per second", above_low=True),
    "tls_ca_pem": OPTIONAL_TEXT,
    "tls_ca": OPTIONAL_TEXT,
    "tls_cert": OPTIONAL_TEXT,
    "tls_key": OPTIONAL_TEXT,
    "mqtt_version": MQTT_VERSION,
    "package_hosts": TEXT_LIST,
    "command_key": OPTIONAL_TEXT,
    "allow_unsigned_commands": FLAG,
}


@dataclass
class AgentConfig:
    fleet: str
    device: str
    state_dir: str
    trusted_root: str  # the fleet's TUF root metadata (JSON), pinned at provisioning
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    telemetry_interval_s: float = 10.0
    outbox_limit: int = 10_000
    send_rate: float = 50.0  # messages a second the outbox drains at most: well inside the manager's budget
    error_rate_threshold: float = 0.2  # after a switch: roll back above this error rate ...
    watch_invocations: int = 20  # ... measured over this many invocations
    tags: list[str] = field(default_factory=list)
    board: str | None = None  # a board profile id (devices/boards); default: detected from this machine
    workload_images: str | None = None  # built-in workload: run the model on these images in a loop
    workload_rate_hz: float = 10.0  # ... at this rate
    tls_ca_pem: str | None = None  # TLS to the broker: its CA certificate, pinned at provisioning (turns TLS on) ...
    tls_ca: str | None = None  # ... or a CA file
    tls_cert: str | None = None  # ... and a client certificate and key, when the broker asks for one
    tls_key: str | None = None
    mqtt_version: str = "auto"  # auto: MQTT 5 where the broker speaks it, else 3.1.1; or "5", "3.1.1"
    package_hosts: list[str] = field(default_factory=list)  # hosts packages may come from (default: the broker's)
    command_key: str | None = None  # the manager's command key (hex ed25519): deploys and commands must verify
    allow_unsigned_commands: bool = False  # only for a lab without a command key: obey unsigned messages

    def __post_init__(self) -> None:
        for name, rule in FIELD_RULES.items():
            value = getattr(self, name)
            if not rule.accepts(value):
                raise ValueError(f"{name} must be {rule.says}, not {value!r}")
        for name in TLS_FILES:
            path = getattr(self, name)
            problem = tls_file_problem(path) if path else None
            if problem:
                raise ValueError(f"{name} {problem}")


def load_config(path: str) -> AgentConfig:
    """The ``[agent]`` table of ``path`` (or the whole file, without one); a missing or unknown
    key, or a value out of its range, is a ValueError naming the key."""
    try:
        import tomllib
    except ImportError:  # Python 3.10 (Ubuntu 22.04, JetPack 6): the same parser as a package
        import tomli as tomllib

    with open(path, "rb") as f:
        data = tomllib.load(f)
    agent = data.get("agent", data)
    if not isinstance(agent, dict):
        raise ValueError("[agent] must be a table of settings")
    known = [f.name for f in fields(AgentConfig)]
    unknown = sorted(set(agent) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(known)}"
        raise ValueError(f"unknown key {unknown[0]!r} in [agent]; {hint}")
    required = [f.name for f in fields(AgentConfig) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in agent]
    if missing:
        raise ValueError(f"missing key {missing[0]!r} in [agent] (required: {', '.join(required)})")
    return AgentConfig(**agent)
