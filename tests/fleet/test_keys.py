"""Keys are hard to lose (issue 17): no silent overwrite, no one path for both halves, private
keys 0600 with nothing left behind, and a public key never taken for a private one or back."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from edgekit import keys
from edgekit.errors import InputError


def edgekit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_new_key_refuses_to_overwrite_and_writes_private_0600(tmp_path):
    first = edgekit("keys", "new", "fleet.key", "fleet.pub", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    private, public = (tmp_path / "fleet.key").read_text(), (tmp_path / "fleet.pub").read_text()
    assert stat.S_IMODE(os.stat(tmp_path / "fleet.key").st_mode) == 0o600
    for argv in (("keys", "new", "fleet.key", "other.pub"), ("package", "--new-key", "fleet.key", "fleet.pub")):
        again = edgekit(*argv, cwd=tmp_path)
        assert again.returncode == 2 and "exists already" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "fleet.key").read_text() == private and (tmp_path / "fleet.pub").read_text() == public
    assert not (tmp_path / "other.pub").exists()
    forced = edgekit("keys", "new", "fleet.key", "fleet.pub", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and (tmp_path / "fleet.key").read_text() != private
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.key", "fleet.pub"]  # no temp file


def test_one_path_for_both_halves_is_refused(tmp_path):
    with pytest.raises(InputError, match="two different files"):
        keys.create(tmp_path / "k", tmp_path / "k")
    assert not (tmp_path / "k").exists()


def test_public_and_private_are_told_apart_everywhere(tmp_path):
    public_hex = keys.create(tmp_path / "fleet.key", tmp_path / "fleet.pub")
    with pytest.raises(InputError, match="is a public key"):
        keys.read_private(tmp_path / "fleet.pub")
    with pytest.raises(InputError, match="is a private key"):
        keys.read_public(tmp_path / "fleet.key")
    (tmp_path / "binary").write_bytes(b"\x00\xff" * 40)
    with pytest.raises(InputError, match="not a key file"):
        keys.read_public(tmp_path / "binary")
    assert keys.read_public(tmp_path / "fleet.pub") == public_hex
    assert keys.describe(tmp_path / "fleet.key") == {"kind": "private", "public_key": public_hex}
    shown = edgekit("keys", "show", "fleet.key", cwd=tmp_path)
    assert (
        shown.returncode == 0
        and public_hex in shown.stdout
        and keys.read_private(tmp_path / "fleet.key") not in shown.stdout
    )
    # on the command line: a public key to sign with, a private key to pin
    (tmp_path / "m.tflite").write_bytes(b"x")
    signed = edgekit("package", "m.tflite", "--name", "m", "--version", "1", "--sign", "fleet.pub", cwd=tmp_path)
    assert signed.returncode == 2 and "is a public key" in signed.stderr
    pinned = edgekit("fleet", "provision", "cam1", "--command-key", "fleet.key", cwd=tmp_path)
    assert pinned.returncode == 2 and "is a private key" in pinned.stderr
    rooted = edgekit("fleet", "init", "--root-key", "fleet.pub", "--targets-key", "fleet.key", cwd=tmp_path)
    assert rooted.returncode == 2 and "is a public key" in rooted.stderr
    assert not (tmp_path / "fleet.tuf").exists() and not (tmp_path / "fleet.command.key").exists()
