"""Broker accounts and ACL (edgekit.fleet.access) line by line, without a broker: Mosquitto's
``$7$`` and ``$6$`` hashes, the password file, MQTT topic wildcards and the ACL file, and the
embedded broker's view that reads both again when they change. The brokers themselves enforce
these in test_broker_access.py."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest

from edgekit.fleet.access import (
    ITERATIONS,
    Acl,
    BrokerAccess,
    add_user,
    check_password,
    hash_password,
    read_passwd,
    topic_matches,
)


def test_a_7_hash_is_pbkdf2_sha512_with_a_12_byte_salt():
    assert ITERATIONS == 101
    stored = hash_password("s3cret")
    empty, kind, iterations, salt, digest = stored.split("$")
    assert (empty, kind, iterations) == ("", "7", "101")
    salt = base64.b64decode(salt)
    assert len(salt) == 12 and salt != base64.b64decode(hash_password("s3cret").split("$")[3])
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)
    assert hash_password("x", iterations=7).startswith("$7$7$") and check_password(hash_password("x", 7), "x")


def test_check_password_takes_7_and_6_and_refuses_anything_else():
    salt = b"0123456789ab"

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    seven = f"$7$5${b64(salt)}${b64(hashlib.pbkdf2_hmac('sha512', b'pw', salt, 5))}"
    six = f"$6${b64(salt)}${b64(hashlib.sha512(b'pw' + salt).digest())}"
    assert check_password(seven, "pw") and not check_password(seven, "pW")
    assert check_password(six, "pw") and not check_password(six, "p")
    for stored in (
        "pw",
        "$7$5$" + seven.split("$", 3)[3] + "$x",  # six fields
        seven.replace("$7$", "$8$", 1),
        six.replace("$6$", "$5$", 1),
        six.replace("$6$", "$7$", 1),  # a $6$ hash under the other kind
        seven.replace("$7$", "$6$", 1),
        "$6$" + six.split("$", 2)[2] + "$x",
        seven.replace("$5$", "$five$", 1),  # iterations not a number
        "$7$5$!!!$!!!",  # not base64
        "$6$!!!$!!!",
        "",
    ):
        assert not check_password(stored, "pw"), stored


def test_password_file_reads_users_and_skips_comments_and_junk(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("# comment:x\n  alice:$7$a  \n\nno-colon\n:nouser\nbob:$6$b:c\n#bob:zzz\n")
    assert read_passwd(path) == {"alice": "$7$a", "bob": "$6$b:c"}


def test_add_user_adds_and_replaces_in_a_0600_file(tmp_path):
    path = tmp_path / "passwd"
    add_user(path, "alice", "one")
    add_user(path, "bob", "two")
    add_user(path, "alice", "three")
    users = read_passwd(path)
    assert list(users) == ["alice", "bob"]
    assert check_password(users["alice"], "three") and not check_password(users["alice"], "one")
    assert check_password(users["bob"], "two")
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("+/b", "x/b", True),
        ("a/#", "a/b/c", True),
        ("a/#", "b/c", False),
        ("#", "anything/at/all", True),
        ("a/+/c", "a/b/d", False),
        ("a/b/#", "a", False),
        ("a/", "a/b", False),  # an empty level is a level, not a wildcard
        ("a//b", "a/x/b", False),
        ("a/", "a/", True),
    ],
)
def test_topic_wildcards(pattern, topic, matches):
    assert topic_matches(pattern, topic) is matches


def test_a_pattern_deeper_than_the_topic_does_not_match():
    deep = "/".join(["a"] * 300)
    assert not topic_matches(deep, "/".join(["a"] * 257)) and topic_matches(deep, deep)


def test_acl_file_grants_per_user_and_to_everyone(tmp_path):
    path = tmp_path / "acl"
    path.write_text(
        "# comment\n"
        "topic read public/#\n"
        "user dev01\n"
        "topic write f1/dev01/telemetry\n"
        "topic read f1/dev01/cmd/#\n"
        "  # indented comment\n"
        "user dev02 extra\n"  # not a user line: dev01's block goes on
        "users dev03\n"  # nor this
        "pattern write f1/#\n"  # Mosquitto's pattern lines: not read here, so they grant nothing
        "user\n"  # nor this
        "#\n"
        "topic f1/dev01/both\n"
        "topic bogus a b\n"
        "user manager\n"
        "topic readwrite f1/#\n"
        "user admin\n"
        "topic #\n"
    )
    acl = Acl.read(path)
    assert acl.rules[None] == [("read", "public/#")]
    assert acl.rules["dev01"] == [
        ("write", "f1/dev01/telemetry"),
        ("read", "f1/dev01/cmd/#"),
        ("readwrite", "f1/dev01/both"),
    ]
    assert acl.allows("dev01", "write", "f1/dev01/telemetry")
    assert not acl.allows("dev01", "read", "f1/dev01/telemetry")
    assert acl.allows("dev01", "read", "f1/dev01/cmd/x") and not acl.allows("dev01", "write", "f1/dev01/cmd/x")
    assert acl.allows("dev01", "read", "f1/dev01/both") and acl.allows("dev01", "write", "f1/dev01/both")
    assert acl.allows("dev01", "read", "public/news") and acl.allows(None, "read", "public/news")
    assert not acl.allows(None, "write", "public/news") and not acl.allows("dev02", "read", "f1/dev01/cmd/x")
    assert acl.allows("manager", "write", "f1/dev02/cmd/y") and acl.allows("manager", "read", "f1/x")
    assert not acl.allows("nobody", "read", "f1/dev01/cmd/x")
    assert not acl.allows("dev01", "write", "f1/dev02/telemetry")  # the pattern line granted nothing
    assert acl.rules["admin"] == [("readwrite", "#")] and acl.allows("admin", "write", "any/topic")


def test_broker_access_reads_again_when_a_file_changes_and_authenticates(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    stamps = iter(range(1, 100))

    def changed(*names):  # a new mtime each time: two writes within a clock tick may share one
        for name in names:
            os.utime(folder / name, ns=(0, next(stamps) * 10**9))

    access = BrokerAccess.read(folder)  # no files yet: nobody, nothing
    assert access.users == {} and access.acl.rules == {}
    assert not access.authenticate("dev01", "pw") and not access.authenticate(None, None)
    add_user(folder / "passwd", "dev01", "pw")
    (folder / "acl").write_text("user dev01\ntopic write t\n")
    changed("passwd", "acl")
    assert access.authenticate("dev01", "pw")
    assert not access.authenticate("dev01", "wrong") and not access.authenticate("dev01", None)
    assert not access.authenticate("dev02", "pw") and not access.authenticate(None, "pw")
    assert access.acl.allows("dev01", "write", "t")
    add_user(folder / "passwd", "dev02", "pw2")
    (folder / "acl").write_text("user dev02\ntopic write t\n")
    changed("passwd", "acl")
    assert access.authenticate("dev02", "pw2") and access.acl.allows("dev02", "write", "t")
    assert not access.acl.allows("dev01", "write", "t")
    (folder / "acl").unlink()
    access.refresh()
    assert access.acl.rules == {} and access.authenticate("dev01", "pw")
    (folder / "passwd").unlink()
    access.refresh()
    assert access.users == {} and not access.authenticate("dev01", "pw")
    # a line with no user name is no account: anonymous (None or "") never matches it
    add_user(folder / "passwd", "", "pw")
    assert not access.authenticate(None, "pw") and not access.authenticate("", "pw")
