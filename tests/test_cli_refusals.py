"""Settings that used to crash or do harm are refused in one line, exit 2, before anything
starts: ``bench --min-secs nan`` (a ValueError traceback) or ``1e999`` (OverflowError), a negative
warm-up, an absurd run count; ``fleet serve --retention-days -1`` (it deleted every telemetry
window stored) or ``nan``; ``--tls-ca`` naming no file (a FileNotFoundError traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def edgekit(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *argv], cwd=cwd, capture_output=True, text=True, timeout=60)


def assert_one_line_refusal(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


BENCH = [
    (["--min-secs", "nan"], ["--min-secs must be a number of seconds from 0 to 150", "nan"]),
    (["--min-secs", "1e999"], ["--min-secs must be", "inf"]),
    (["--min-secs", "-1"], ["--min-secs must be"]),
    (["--warmup", "-1"], ["--warmup must be a whole number from 0"]),
    (["--runs", "99999999999999999999"], ["--runs must be a whole number from 1 to"]),
    (["--runs", "0"], ["--runs must be"]),
    (["--threads", "0"], ["--threads 0 must be a whole number from 1 to"]),  # the flag, not the parameter
]


@pytest.mark.parametrize(("argv", "words"), BENCH, ids=[" ".join(a) for a, _ in BENCH])
def test_bench_refuses_settings_its_loops_cannot_honour(tmp_path, argv, words):
    from tests.runtime.models import float_model

    (tmp_path / "float.tflite").write_bytes(float_model())
    assert_one_line_refusal(edgekit("bench", "float.tflite", "--threads", "1", *argv, cwd=tmp_path), *words)


SERVE = [
    (["--retention-days", "-1"], ["--retention-days", "-1 must be a number of days above 0"]),
    (["--retention-days", "0"], ["--retention-days", "must be a number of days above 0"]),
    (["--retention-days", "nan"], ["--retention-days", "nan must be"]),
    (["--retention-days", "1e999"], ["--retention-days", "must be"]),
    (["--retention-days", "month"], ["--retention-days", "'month' is not a number of days"]),
    (["--tls-ca", "/nonexistent/ca.pem"], ["--tls-ca /nonexistent/ca.pem: no such file"]),
    (["--tls-ca", "."], ["--tls-ca .: not a file"]),
    (["--tls-ca", "ca.pem", "--tls-cert", "missing.crt"], ["--tls-cert missing.crt: no such file"]),
    (["--tls-ca", "ca.pem", "--tls-key", "missing.key"], ["--tls-key missing.key: no such file"]),
    (["--tls-cert", "ca.pem"], ["--tls-cert and --tls-key need --tls-ca"]),
]


@pytest.mark.parametrize(("argv", "words"), SERVE, ids=[" ".join(a) for a, _ in SERVE])
def test_fleet_serve_refuses_before_starting_anything(tmp_path, argv, words):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    serve = ("fleet", "--db", "f.db", "serve", "--broker", "embedded", "--port", "0", "--http-port", "0")
    assert_one_line_refusal(edgekit(*serve, *argv, cwd=tmp_path), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem"]  # no database, token or broker folder


@pytest.mark.parametrize("action", [["init", "--root-key", "r.key", "--targets-key", "t.key"], ["serve"]])
@pytest.mark.parametrize("db", ["model.onnx", "folder"])
def test_fleet_refuses_a_db_that_is_no_database_before_writing_anything(tmp_path, action, db):
    """A red-team probe gave an ONNX model as --db: init took it, and serve failed only after
    writing the token, the update metadata and the broker's files next to it."""
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch not a database")
    (tmp_path / "folder").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = edgekit("fleet", "--db", db, *action, cwd=tmp_path)
    assert_one_line_refusal(result, f"--db {db}")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
