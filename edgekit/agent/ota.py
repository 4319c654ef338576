"""Over-the-air model updates on the device: an explicit, persisted state machine.

    idle -> downloading -> verified -> installed -> health_ok -> switched -> committed
                 \\______________\\___________\\___________\\-> failed (previous model keeps serving)
    switched/committed -> rolled_back (error rate too high after the switch)

The device keeps two slots; the package goes into the inactive one and the switch is one
atomic rename of ``state.json``. Every step is written before it is taken, so a process killed
at any point restarts on a consistent model: before the switch the old model still serves and
the unfinished deployment is cleaned up and retried; after it but before the commit, the switch
is rolled back (the new model never proved itself) and the deployment counts as failed.

``state.json`` carries a ``version``; an older file is migrated when it is read (``migrate_state``),
one written by a newer agent is left untouched and refused for changes (``StateVersionError``)
while the model it names keeps serving."""

from __future__ import annotations

import errno
import http.client
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit import package
from edgekit.agent.trust import UpdateTrust
from edgekit.errors import FleetError, PackageError
from edgekit.protocol import SAFE_ID, ProtocolError, Step

log = logging.getLogger("edgekit.agent")

CHUNK = 1 << 16
STALL_S = 30.0  # no byte for this long: the connection is dead
DOWNLOAD_ATTEMPTS = 4  # with backoff 1, 2, 4 s between them, each resuming where the last stopped
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the disk or the user's quota: the download and the slot are removed


def download_deadline(size: int) -> float:
    """The whole download's time limit: a minute, plus what 16 kB/s needs (a trickle is not a download)."""
    return 60.0 + size / 16_000


class Superseded(OSError):
    """A newer desired state arrived while this deployment was downloading."""


@dataclass
class Deployment:
    id: str
    package: str
    sha256: str
    size: int
    url: str
    name: str = ""
    version: str = ""

    @classmethod
    def from_message(cls, payload: dict, allowed_hosts: frozenset[str] | set[str]) -> Deployment:
        """A deployment from a deploy message whose every field has been checked: nothing of an
        unverified message reaches a path, a URL or a file operation before it passes here.
        ``allowed_hosts``: the only hosts packages may come from (the fleet's own servers)."""
        d = cls(
            payload["deployment"],
            payload["package"],
            payload["sha256"],
            payload["size"],
            payload["url"],
            payload.get("name", "") or "",
            payload.get("version", "") or "",
        )
        d.validate(allowed_hosts)
        return d

    def validate(self, allowed_hosts: frozenset[str] | set[str]) -> None:
        from urllib.parse import urlsplit

        checks = (
            ("deployment", self.id, SAFE_ID),
            ("package", self.package, SAFE_NAME),
            ("sha256", self.sha256, HEX_SHA256),
            ("name", self.name, SAFE_NAME_OR_EMPTY),
            ("version", self.version, SAFE_NAME_OR_EMPTY),
        )
        for field_name, value, pattern in checks:
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise ProtocolError(f"deploy field {field_name!r} is not valid: {str(value)[:80]!r}")
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 < self.size <= package.MAX_PACKAGE_BYTES
        ):
            raise ProtocolError(f"deploy field 'size' must be 1..{package.MAX_PACKAGE_BYTES} bytes")
        url = urlsplit(self.url) if isinstance(self.url, str) else None
        if url is None or url.scheme not in ("http", "https") or url.username or url.password:
            raise ProtocolError(f"deploy url must be http(s) without credentials: {str(self.url)[:80]!r}")
        if url.hostname not in allowed_hosts:
            raise ProtocolError(f"deploy url host {url.hostname!r} is not one of the fleet's {sorted(allowed_hosts)}")


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
SAFE_NAME_OR_EMPTY = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._+-]{0,127})?")
HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def version_key(version: str) -> tuple:
    """Order of package versions: dotted numbers numerically ("1.10" > "1.9"), words after them."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version))


Reporter = Callable[[str, str, dict], None]  # (deployment id, step, details)

STATE_VERSION = 1  # of state.json; a change older agents cannot read safely takes the next number


class StateVersionError(FleetError):
    """A state.json this agent cannot read for changes: written by a newer agent, or damaged."""


def _unversioned_to_1(state: dict) -> dict:
    """The format before versions: the same fields, the optional ones not always present."""
    return {"given_up": [], "highest_versions": {}, **state, "version": 1}


MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _unversioned_to_1}  # from version -> to the next


def migrate_state(state: dict, path: Path | str = "state.json") -> dict:
    """``state`` in the current format; a file from a newer agent (or not a state) is refused."""
    version = state.get("version", 0) if isinstance(state, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise StateVersionError(f"{path} is not an agent state (version {version!r}); restore it from a backup")
    if version > STATE_VERSION:
        raise StateVersionError(
            f"{path} has version {version}, written by a newer agent; this one reads up to {STATE_VERSION}: "
            "upgrade edgekit on this device (the model it names keeps serving, updates wait)"
        )
    while version < STATE_VERSION:
        state = MIGRATIONS[version](state)
        version = state["version"]
    return state


class Slots:
    """The device's model store: ``state.json``, two slots, a download folder."""

    def __init__(self, root: str | os.PathLike, trust: UpdateTrust) -> None:
        self.root = Path(root)
        self.trust = trust
        self.superseded = threading.Event()  # set by the agent when a newer desired state arrives
        self.download_deadline = download_deadline  # size -> seconds
        # called with each step once it is persisted, before it is acted on (tests stop the process there)
        self.after_step: Callable[[Step], None] | None = None
        for sub in ("slots/a", "slots/b", "downloads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not (self.root / "state.json").exists():
            empty = {"current": None, "previous": None, "pending": None, "given_up": [], "highest_versions": {}}
            self._save({"version": STATE_VERSION, **empty})
        self._upgrade_state()

    # --- persisted state -----------------------------------------------------------------
    def _read(self) -> dict:
        return json.loads((self.root / "state.json").read_text())

    def state(self) -> dict:
        """The state in the current format, to change it: StateVersionError when that is not safe."""
        return migrate_state(self._read(), self.root / "state.json")

    def _upgrade_state(self) -> None:
        """An older state.json is rewritten in the current format at once; a newer one is kept as
        it is (a newer agent may come back to it) and logged: the agent serves, updates wait."""
        try:
            state = self.state()
        except StateVersionError as exc:
            log.error("%s", exc)
            return
        if state != self._read():
            self._save(state)

    def _save(self, state: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.root)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / "state.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # on a full disk, no half-written copies pile up
            raise

    def _step(self, step: str, **fields) -> None:
        state = self.state()
        state["pending"] = {**(state["pending"] or {}), "step": step, **fields}
        self._save(state)
        self._stepped(step)

    def _stepped(self, step: Step) -> None:
        if self.after_step is not None:
            self.after_step(step)

    # --- what the application runs -----------------------------------------------------
    def current_model(self) -> Path | None:
        current = self.current()
        return None if current is None else self.root / "slots" / current["slot"] / current["model"]

    def current(self) -> dict | None:
        """What serves. Every version of state.json keeps ``current`` in this form, so an agent
        reads it from a newer agent's file too and keeps serving."""
        current = self._read().get("current")
        if current is not None and not (
            isinstance(current, dict)
            and current.get("slot") in ("a", "b")
            and all(isinstance(current.get(k), str) for k in ("model", "sha256"))
        ):
            raise StateVersionError(f"{self.root / 'state.json'} names no model this agent can serve: {current!r}")
        return current

    def current_manifest(self) -> dict | None:
        current = self.current()
        if current is None:
            return None
        try:
            return json.loads((self.root / "slots" / current["slot"] / package.MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def _serving_manifest_path(self) -> Path | None:
        current = self.current()
        if current is None:
            return None
        path = self.root / "slots" / current["slot"] / package.MANIFEST
        return path if path.exists() else None

    def _inactive(self) -> str:
        current = self.state()["current"]
        return "b" if current is not None and current["slot"] == "a" else "a"

    # --- the update -------------------------------------------------------------------------
    def deploy(self, d: Deployment, report: Reporter, budget_s: float = 60.0) -> bool:
        """Run one deployment to the end; True when the new model serves."""
        if (self.current() or {}).get("sha256") == d.sha256:
            report(d.id, Step.COMMITTED, {"note": "already serving"})
            return True
        try:
            given_up = self.state()["given_up"]
        except StateVersionError as exc:  # nothing is written: the state is a newer agent's
            report(d.id, Step.FAILED, {"reason": str(exc)})
            return False
        if d.id in given_up:
            report(d.id, Step.FAILED, {"reason": "this deployment failed or was rolled back here before"})
            return False
        self._step(Step.RECEIVED, deployment=d.__dict__)
        report(d.id, Step.RECEIVED, {})
        archive = self.root / "downloads" / f"{d.sha256}.tar"
        try:
            slot, manifest = self._install(d, report, archive, budget_s)
        except (PackageError, HealthCheckError) as exc:  # the package is bad: never retry it here
            archive.unlink(missing_ok=True)
            self._fail(d, report, str(exc))
            return False
        except Superseded as exc:
            self._fail(d, report, str(exc), give_up=False)
            return False
        except OSError as exc:  # network or disk: the retained desired state retries it later
            if exc.errno in DISK_FULL:
                archive.unlink(missing_ok=True)  # the partial download or the unpacked archive: its space back
                self._discard_unfinished_slot()
                exc = OSError(exc.errno, f"no space left on the device for the package: {_space(d, archive)}")
            self._fail(d, report, f"{exc.strerror or exc}", give_up=False)
            return False
        except Exception as exc:  # a fault of this agent's: reported, the previous model keeps serving
            log.exception("deployment %s failed unexpectedly", d.id)
            self._fail(d, report, f"unexpected error: {type(exc).__name__}: {exc}", give_up=False)
            return False
        self._switch(d, slot, manifest)
        report(d.id, Step.SWITCHED, {"slot": slot})
        self._collect_downloads()
        return True

    def _install(self, d: Deployment, report: Reporter, archive: Path, budget_s: float) -> tuple[str, dict]:
        """Download, verify, unpack into the inactive slot and health-check: (slot, manifest)."""
        signed = self.trust.target(d.url, d.package)
        if (signed.sha256, signed.length) != (d.sha256, d.size):
            raise PackageError(
                f"the deploy message's sha256 and size for {d.package} are not what the fleet's "
                "signed targets metadata says: refusing it"
            )
        self._download(d, report, archive)
        try:
            package.check_digest(archive, sha256=signed.sha256, size=signed.length)
        except PackageError:
            archive.unlink(missing_ok=True)  # a corrupt download must not poison the next attempt
            raise
        slot = self._inactive()
        self._step(Step.VERIFIED, slot=slot)  # from here a failure (a full disk mid-unpack) empties the slot
        report(d.id, Step.VERIFIED, {})
        target = self.root / "slots" / slot
        shutil.rmtree(target, ignore_errors=True)
        manifest = package.unpack(archive, target)
        if (manifest.get("name"), manifest.get("version")) != (signed.name, signed.version):
            raise PackageError(
                f"the package's manifest says {manifest.get('name')} {manifest.get('version')}, "
                f"its signed metadata {signed.name} {signed.version}: refusing it"
            )
        self._refuse_downgrade(manifest)
        self._refuse_incompatible(manifest)
        self._step(Step.INSTALLED, slot=slot)
        report(d.id, Step.INSTALLED, {"slot": slot})
        health = healthcheck(
            target / manifest["model"], manifest.get("latency_budget_ms"), budget_s,
            manifest=target / package.MANIFEST, serving=self._serving_manifest_path(),
        )  # fmt: skip
        self._step(Step.HEALTH_OK, health=health)
        report(d.id, Step.HEALTH_OK, health)
        return slot, manifest

    def _switch(self, d: Deployment, slot: str, manifest: dict) -> None:
        """The new model serves from here: one atomic rename of state.json."""
        state = self.state()
        state["previous"], state["current"] = (
            state["current"],
            {
                "slot": slot,
                "model": manifest["model"],
                "sha256": d.sha256,
                "name": manifest.get("name", ""),
                "version": manifest.get("version", ""),
                "deployment": d.id,
            },
        )
        state["pending"] = {**state["pending"], "step": Step.SWITCHED}
        self._save(state)
        self._stepped(Step.SWITCHED)

    def _collect_downloads(self) -> None:
        """Archives are needed only until they are unpacked into a slot: none is kept after a switch."""
        for path in (self.root / "downloads").iterdir():
            path.unlink(missing_ok=True)

    def _refuse_downgrade(self, manifest: dict) -> None:
        """Versions only go up (per model name), whatever a signed old package or a replayed
        deploy message says; going back means publishing the old model under a new version."""
        name, version = manifest.get("name", ""), manifest.get("version", "")
        state = self.state()
        floors = [state["highest_versions"].get(name)]
        if (state["current"] or {}).get("name") == name:
            floors.append(state["current"].get("version"))
        for floor in [f for f in floors if f is not None]:
            if version_key(version) <= version_key(floor):
                raise PackageError(
                    f"{name} {version} is not newer than {floor}, installed here before: refusing a downgrade "
                    "(to go back, publish that model again under a new version)"
                )

    def _refuse_incompatible(self, manifest: dict) -> None:
        """A model whose inputs or outputs differ from the serving one's breaks the application
        that feeds it, however healthy it is alone: refused unless packaged with --io-change. A
        preprocessing spec that cannot feed the model fails here too, before any call fails."""
        problems = package.preprocessing_problems(manifest.get("preprocessing") or {}, manifest.get("io"))
        if manifest.get("preprocessing") and problems:
            raise HealthCheckError(
                "incompatible: the package's preprocessing does not fit its model: " + "; ".join(problems)
            )
        serving = (self.current_manifest() or {}).get("io")
        differences = package.io_differences(serving, manifest.get("io"))
        if differences and not manifest.get("io_change"):
            raise HealthCheckError(
                "incompatible with the serving model: "
                + "; ".join(differences[:4])
                + " (package it with --io-change if the applications expect that)"
            )

    def commit(self, deployment_id: str, report: Reporter) -> None:
        try:
            state = self.state()
        except StateVersionError as exc:  # called from invocations: must not raise
            log.error("cannot commit %s: %s", deployment_id, exc)
            return
        if state["pending"] and state["pending"].get("step") == Step.SWITCHED:
            state["pending"] = None
            current = state["current"] or {}
            name, version = current.get("name", ""), current.get("version", "")
            highest = state["highest_versions"]
            if name and version and (name not in highest or version_key(version) > version_key(highest[name])):
                highest[name] = version  # a committed version is the floor from now on
            self._save(state)
            report(deployment_id, Step.COMMITTED, {})

    def rollback(self, deployment_id: str, report: Reporter, reason: str) -> bool:
        try:
            state = self.state()
        except StateVersionError as exc:  # called from MQTT callbacks and invocations: must not raise
            log.error("cannot roll back %s: %s", deployment_id, exc)
            return False
        if (
            not deployment_id
            or state["previous"] is None
            or (state["current"] or {}).get("deployment") != deployment_id
        ):
            return False  # unnamed, nothing to go back to, or that deployment is not what serves now
        state["current"], state["previous"], state["pending"] = state["previous"], None, None
        _give_up(state, deployment_id)
        self._save(state)
        report(deployment_id, Step.ROLLED_BACK, {"reason": reason})
        return True

    def _discard_unfinished_slot(self) -> None:
        state = self.state()
        slot = (state["pending"] or {}).get("slot")
        if slot and (state["current"] is None or state["current"]["slot"] != slot):
            shutil.rmtree(self.root / "slots" / slot, ignore_errors=True)

    def _fail(self, d: Deployment, report: Reporter, reason: str, give_up: bool = True) -> None:
        self._discard_unfinished_slot()  # before saving: on a full disk its space is what saving needs
        state = self.state()
        state["pending"] = None
        if give_up:
            _give_up(state, d.id)
        self._save(state)
        report(d.id, Step.FAILED, {"reason": reason})

    def resume(self, report: Reporter) -> Deployment | None:
        """After a restart: settle an interrupted deployment. Returns one to retry, if any."""
        try:
            state = self.state()
        except StateVersionError:  # logged when the slots were opened: what it names keeps serving
            return None
        pending = state["pending"]
        if pending is None:
            return None
        known = Deployment.__dataclass_fields__
        d = Deployment(**{k: v for k, v in pending["deployment"].items() if k in known})
        if pending.get("step") == Step.SWITCHED:
            # the new model never proved itself (the agent stopped before the commit): as
            # Mender does, an uncommitted switch is rolled back, and the deployment failed here
            reason = "the agent restarted before the new model was committed; rolled back"
            if not self.rollback(d.id, report, reason):
                self.commit(d.id, report)  # a first model: nothing to go back to
            return None
        self._fail(d, report, f"interrupted at {pending.get('step')}; the previous model kept serving", give_up=False)
        return d

    def _download(self, d: Deployment, report: Reporter, path: Path) -> None:
        """Resumable, size-limited download into ``path``: each attempt continues where the last
        stopped (HTTP Range), a stalled or cut connection is tried again with backoff, a trickling
        server is given up on after ``download_deadline``, and a newer desired state stops it."""
        if d.size > package.MAX_PACKAGE_BYTES:
            raise PackageError(f"package of {d.size} bytes is over the device limit")
        self._step(Step.DOWNLOADING)
        deadline = time.monotonic() + self.download_deadline(d.size)
        for attempt in range(DOWNLOAD_ATTEMPTS):
            have = path.stat().st_size if path.exists() else 0
            if have > d.size:
                path.unlink()
                have = 0
            report(d.id, Step.DOWNLOADING, {"offset": have, "attempt": attempt + 1})
            if have == d.size:
                return
            try:
                self._fetch(d, path, have, deadline)
                return
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, Superseded) or getattr(exc, "errno", None) in DISK_FULL:
                    raise
                if attempt + 1 == DOWNLOAD_ATTEMPTS or time.monotonic() > deadline:
                    raise OSError(f"download failed after {attempt + 1} attempt(s): {exc}") from None
                if self.superseded.wait(min(2.0**attempt, max(0.0, deadline - time.monotonic()))):
                    raise Superseded("a newer desired state arrived during the download") from None

    def _fetch(self, d: Deployment, path: Path, have: int, deadline: float) -> None:
        request = urllib.request.Request(d.url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(request, timeout=STALL_S) as response, path.open("ab") as out:
            if have and response.status != 206:
                out.truncate(0)  # the server ignored Range: start over
            while True:
                if self.superseded.is_set():
                    raise Superseded("a newer desired state arrived during the download")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the download took longer than {self.download_deadline(d.size):.0f} s")
                chunk = response.read1(CHUNK)  # what has arrived: a trickle cannot hold the loop past its deadline
                if not chunk:
                    break
                out.write(chunk)
                if out.tell() > d.size:
                    out.truncate(0)
                    raise PackageError("download is larger than announced")
        if path.stat().st_size < d.size:
            raise ConnectionError(f"the connection closed after {path.stat().st_size} of {d.size} bytes")


class HealthCheckError(Exception):
    pass


def healthcheck(
    model: Path,
    latency_budget_ms: float | None,
    timeout_s: float = 60.0,
    manifest: Path | None = None,
    serving: Path | None = None,
) -> dict:
    """Load and run the candidate in a separate process: a crash there cannot take the agent
    down. Checks finite outputs, the latency budget when the manifest sets one, and the loaded
    model's signature against its ``manifest`` and the ``serving`` package's manifest."""
    # -I: the installed edgekit, never an edgekit/ folder in the working directory (nor PYTHONPATH)
    cmd = [sys.executable, "-I", "-m", "edgekit.agent.healthcheck", str(model)]
    if latency_budget_ms:
        cmd += ["--budget-ms", str(latency_budget_ms)]
    for option, path in (("--manifest", manifest), ("--serving", serving)):
        if path is not None:
            cmd += [option, str(path)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise HealthCheckError(f"health check did not finish in {timeout_s:.0f} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise HealthCheckError(f"health check failed: {last}")
    return json.loads(result.stdout)


def _space(d: Deployment, archive: Path) -> str:
    """The package's size against what the state folder has free, for the failure reason."""
    try:
        free = f"{shutil.disk_usage(archive.parent).free:,}"
    except OSError:
        free = "unknown"
    return f"{d.size:,} bytes to download and then unpack, {free} bytes free"


def _give_up(state: dict, deployment_id: str, keep: int = 50) -> None:
    state["given_up"] = [*state["given_up"], deployment_id][-keep:]
