"""A real PostgreSQL server in a temporary folder on a free loopback port, for the tests."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.fleet.mosquitto import free_port


class Postgres:
    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.skip("PostgreSQL is not installed (scripts/dev test installs it)")
        self.bin = os.path.dirname(found[-1])
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="edgekit-pg-")
        # PostgreSQL refuses to run as root: as root, run it as the postgres user
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        user = "postgres" if self.as_user else os.environ.get("USER", "postgres")
        self.url = f"postgresql://{user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> Postgres:
        data = f"{self.folder}/data"
        self._run(f"{self.bin}/initdb", "-D", data, "-A", "trust", "-U", self.url.split("//")[1].split("@")[0])
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(f"{self.bin}/pg_ctl", "-D", data, "-o", options, "-l", f"{self.folder}/log", "-w", "start")
        return self

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, f"{self.bin}/pg_ctl", "-D", f"{self.folder}/data", "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)
