"""agent.toml is checked by type and range when it is loaded: ``port = "abc"`` was a TypeError
from inside the agent, ``telemetry_interval_s = -5`` an agent sending about 50 windows a second
to its manager, a missing ``device`` "AgentConfig.__init__() missing 1 required positional
argument". Each is now a ValueError naming the key, before anything starts."""

from __future__ import annotations

import math

import pytest

from edgekit.agent.config import AgentConfig, load_config

LAB = {"fleet": "f1", "device": "cam1", "state_dir": "state", "trusted_root": "{}", "allow_unsigned_commands": True}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write(tmp_path, settings: dict) -> str:
    path = tmp_path / "agent.toml"
    path.write_text("[agent]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in settings.items()))
    return str(path)


BAD = [
    ("port", "abc", "port must be a whole number from 1 to 65535"),
    ("port", 0, "port must be a whole number"),
    ("port", 70000, "port must be a whole number"),
    ("port", 1883.0, "port must be a whole number"),
    ("telemetry_interval_s", -5, "telemetry_interval_s must be a number of seconds from 1"),
    ("telemetry_interval_s", 0, "telemetry_interval_s must be"),
    ("telemetry_interval_s", 0.001, "telemetry_interval_s must be"),
    ("telemetry_interval_s", math.nan, "telemetry_interval_s must be"),
    ("telemetry_interval_s", math.inf, "telemetry_interval_s must be"),
    ("telemetry_interval_s", "10", "telemetry_interval_s must be"),
    ("send_rate", 0, "send_rate must be a number of messages a second"),
    ("send_rate", math.nan, "send_rate must be"),
    ("outbox_limit", 0, "outbox_limit must be a whole number"),
    ("outbox_limit", -1, "outbox_limit must be"),
    ("error_rate_threshold", 1.5, "error_rate_threshold must be a fraction"),
    ("error_rate_threshold", math.nan, "error_rate_threshold must be"),
    ("watch_invocations", -1, "watch_invocations must be a whole number"),
    ("workload_rate_hz", 0, "workload_rate_hz must be a rate"),
    ("workload_rate_hz", 1e9, "workload_rate_hz must be a rate"),
    ("host", "", "host must be a non-empty string"),
    ("host", 5, "host must be a non-empty string"),
    ("device", "", "device must be a non-empty string"),
    ("tags", "cameras", "tags must be a list of strings"),
    ("tags", [1, 2], "tags must be a list of strings"),
    ("package_hosts", "a.example", "package_hosts must be a list of strings"),
    ("allow_unsigned_commands", "yes", "allow_unsigned_commands must be true or false"),
    ("mqtt_version", "6", "mqtt_version must be auto, 5 or 3.1.1"),
    ("username", 7, "username must be a string"),
]


@pytest.mark.parametrize(("key", "value", "says"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_a_value_out_of_its_type_or_range_is_refused_naming_the_key(tmp_path, key, value, says):
    with pytest.raises(ValueError, match=f"^{says}") as error:
        load_config(write(tmp_path, {**LAB, key: value}))
    assert "\n" not in str(error.value)


def test_a_missing_key_is_named_as_the_toml_key(tmp_path):
    settings = {k: v for k, v in LAB.items() if k != "device"}
    with pytest.raises(ValueError, match=r"^missing key 'device' in \[agent\]"):
        load_config(write(tmp_path, settings))


def test_an_unknown_key_is_named_with_the_likely_one(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'telemetry_intervall_s' in \[agent\]; did you mean "
                       r"'telemetry_interval_s'\?"):  # fmt: skip
        load_config(write(tmp_path, {**LAB, "telemetry_intervall_s": 5}))


def test_agent_must_be_a_table(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("agent = 5\n")
    with pytest.raises(ValueError, match=r"\[agent\] must be a table"):
        load_config(str(path))


@pytest.mark.parametrize("key", ["tls_ca", "tls_cert", "tls_key"])
def test_tls_files_must_be_files(tmp_path, key):
    with pytest.raises(ValueError, match=f"^{key} .*missing.pem: no such file"):
        load_config(write(tmp_path, {**LAB, key: str(tmp_path / "missing.pem")}))
    with pytest.raises(ValueError, match=f"^{key} .*: not a file"):
        AgentConfig(**{**LAB, key: str(tmp_path)})


def test_an_mqtt_client_refuses_a_missing_tls_file_in_one_line(tmp_path):
    from edgekit.mqtt import MQTT_V5, make_client

    with pytest.raises(ValueError, match=r"^tls ca file .*missing.pem: no such file$"):
        make_client("c1", MQTT_V5, tls={"ca": str(tmp_path / "missing.pem"), "cert": None, "key": None})


def test_good_values_at_the_edges_load(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    edges = {
        "port": 65535,
        "telemetry_interval_s": 1,
        "send_rate": 0.5,
        "outbox_limit": 1,
        "error_rate_threshold": 0,
        "watch_invocations": 0,
        "workload_rate_hz": 1000,
        "mqtt_version": 5,  # a number in TOML: the same as "5"
        "tags": [],
        "tls_ca": str(ca),
    }
    config = load_config(write(tmp_path, {**LAB, **edges}))
    assert config.port == 65535 and config.telemetry_interval_s == 1 and config.tls_ca == str(ca)
    assert load_config(write(tmp_path, {**LAB, "mqtt_version": "3.1.1"})).mqtt_version == "3.1.1"


def test_the_agent_command_says_the_key_and_the_file_in_one_line(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, {**LAB, "port": "abc"})
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "agent", "run", "--config", path],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"edgekit agent: error: agent config {path}: port must be a whole number from 1 to 65535, not 'abc'"
    )
    assert not (tmp_path / "state").exists()


def test_every_field_has_a_rule():
    """A field added without a rule would go unchecked: the rules and the fields are the same set."""
    from dataclasses import fields

    from edgekit.agent.config import FIELD_RULES

    assert sorted(FIELD_RULES) == sorted(f.name for f in fields(AgentConfig))
