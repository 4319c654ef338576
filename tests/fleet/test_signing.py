"""Signed fleet commands (edgekit.signing) with real ed25519 keys: what the manager signs verifies
once, on its channel, for its fleet and device, before it expires, and nothing else does; the
last sequence per channel survives a restart of the device and is written 0600."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from edgekit.protocol import SCHEMA, ProtocolError
from edgekit.signing import COMMAND_TTL_S, DEPLOY_TTL_S, CommandSigner, CommandVerifier, canonical, new_command_key


@pytest.fixture
def pair(tmp_path):
    public = new_command_key(tmp_path / "cmd.key", tmp_path / "cmd.pub")
    signer = CommandSigner((tmp_path / "cmd.key").read_text())
    assert signer.public == public
    return signer, CommandVerifier(public, "f1", "dev01", tmp_path / "seq.json")


def test_ttls_are_a_month_and_an_hour():
    assert DEPLOY_TTL_S == 30 * 24 * 3600 and COMMAND_TTL_S == 3600


def test_canonical_is_sorted_compact_ascii_and_leaves_out_the_signature():
    assert canonical({"b": 1, "a": "é", "sig": "x", "z": 2}) == b'{"a":"\\u00e9","b":1,"z":2}'
    assert canonical(json.loads('{"sig": "x", "url": "u"}')) == b'{"url":"u"}'  # keys as MQTT delivers them
    with pytest.raises(ValueError):
        canonical({"a": float("nan")})


def test_signed_payload_carries_schema_binding_and_expiry(pair):
    signer, verifier = pair
    before = time.time()
    signed = signer.sign({"op": "x"}, "f1", "dev01", 100.0)
    assert signed["schema"] == SCHEMA and signed["op"] == "x" and (signed["fleet"], signed["device"]) == ("f1", "dev01")
    assert before + 100.0 <= signed["expires"] <= time.time() + 100.0
    assert isinstance(signed["seq"], int) and signed["seq"] >= int(before * 1e9)
    assert len(signed["sig"]) == 128
    verifier.check("cmd", signed)


def test_a_command_verifies_once_and_a_deploy_again(pair, tmp_path):
    signer, verifier = pair
    cmd = signer.sign({"op": "x"}, "f1", "dev01", 60.0)
    verifier.check("cmd", cmd)
    with pytest.raises(ProtocolError, match="replayed"):
        verifier.check("cmd", cmd)
    deploy = signer.sign({"v": 1}, "f1", "dev01", 60.0)
    verifier.check("deploy", deploy)
    verifier.check("deploy", deploy)  # the retained desired state comes again after a reconnect
    newer = signer.sign({"v": 2}, "f1", "dev01", 60.0)
    verifier.check("deploy", newer)
    with pytest.raises(ProtocolError, match=r"replayed \(sequence"):
        verifier.check("deploy", deploy)  # older than what was accepted
    saved = json.loads((tmp_path / "seq.json").read_text())
    assert saved == {"cmd": cmd["seq"], "deploy": newer["seq"]}
    assert stat.S_IMODE(os.stat(tmp_path / "seq.json").st_mode) == 0o600
    # a restarted device remembers
    again = CommandVerifier(signer.public, "f1", "dev01", tmp_path / "seq.json")
    assert again.last == saved
    with pytest.raises(ProtocolError, match="replayed"):
        again.check("cmd", cmd)
    again.check("deploy", newer)


def test_what_came_over_the_wire_verifies(pair):
    """Payloads decoded from JSON (new string objects, not the signer's): compared by value."""
    signer, verifier = pair
    verifier.check("cmd", json.loads(json.dumps(signer.sign({"url": "https://x/p"}, "f1", "dev01", 60.0))))
    deploy = json.loads(json.dumps(signer.sign({"v": 1}, "f1", "dev01", 60.0)))
    channel = "".join(["dep", "loy"])  # a channel name made at run time, as the agent's is
    verifier.check(channel, deploy)
    verifier.check(channel, deploy)


def test_every_channel_but_deploy_refuses_a_repeated_sequence(pair):
    signer, verifier = pair
    for channel in ("cmd", "update"):  # sorting before and after "deploy"
        payload = signer.sign({}, "f1", "dev01", 60.0)
        verifier.check(channel, payload)
        with pytest.raises(ProtocolError, match="replayed"):
            verifier.check(channel, payload)


def test_a_negative_sequence_is_refused_on_a_fresh_device(pair):
    signer, verifier = pair
    payload = signer.sign({}, "f1", "dev01", 60.0)
    payload["seq"] = -1
    payload["sig"] = signer.key.sign(canonical(payload)).signature.hex()
    with pytest.raises(ProtocolError, match="replayed"):
        verifier.check("cmd", payload)


def test_a_sequence_of_zero_is_accepted_on_a_fresh_device(pair):
    signer, verifier = pair
    payload = signer.sign({}, "f1", "dev01", 60.0)
    payload["seq"] = 0
    payload["sig"] = signer.key.sign(canonical(payload)).signature.hex()
    verifier.check("cmd", payload)
    assert verifier.last == {"cmd": 0}


def test_unsigned_tampered_misaddressed_expired_and_unsequenced_are_refused(pair, tmp_path):
    signer, verifier = pair

    def resigned(**changes):
        payload = {**signer.sign({"op": "x"}, "f1", "dev01", 60.0), **changes}
        payload["sig"] = signer.key.sign(canonical(payload)).signature.hex()
        return payload

    good = signer.sign({"op": "x"}, "f1", "dev01", 60.0)
    cases = [
        ({k: v for k, v in good.items() if k != "sig"}, "is not signed"),
        ({**good, "sig": 5}, "is not signed"),
        ({**good, "sig": good["sig"][:-2]}, "is not signed"),
        ({**good, "sig": good["sig"] + "00"}, "is not signed"),
        ({**good, "sig": "zz" * 64}, "does not verify"),
        ({**good, "op": "y"}, "does not verify"),
        (signer.sign({"op": "x"}, "f2", "dev01", 60.0), "is for f2/dev01, not this device"),
        (signer.sign({"op": "x"}, "f1", "dev02", 60.0), "is for f1/dev02, not this device"),
        (signer.sign({"op": "x"}, "f0", "dev01", 60.0), "is for f0/dev01, not this device"),  # sorting before
        (signer.sign({"op": "x"}, "f1", "dev00", 60.0), "is for f1/dev00, not this device"),
        (signer.sign({"op": "x"}, "f1", "dev01", -1.0), "expired"),
        (resigned(expires="soon"), "expired"),
        (resigned(seq=None), "no sequence number"),
        (resigned(seq=1.5), "no sequence number"),
        (resigned(seq=True), "no sequence number"),
    ]
    other = CommandSigner(
        new_command_key(tmp_path / "other.key", tmp_path / "other.pub") and (tmp_path / "other.key").read_text()
    )
    cases.append((other.sign({"op": "x"}, "f1", "dev01", 60.0), "does not verify"))
    for payload, words in cases:
        with pytest.raises(ProtocolError, match=words):
            verifier.check("cmd", payload)
    assert verifier.last == {} and not (tmp_path / "seq.json").exists()
    verifier.check("cmd", good)  # still accepted after every refusal


def test_an_unreadable_sequence_file_starts_afresh(tmp_path, pair):
    signer, _ = pair
    for text in ("not json", "[1, 2]"):
        (tmp_path / "seq.json").write_text(text)
        assert CommandVerifier(signer.public, "f1", "dev01", tmp_path / "seq.json").last == {}
    assert CommandVerifier(signer.public, "f1", "dev01", tmp_path / "absent.json").last == {}


def test_a_sequence_that_cannot_be_recorded_is_not_acted_on(tmp_path):
    """A full disk (here: the state file's folder gone) must not take the agent's MQTT thread down,
    and an unrecorded sequence would let a replay through after a restart: refused instead."""
    import shutil

    from edgekit.protocol import ProtocolError
    from edgekit.signing import CommandSigner, CommandVerifier

    signer = CommandSigner("22" * 32)
    folder = tmp_path / "state"
    folder.mkdir()
    verifier = CommandVerifier(signer.public, "f1", "dev00", folder / "commands.json")
    shutil.rmtree(folder)
    message = signer.sign({"id": "c1", "command": "status"}, "f1", "dev00", 60)
    with pytest.raises(ProtocolError, match="cannot record its sequence"):
        verifier.check("cmd", message)
    folder.mkdir()
    verifier.check("cmd", message)  # not recorded before, so not a replay now


def test_a_clock_set_back_does_not_lock_devices_out(pair, tmp_path):
    """The manager once signed with its clock a year ahead, then the clock was corrected: devices
    that accepted the year-ahead sequence still accept what it signs next, after a restart too."""
    from edgekit.fleet.store import FleetStore

    signer, verifier = pair
    store = FleetStore(tmp_path / "fleet.sqlite")
    ahead = time.time_ns() + 365 * 86400 * 10**9
    key = (tmp_path / "cmd.key").read_text()
    signer = CommandSigner(key, last_seq=ahead - 1, record=lambda seq: store.record_sequence("command", seq))
    verifier.check("cmd", signer.sign({"op": "a"}, "f1", "dev01", 60.0))
    assert store.sequence("command") == ahead
    restarted = CommandSigner(key, store.sequence("command"), lambda seq: store.record_sequence("command", seq))
    for op in ("b", "c"):
        verifier.check("cmd", restarted.sign({"op": op}, "f1", "dev01", 60.0))
    assert store.sequence("command") == ahead + 2
    store.close()
