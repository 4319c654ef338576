"""Disk full, for real (issue 18), on a 2 MB tmpfs: on the device, a deployment whose download or
unpack runs out of space ends in ``failed`` with the reason, reported through progress, while the
previous model keeps serving, the partial files go and the agent stays up; at the manager, a
database on a full disk holds telemetry back unacknowledged and stores all of it once there is room."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgekit import package
from edgekit.agent.runner import Agent, AgentConfig
from edgekit.broker import Broker
from edgekit.errors import InputError
from edgekit.fleet.manager import FleetManager
from edgekit.protocol import ROLLOUT_ENDS
from edgekit.runtime import load
from tests.fleet.test_fleet_mqtt import _deploy_message, wait_for
from tests.fleet.test_ingest import _publish

DISK_BYTES = 2 * 1024 * 1024


@contextlib.contextmanager
def small_disk(folder):
    """A 2 MB tmpfs at ``folder``, owned by this user, unmounted afterwards (as root, or through
    ``sudo -n`` as scripts/dev installs packages)."""
    folder.mkdir(parents=True, exist_ok=True)
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    options = f"size={DISK_BYTES},uid={os.getuid()},gid={os.getgid()},mode=0700"
    try:
        mounted = subprocess.run(
            [*as_root, "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
        )
    except FileNotFoundError as exc:  # no sudo
        pytest.skip(f"cannot mount a tmpfs here (needs root or sudo): {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or sudo): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([*as_root, "umount", "-l", str(folder)], check=True)


def _files(folder) -> list[str]:
    """The folder's files once no atomic write is in flight: the agent writes commands.json by a
    temporary .NAME.XXXX.tmp and a rename, and a listing taken between the two (as one CI run's
    was) holds a file that is gone a moment later. A temporary file still there after 5 s is left
    behind, and stays in the listing."""
    import time

    deadline = time.monotonic() + 5
    while True:
        found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        in_flight = any(Path(name).name.startswith(".") and name.endswith(".tmp") for name in found)
        if not in_flight or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _too_big_model(tmp_path, how: str):
    """A model file larger than the whole disk: random bytes stay that large in the package (the
    download fills the disk), zeros pack into a few kB and fill it when unpacked."""
    model = tmp_path / f"too-big-{how}.tflite"
    size = DISK_BYTES + 512 * 1024
    model.write_bytes(np.random.default_rng(0).bytes(size) if how == "download" else bytes(size))
    return model


@pytest.mark.parametrize("fills_at", ["download", "unpack"])
def test_a_full_disk_on_the_device_fails_the_deployment_with_the_reason(
    tmp_path, keys, models, server, command_key, fills_at
):
    with small_disk(tmp_path / "device") as state_dir:
        broker = Broker(port=0).start()
        manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
        agent = None
        try:
            assert manager.start()
            config = AgentConfig(
                fleet="f1",
                device="dev00",
                state_dir=str(state_dir),
                trusted_root=server.root_bytes().decode(),
                port=broker.port,
                telemetry_interval_s=3600,
                watch_invocations=0,
                command_key=command_key[1],
            )
            agent = Agent(config)
            agent.start()
            wait_for(lambda: manager.devices("f1") == ["dev00"], what="the device registered")

            def roll_out(info, deployment: str, final: str) -> dict:
                server.publish(info)
                manager.start_rollout("f1", _deploy_message(info, server.base, deployment), ["dev00"], 0, (1.0,))
                wait_for(
                    lambda: manager.rollout_status(deployment)["steps"].get("dev00") == final,
                    what=f"dev00 {final} in {deployment}",
                    detail=lambda: manager.rollout_status(deployment),
                )
                # a device is in one unfinished rollout at a time: end this one before the next
                if final == "committed":  # done, or its gates wait for telemetry this test does not send
                    with contextlib.suppress(InputError):  # "is done already"
                        manager.abort(deployment)
                else:  # the failed deployment fails the wave's gate, which ends the rollout
                    wait_for(
                        lambda: manager.rollout_status(deployment)["state"] in ROLLOUT_ENDS,
                        what=f"{deployment} ended",
                        detail=lambda: manager.rollout_status(deployment),
                    )
                return manager.rollout_status(deployment)

            first = package.build(models[0], tmp_path / "fc-1.tar", name="fc", version="1", signing_key=keys[0])
            roll_out(first, "r1", "committed")
            files_serving_v1 = _files(state_dir)

            too_big_model = _too_big_model(tmp_path, fills_at)
            too_big = package.build(
                too_big_model, tmp_path / "fc-2.tar", name="fc", version="2", signing_key=keys[0], validate=False
            )
            assert (too_big.size > DISK_BYTES) == (fills_at == "download")
            status = roll_out(too_big, "r2", "failed")
            assert status["failures"]["dev00"].startswith("no space left on the device for the package")

            # the previous model serves, nothing of the package is left, and the agent carries on
            assert agent.slots.current()["version"] == "1"
            outputs = load(agent.slots.current_model(), threads=1).run({"features": np.zeros((1, 6), "float32")})
            assert all(np.isfinite(v).all() for v in outputs.values())
            assert _files(state_dir) == files_serving_v1
            second = package.build(models[1], tmp_path / "fc-3.tar", name="fc", version="3", signing_key=keys[0])
            roll_out(second, "r3", "committed")
            assert agent.slots.current()["version"] == "3"
        finally:
            if agent is not None:
                agent.stop()
            manager.stop()
            broker.stop()


def test_a_database_on_a_full_disk_holds_telemetry_back_and_loses_none(tmp_path):
    with small_disk(tmp_path / "db") as db_dir:
        broker = Broker(port=0).start()
        manager = FleetManager(db_dir / "fleet.sqlite", port=broker.port, batch_size=50)
        filler = db_dir / "filler"
        acknowledged = []
        ack = manager.client.ack
        manager.client.ack = lambda mid, qos: (acknowledged.append(mid), ack(mid, qos))[1]
        try:
            assert manager.start()
            with filler.open("wb") as f, contextlib.suppress(OSError):  # all the disk has left: the next write fails
                while True:
                    f.write(bytes(64 * 1024))
                    f.flush()
            _publish(broker.port, 3, 400)
            wait_for(lambda: manager.counters.storage_errors > 0, what="a write refused by the full disk")
            wait_for(lambda: manager.counters.received == 1200, what="every window delivered to the manager")
            stored_while_full = manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0]
            assert stored_while_full < 1200
            assert len(acknowledged) <= stored_while_full  # what the disk refused was not acknowledged
            assert manager.counters.malformed == 0  # the disk's trouble is not the messages' fault
            filler.unlink()  # room again
            wait_for(
                lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 1200,
                what="every held window stored",
                detail=lambda: manager.counters,
            )
            assert manager.counters.malformed == 0 and manager.counters.stored == 1200
            # acknowledged right after each commit, by the writer thread: the last batch's acks may trail the count
            wait_for(lambda: len(acknowledged) == 1200, timeout=10, what="every stored window acknowledged")
        finally:
            manager.stop()
            manager.store.close()
            broker.stop()
            filler.unlink(missing_ok=True)
    assert not os.path.ismount(tmp_path / "db")
