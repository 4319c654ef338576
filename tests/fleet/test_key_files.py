"""edgekit.keys line by line, in process: the public key's mode follows the umask and the private
one is 0600 whatever it is, a failed write leaves no temp file, key files are told apart by their
tag (and bare hex from earlier releases still reads), and malformed files are refused."""

from __future__ import annotations

import os
import stat

import pytest

from edgekit import keys
from edgekit.errors import InputError

HEX = "ab" * 32


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o004])
def test_public_key_mode_follows_the_umask_and_private_is_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        keys.create(tmp_path / "k", tmp_path / "k.pub")
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.pub") == 0o644 & ~umask and mode(tmp_path / "k") == 0o600
    assert os.umask(old) == old  # create left the process's umask as it was


def test_create_refuses_to_overwrite_unless_forced_and_any_order_of_names_works(tmp_path):
    public = keys.create(tmp_path / "z.key", tmp_path / "a.pub")  # the private path sorts after the public
    with pytest.raises(InputError, match="exists already"):
        keys.create(tmp_path / "z.key", tmp_path / "b.pub")
    assert not (tmp_path / "b.pub").exists() and keys.read_public(tmp_path / "a.pub") == public
    assert keys.create(tmp_path / "z.key", tmp_path / "a.pub", force=True) != public
    with pytest.raises(InputError, match="does not exist"):
        keys.create(tmp_path / "no" / "k", tmp_path / "k.pub")
    with pytest.raises(InputError, match="it is a folder"):
        keys.create(tmp_path, tmp_path / "k.pub")


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    with pytest.raises(UnicodeEncodeError):
        keys.write_private(tmp_path / "secret", "\ud800")  # cannot be encoded: the write fails midway
    assert list(tmp_path.iterdir()) == []
    keys.write_private(tmp_path / "secret", "ok")
    assert (tmp_path / "secret").read_text() == "ok" and mode(tmp_path / "secret") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_bare_hex_reads_as_either_half_and_describes_as_unmarked(tmp_path):
    (tmp_path / "bare").write_text(HEX + "\n")
    assert keys.read_public(tmp_path / "bare") == HEX and keys.read_private(tmp_path / "bare") == HEX
    assert keys.describe(tmp_path / "bare") == {"kind": "unmarked (an earlier release's bare hex)", "public_key": HEX}


def test_describe_tells_public_from_private(tmp_path):
    public = keys.create(tmp_path / "k", tmp_path / "k.pub")
    assert keys.describe(tmp_path / "k.pub") == {"kind": "public", "public_key": public}
    assert keys.describe(tmp_path / "k") == {"kind": "private", "public_key": public}
    assert keys.read_private(tmp_path / "k") != public and keys.read_public(tmp_path / "k.pub") == public


@pytest.mark.parametrize(
    "text",
    [
        f"{keys.PUBLIC_TAG}:xyz",  # a known tag, no key
        f"{keys.PUBLIC_TAG}:{HEX[:-2]}",  # 31 bytes
        f"other-tag:{HEX}",  # a key, an unknown tag
        HEX.upper(),
        "",
    ],
)
def test_malformed_key_files_are_refused(tmp_path, text):
    (tmp_path / "key").write_text(text)
    with pytest.raises(InputError, match="is not an ed25519 key file"):
        keys.read_public(tmp_path / "key")


def test_a_pem_key_is_refused_saying_how_to_make_one_of_edgekits(tmp_path):
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
    (tmp_path / "key.pem").write_text(pem)
    with pytest.raises(InputError, match=r"\(a PEM file, as openssl writes\).*`edgekit keys new PRIVATE PUBLIC`"):
        keys.read_private(tmp_path / "key.pem", "signing key")


def test_a_missing_file_is_an_input_error_naming_what_was_wanted(tmp_path):
    with pytest.raises(InputError, match="cannot read the public key"):
        keys.read_public(tmp_path / "absent")
    with pytest.raises(InputError, match="cannot read the signing key"):
        keys.read_private(tmp_path / "absent", "signing key")


def test_hex_of_a_config_value():
    assert keys.hex_of(f"  {keys.PUBLIC_TAG}:{HEX}\n") == HEX
    assert keys.hex_of(HEX) == HEX
