"""``edgekit demo``: the whole product on one machine, run as a user runs it. The fleet's own
records (its database, each device's OTA state) say what happened, not the demo's printout; and
whatever ends the demo, no process it started may outlive it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO_TIMEOUT_S = 300
FIRST_SUMMARY_LIMIT_S = 120  # the promise on a 2-core machine
DEVICES = ("pi4-1", "pi5-2", "coral-3")  # the demo's default three, the canary first


def demo_command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgekit", "demo", "--port", "0", "--workdir", str(workdir), *extra]


def processes_of(folder: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process but this one whose command line names ``folder`` or
    whose working directory lies in it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if str(folder) in cmdline or Path(cwd).is_relative_to(folder):
            found.append((int(entry.name), cmdline))
    return found


def left_behind(workdir: Path) -> list[tuple[int, str]]:
    """What still runs from ``workdir`` (a zombie has no command line: a reaped-late child is not
    counted), killed here so a failing run does not leave it to the next test."""
    survivors = processes_of(workdir)
    for pid, _ in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return survivors


def run_demo(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    process = subprocess.Popen(demo_command(workdir, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # let it stop its children, then give up on it
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"the demo took over {DEMO_TIMEOUT_S} s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_headless_demo_rolls_out_int8_and_the_canary_stops_the_broken_package(tmp_path):
    workdir = tmp_path / "demo"
    try:
        result = run_demo(workdir, "--headless")
    finally:
        survivors = left_behind(workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not survivors, f"processes outlived the demo: {survivors}"

    for device in DEVICES:
        state = json.loads((workdir / "devices" / device / "state" / "models" / "state.json").read_text())
        assert state["current"]["version"] == "2" and state["pending"] is None, (device, state)
        assert state["highest_versions"] == {"digits": "2"}, (device, state)
    with sqlite3.connect(workdir / "fleet.sqlite") as db:
        versions = dict(db.execute("SELECT device, version FROM devices"))
        rollouts = {
            i: (state, rollback) for i, state, rollback in db.execute("SELECT id, state, rollback FROM rollouts")
        }
        broken_steps = dict(db.execute("SELECT device, step FROM deployment_state WHERE deployment='digits-3-broken'"))
        gate_verdicts = [m for (m,) in db.execute("SELECT message FROM rollout_events WHERE kind='gate'")]
    assert versions == dict.fromkeys(DEVICES, "2")
    assert rollouts["digits-2-int8"] == ("done", 0)
    assert len(gate_verdicts) == 3 and all(v.endswith("passed") for v in gate_verdicts), gate_verdicts
    assert rollouts["digits-3-broken"] == ("aborted", 1)
    assert broken_steps == {"pi4-1": "failed"}

    out = result.stdout
    assert "the canary pi4-1 refused it" in out
    for device in DEVICES:
        assert re.search(rf"^\s+{device}\s+\S+\s+online\s+digits 2\s+\d", out, re.M), out
    seconds = int(re.search(r"first summary (\d+) s after the start", out).group(1))
    assert seconds <= FIRST_SUMMARY_LIMIT_S, out
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ctrl_c_in_the_middle_stops_every_process(tmp_path):
    workdir = tmp_path / "demo"
    printout = tmp_path / "demo.out"
    with printout.open("w") as out:
        process = subprocess.Popen(demo_command(workdir), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        while "[4/5]" not in printout.read_text():  # a rollout under way: manager and devices all running
            assert process.poll() is None and time.monotonic() < deadline, printout.read_text()
            time.sleep(0.2)
        assert len(processes_of(workdir)) >= 1 + len(DEVICES)
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        survivors = left_behind(workdir)
    assert returncode == 130, printout.read_text()
    assert not survivors, f"processes outlived the demo: {survivors}"
    assert "Traceback" not in printout.read_text()


def test_a_taken_port_is_one_line_offering_another(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgekit",
                "demo",
                "--headless",
                "--port",
                str(port),
                "--workdir",
                str(tmp_path / "d"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and f"port {port} is taken" in result.stderr
    assert "--port" in result.stderr
    assert not (tmp_path / "d").exists()  # refused before making anything
