"""A real Mosquitto broker on a free loopback port, for the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, folder: Path, port: int | None = None, extra: str = "", persistent: bool = False) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.skip("mosquitto is not installed (scripts/dev test installs it)")
        self.port = port or free_port()
        self.conf = folder / "mosquitto.conf"
        # "user root": as root Mosquitto would drop to its own user, which cannot read pytest's private tmp
        store = f"persistence true\npersistence_location {folder}/\n" if persistent else "persistence false\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{store}user root\n{extra}")
        self.binary = binary
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
