"""The fleet manager: ingests status, telemetry and deployment progress into SQLite (WAL,
batched writes from one writer thread), keeps the device registry, and runs rollouts:
a canary group first, then waves by percentage, each gated on its failure rate, aborting and
rolling the affected devices back past ``max_failures``. Rollout state lives in the database,
so a restarted manager resumes where it stopped."""

from __future__ import annotations

import itertools
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from edgekit import protocol
from edgekit.errors import InputError
from edgekit.fleet.access import quarantine
from edgekit.fleet.gates import Gates, judge_telemetry
from edgekit.fleet.ratelimit import DEFAULT_BUDGET, DeviceBudget, DeviceLimiter
from edgekit.fleet.store import FleetStore
from edgekit.mqtt import choose_version, connect_args, make_client
from edgekit.protocol import FAILED_STEPS, FINAL_STEPS, ROLLOUT_ENDS, RolloutState, Step

__all__ = ["FleetManager", "FleetStore"]

log = logging.getLogger("edgekit.fleet")

ROLLBACK_BY_COMMAND = "rollback by command"  # the reason shown; the state is set by type


@dataclass
class Counters:
    received: int = 0
    stored: int = 0
    malformed: int = 0
    storage_errors: int = 0  # store attempts the database refused (disk full, down): retried
    barred: int = 0  # times a device overdrew its message budget and was barred


class FleetManager:
    def __init__(
        self,
        db: str | Path,  # a SQLite file or a postgresql:// URL
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        batch_size: int = 500,
        client_id: str = "edgekit-fleet",
        tls: dict | None = None,  # {"ca": CA file, "cert": client certificate, "key": client key}
        mqtt_version: str = "auto",
        command_key: str | None = None,  # hex ed25519 seed: deploys and commands are signed with it
        budget: DeviceBudget | None = DEFAULT_BUDGET,  # per-device message budget; None: unlimited
        broker_folder: str | Path | None = None,  # the provision folder of a broker serve manages
    ) -> None:
        from edgekit.signing import CommandSigner

        self.store = FleetStore(db)
        self.signer = None
        if command_key:  # sequences never repeat or go down, across restarts and clock steps
            record = partial(self.store.record_sequence, "command")
            self.signer = CommandSigner(command_key, self.store.sequence("command"), record)
        self.counters = Counters()
        self.limiter = DeviceLimiter(budget, self._bar) if budget else None
        self.broker_folder = Path(broker_folder) if broker_folder else None
        self.on_bar: Callable[[], None] | None = None  # the managed broker's apply_bars, when serve runs one
        self.queue: queue.Queue = queue.Queue()
        self.batch_size = batch_size
        self._stop = threading.Event()
        # a persistent session under a stable id: with a persistent broker (Mosquitto's
        # persistence), telemetry published while the manager reconnects is queued, not lost
        self.mqtt_version = choose_version(mqtt_version, host, port, tls)
        # manual acknowledgement: a message is acknowledged once it is in the database, so whatever the
        # manager had not stored when it died is redelivered to its persistent session
        self.client = make_client(
            client_id, self.mqtt_version, username, password, tls, persistent=True, manual_ack=True
        )
        self._unstored: list = []  # messages a storage error kept out of the database: retried, not acked
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.refused: str | None = None  # the broker's reason, when it turned the manager away
        self._answered = threading.Event()
        self.host, self.port = host, port
        self._sent: set[tuple[str, str]] = set()
        self._rolled_back: set[tuple[str, str]] = set()
        self._loop_errors: dict[str, str] = {}  # rollout ("" for the loop) -> the error last logged

    def start(self, wait_s: float = 10.0) -> bool:
        """Connect and start the writer and rollout threads; wait up to ``wait_s`` for the broker to
        acknowledge the subscriptions, so that whatever is published after this returns is heard
        (the first session of a new client id holds no subscriptions until then). Returns whether
        it did; if not (``refused`` says why when the broker said no), the manager keeps trying in
        the background."""
        self.client.connect(self.host, self.port, keepalive=15, **connect_args(self.mqtt_version, persistent=True))
        self.client.loop_start()
        self._writer_thread = threading.Thread(target=self._writer, name="edgekit-fleet-writer", daemon=True)
        self._writer_thread.start()
        threading.Thread(target=self._rollout_loop, name="edgekit-rollouts", daemon=True).start()
        if self._answered.wait(wait_s) and self.subscribed.is_set():
            return True
        if self.refused is None:
            log.warning("no subscription acknowledgement from %s:%s in %g s", self.host, self.port, wait_s)
        return False

    def stop(self) -> None:
        self._stop.set()
        self.flush()  # stored and acknowledged while still connected
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            if self._answered.is_set():  # the first refusal is start()'s to report
                log.warning("the broker at %s:%s refused the connection: %s", self.host, self.port, reason_code)
            self._answered.set()
            return
        client.subscribe([(f"{protocol.PREFIX}/+/+/{c}", 1) for c in ("status", "telemetry", "progress", "cmd/resp")])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self.refused = f"{len(refused)} of the subscriptions refused ({refused[0]})"
            log.warning("the broker at %s:%s refused %s", self.host, self.port, self.refused)
        else:
            self.refused = None
            self.subscribed.set()
        self._answered.set()

    def _on_message(self, client, userdata, message) -> None:
        self.counters.received += 1
        try:
            self._receive(message)
        except Exception:  # paho's loop thread dies with an exception here, and all ingest with it
            self.counters.malformed += 1
            log.exception("ignored a message on %s that could not be handled", message.topic)
            self._ack(message.mid, message.qos)

    def _receive(self, message) -> None:
        try:
            t = protocol.parse_topic(message.topic)
            if self.limiter is not None:
                self.limiter.admit(t.fleet, t.device)  # what arrived is stored all the same
            payload = protocol.decode(t.channel, message.payload)
        except protocol.ProtocolError as exc:
            self.counters.malformed += 1
            log.warning("ignored a message on %s: %s", message.topic, exc)
            self._ack(message.mid, message.qos)  # never storable: nothing to redeliver
            return
        if payload:
            self.queue.put(((t.fleet, t.device, t.channel, payload), (message.mid, message.qos)))
        else:
            self._ack(message.mid, message.qos)

    def _bar(self, fleet: str, device: str, seconds: float) -> None:
        self.counters.barred += 1
        over = f"device {fleet}/{device} sent more than {self.limiter.budget.describe()}"
        if self.broker_folder is None:
            log.warning("%s; the broker is not serve's, so nothing bars it: rate-limit it there", over)
            return
        try:
            quarantine(self.broker_folder, device, seconds)
        except OSError as exc:  # the manager keeps ingesting whatever the bar's fate
            log.warning("%s; could not bar it: %s", over, exc)
            return
        log.warning("%s: barred from the broker for %.0f s", over, seconds)
        if self.on_bar is not None:
            self.on_bar()

    def _ack(self, mid: int, qos: int) -> None:
        if qos:
            self.client.ack(mid, qos)

    def _writer(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush(timeout=0.2)
            except Exception:  # the writer thread must outlive anything one batch does
                log.exception("storing a batch failed")

    def flush(self, timeout: float = 0.0) -> None:
        """Store what arrived, in one transaction, then acknowledge it. A message whose content the
        database refuses is malformed (counted, acknowledged, dropped); a storage error (disk full,
        database down) is not the message's fault: it stays unacknowledged and is retried."""
        batch, self._unstored = self._unstored, []
        if batch:
            time.sleep(min(timeout, 0.5))  # the database refused these a moment ago
        try:
            if not batch:
                batch.append(self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait())
            while len(batch) < self.batch_size:
                batch.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        if not batch:
            return
        try:
            self.store.write([m for m, _ in batch])
        except Exception:  # which message, or the database?
            self._store_one_by_one(batch)
            return
        self.counters.stored += len(batch)
        for _, (mid, qos) in batch:
            self._ack(mid, qos)

    def _store_one_by_one(self, batch: list) -> None:
        for k, (message, (mid, qos)) in enumerate(batch):
            try:
                self.store.write([message])
            except self.store.refused_data as exc:  # the message's content: drop it
                self.counters.malformed += 1
                log.warning("could not store a %s message from %s: %s", message[2], message[1], exc)
            except self.store.errors as exc:  # the database's trouble, not the message's: hold the rest
                self._unstored = batch[k:]
                self.counters.storage_errors += 1
                log.warning("cannot store %d messages (%s); held unacknowledged, retrying", len(batch) - k, exc)
                return
            except Exception as exc:  # KeyError, TypeError, OverflowError...: the message's content
                self.counters.malformed += 1
                log.warning("could not store a %s message from %s: %s", message[2], message[1], exc)
            else:
                self.counters.stored += 1
            self._ack(mid, qos)

    # --- deployments and rollouts --------------------------------------------------------------
    def devices(self, fleet: str, tag: str | None = None) -> list[str]:
        rows = self.store.query("SELECT device, tags FROM devices WHERE fleet=? ORDER BY device", (fleet,))
        return [d for d, tags in rows if tag is None or tag in json.loads(tags or "[]")]

    def resolve_targets(self, fleet: str, targets: list[str]) -> list[str]:
        """``all``, ``tag:NAME`` and ``id:A,B`` (or bare device ids) -> registered devices, in order."""
        known, chosen = self.devices(fleet), []
        for target in targets:
            kind, _, value = target.partition(":") if ":" in target else ("id", "", target)
            if target == "all":
                found = known
            elif kind == "tag":
                found = self.devices(fleet, value)
            elif kind == "id":
                found = [d for d in value.split(",") if d]
                unknown = [d for d in found if d not in known]
                if unknown:
                    raise InputError(f"unknown device(s) {unknown} in fleet {fleet!r}")
            else:
                raise InputError(f"cannot target {target!r}: use all, tag:NAME or id:DEVICE[,DEVICE]")
            chosen += [d for d in found if d not in chosen]
        if not chosen:
            raise InputError(f"{' '.join(targets)} matches no registered device in fleet {fleet!r}")
        return chosen

    def _signed(self, channel: str, fleet: str, device: str, fields: dict) -> bytes:
        from edgekit.signing import COMMAND_TTL_S, DEPLOY_TTL_S

        if self.signer is not None:
            ttl = DEPLOY_TTL_S if channel == "deploy" else COMMAND_TTL_S
            fields = self.signer.sign(fields, fleet, device, ttl)
        return protocol.encode(channel, **fields)

    def deploy_to(self, fleet: str, device: str, deploy: dict) -> None:
        payload = self._signed("deploy", fleet, device, deploy)
        self.client.publish(protocol.topic(fleet, device, "deploy"), payload, qos=1, retain=True)

    def withdraw_deploy(self, fleet: str, device: str, deployment: str) -> None:
        """Replace the retained desired state, so a device that was offline does not pick it up:
        with a signed cancel whose newer sequence makes the device refuse the withdrawn deploy if
        anyone replays it (an empty message would leave the signed deploy valid for a month);
        without a command key (a lab), with an empty retained message."""
        topic = protocol.topic(fleet, device, "deploy")
        if self.signer is None:
            self.client.publish(topic, b"", qos=1, retain=True)
            return
        cancel = self._signed("deploy", fleet, device, {"deployment": deployment, "cancel": True})
        self.client.publish(topic, cancel, qos=1, retain=True)

    def command(self, fleet: str, device: str, command: str, **fields) -> None:
        payload = self._signed("cmd", fleet, device, {"id": uuid.uuid4().hex, "command": command, **fields})
        self.client.publish(protocol.topic(fleet, device, "cmd"), payload, qos=1)

    def start_rollout(
        self,
        fleet: str,
        deploy: dict,
        devices: list[str],
        canary: float = 0.05,
        waves: tuple[float, ...] = (0.25, 0.5, 1.0),
        max_failures: float = 0.1,
        gates: Gates | dict | None = None,
    ) -> str:
        """Canary (at least one device) first, then cumulative waves of the device list; each wave
        passes its health gates before the next starts."""
        if not devices:
            raise InputError("no devices to deploy to")
        if not 0 <= canary < 1 or not waves or any(not 0 < w <= 1 for w in waves):
            raise InputError(
                "canary is a share in [0, 1) and waves shares in (0, 1], e.g. --canary 5% --waves 25,50,100"
            )
        if any(later <= earlier for earlier, later in itertools.pairwise(waves)):
            raise InputError(
                f"waves are cumulative shares, each above the one before, e.g. 25,50,100 (got {list(waves)})"
            )
        gates = gates if isinstance(gates, Gates) else Gates.from_dict({"max_failures": max_failures, **(gates or {})})
        rollout_id = deploy["deployment"]
        if not isinstance(rollout_id, str) or not protocol.SAFE_ID.fullmatch(rollout_id):
            raise InputError(
                f"rollout id {str(rollout_id)[:80]!r} is not valid: an id is {protocol.SAFE_ID_RULE} "
                "(devices refuse others)"
            )
        if self.store.query("SELECT 1 FROM rollouts WHERE id=?", (rollout_id,)):
            raise InputError(f"rollout {rollout_id} exists already")
        self._refuse_devices_in_open_rollouts(fleet, devices)
        n = len(devices)
        cuts = sorted({max(1, math.ceil(canary * n))} | {math.ceil(w * n) for w in waves} | {n})
        now = time.time()
        self.store.execute(
            "INSERT INTO rollouts (id, fleet, deploy, devices, waves, max_failures, wave, state, created, gates,"
            " wave_started, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rollout_id,
                fleet,
                json.dumps(deploy),
                json.dumps(devices),
                json.dumps(cuts),
                gates.max_failures,
                0,
                RolloutState.RUNNING.value,
                now,
                json.dumps(gates.to_dict()),
                now,
                "",
            ),
        )
        self._event(rollout_id, "started", f"{len(devices)} devices, waves end at {cuts}", figures=gates.to_dict())
        self._advance(rollout_id)
        return rollout_id

    def _refuse_devices_in_open_rollouts(self, fleet: str, devices: list[str]) -> None:
        """A device takes part in one unfinished rollout at a time: two would send it two deploys,
        and each rollout's gates would judge telemetry of the other's model."""
        ends = tuple(state.value for state in ROLLOUT_ENDS)
        rows = self.store.query(
            f"SELECT id, devices FROM rollouts WHERE fleet=? AND state NOT IN ({','.join('?' * len(ends))})",
            (fleet, *ends),
        )
        wanted = set(devices)
        for other, members in rows:
            busy = sorted(wanted & set(json.loads(members)))
            if busy:
                raise InputError(
                    f"{', '.join(busy[:5])}{' ...' if len(busy) > 5 else ''} {'is' if len(busy) == 1 else 'are'} "
                    f"in rollout {other}, which has not ended: abort it or let it finish first"
                )

    def _event(
        self, rollout_id: str, kind: str, message: str, device: str | None = None, figures: dict | None = None
    ) -> None:
        """One line of the rollout's event log: stored, served by the API, and logged at INFO."""
        self.store.execute(
            "INSERT INTO rollout_events VALUES (?,?,?,?,?,?)",
            (rollout_id, time.time(), kind, device, message, json.dumps(figures or {})),
        )
        log.info("rollout %s: %s%s %s", rollout_id, kind, f" {device}" if device else "", message)

    def events(self, rollout_id: str, since: float = 0.0, limit: int = 1000) -> list[dict]:
        self._rollout(rollout_id)  # an unknown rollout is an error, not an empty log
        rows = self.store.query(
            "SELECT ts, kind, device, message, figures FROM rollout_events "
            "WHERE rollout=? AND ts>? ORDER BY ts LIMIT ?",
            (rollout_id, since, limit),
        )
        return [
            {"ts": ts, "kind": kind, "device": device, "message": message, "figures": json.loads(figures or "{}")}
            for ts, kind, device, message, figures in rows
        ]

    def _rollout(self, rollout_id: str) -> dict:
        rows = self.store.query(
            "SELECT fleet, deploy, devices, waves, wave, state, created, gates, wave_started, reason, rollback "
            "FROM rollouts WHERE id=?",
            (rollout_id,),
        )
        if not rows:
            raise InputError(f"no rollout {rollout_id!r}; edgekit fleet rollouts lists them")
        fleet, deploy, devices, cuts, wave, state, created, gates, wave_started, reason, rollback = rows[0]
        return {
            "id": rollout_id,
            "fleet": fleet,
            "deploy": json.loads(deploy),
            "devices": json.loads(devices),
            "cuts": json.loads(cuts),
            "wave": wave,
            "state": RolloutState(state),
            "created": created,
            "gates": Gates.from_dict(json.loads(gates or "{}")),
            "wave_started": wave_started or created,
            "reason": reason or "",
            "rollback": bool(rollback),
        }

    def rollout_status(self, rollout_id: str) -> dict:
        r = self._rollout(rollout_id)
        rows = self.store.query(
            "SELECT device, step, reason FROM deployment_state WHERE deployment=? AND fleet=?", (rollout_id, r["fleet"])
        )
        steps = {device: step for device, step, _ in rows}
        failures = {device: reason for device, step, reason in rows if step in FAILED_STEPS}
        counts: dict[str, int] = {}
        for step in steps.values():
            counts[step] = counts.get(step, 0) + 1
        return {
            "id": rollout_id,
            "state": r["state"],
            "reason": r["reason"],
            "wave": r["wave"],
            "cuts": r["cuts"],
            "devices": r["devices"],
            "steps": steps,
            "failures": failures,  # device -> why it failed or was rolled back, in its own words
            "counts": counts,
            "package": r["deploy"].get("package"),
            "version": r["deploy"].get("version"),
            "gates": r["gates"].to_dict(),
            "created": r["created"],
        }

    def rollouts(self) -> list[dict]:
        return [self.rollout_status(i) for (i,) in self.store.query("SELECT id FROM rollouts ORDER BY created")]

    def _set_state(
        self, rollout_id: str, state: RolloutState, reason: str = "", allowed: tuple[RolloutState, ...] = ()
    ) -> None:
        current = self._rollout(rollout_id)["state"]
        if allowed and current not in allowed:
            raise InputError(f"rollout {rollout_id} is {current}; cannot make it {state}")
        self.store.execute(
            "UPDATE rollouts SET state=?, reason=?, wave_started=? WHERE id=?",
            (state.value, reason, time.time(), rollout_id),
        )
        self._event(rollout_id, state.value, reason)

    def pause(self, rollout_id: str) -> None:
        """Hold the rollout: no new devices get it; those at work finish."""
        self._set_state(rollout_id, RolloutState.PAUSED, "paused by command", allowed=(RolloutState.RUNNING,))

    def resume(self, rollout_id: str) -> None:
        self._set_state(rollout_id, RolloutState.RUNNING, "", allowed=(RolloutState.PAUSED,))
        self._advance_or_pause(rollout_id)

    def abort(
        self,
        rollout_id: str,
        reason: str = "aborted by command",
        rollback: bool = False,
        final: RolloutState = RolloutState.ABORTED,
    ) -> None:
        """Stop the rollout: devices that have not started never will (their retained desired state
        is cleared); with ``rollback`` every device it switched goes back to its previous model.
        ``final``: the state it ends in (``aborted``, or ``rolled_back`` when the operator asked)."""
        r = self._rollout(rollout_id)
        if r["state"] in ROLLOUT_ENDS and not rollback:
            raise InputError(f"rollout {rollout_id} is {r['state']} already")
        self._set_state(rollout_id, final, reason)
        if rollback:
            self.store.execute("UPDATE rollouts SET rollback=1 WHERE id=?", (rollout_id,))
        steps = self.rollout_status(rollout_id)["steps"]
        for device in r["devices"]:
            if (rollout_id, device) in self._sent or device in steps:
                self.withdraw_deploy(r["fleet"], device, rollout_id)
        if rollback:
            self._roll_back_switched(rollout_id, r["fleet"], steps)

    def rollback(self, rollout_id: str) -> None:
        self.abort(rollout_id, ROLLBACK_BY_COMMAND, rollback=True, final=RolloutState.ROLLED_BACK)

    def _roll_back_switched(self, rollout_id: str, fleet: str, steps: dict[str, str]) -> None:
        for device, step in steps.items():
            if step in (Step.SWITCHED, Step.COMMITTED) and (rollout_id, device) not in self._rolled_back:
                self.command(fleet, device, "rollback", deployment=rollout_id)
                self._rolled_back.add((rollout_id, device))

    def _telemetry_rows(self, fleet: str, devices: list[str], since: float) -> list[tuple[str, str]]:
        marks = ",".join("?" * len(devices))
        return self.store.query(
            f"SELECT device, payload FROM telemetry WHERE fleet=? AND ts>=? AND device IN ({marks})",
            (fleet, since, *devices),
        )

    def _advance(self, rollout_id: str) -> None:
        r = self._rollout(rollout_id)
        if r["rollback"]:  # stragglers that switch after a rollback go back too
            self._roll_back_switched(rollout_id, r["fleet"], self.rollout_status(rollout_id)["steps"])
            return
        if r["state"] != RolloutState.RUNNING:
            return
        gates: Gates = r["gates"]
        status = self.rollout_status(rollout_id)
        steps = status["steps"]
        self._log_failures(rollout_id, status["failures"])
        targeted = r["devices"][: r["cuts"][r["wave"]]]
        failed = [d for d in targeted if steps.get(d) in FAILED_STEPS]
        if failed and len(failed) / len(targeted) > gates.max_failures:
            self.abort(
                rollout_id, f"{len(failed)} of {len(targeted)} devices failed (gate {gates.max_failures:.0%})", True
            )
            return
        for d in targeted:
            if d not in steps and (rollout_id, d) not in self._sent:
                self.deploy_to(r["fleet"], d, r["deploy"])
                self._sent.add((rollout_id, d))
        timed_out = time.time() - r["wave_started"] > gates.wave_timeout_s
        if any(steps.get(d) not in FINAL_STEPS for d in targeted) and not timed_out:
            return
        if not self._wave_has_evidence(r, steps, timed_out):
            return
        if gates.needs_telemetry and not self._telemetry_gates_pass(r, targeted, steps, timed_out):
            return
        if r["wave"] + 1 < len(r["cuts"]):
            self.store.execute(
                "UPDATE rollouts SET wave=?, wave_started=? WHERE id=?", (r["wave"] + 1, time.time(), rollout_id)
            )
            self._event(
                rollout_id, "wave", f"wave {r['wave'] + 2}/{len(r['cuts'])} opened: {r['cuts'][r['wave'] + 1]} devices"
            )
            self._advance(rollout_id)
        else:
            self.store.execute("UPDATE rollouts SET state=? WHERE id=?", (RolloutState.DONE.value, rollout_id))
            self._event(
                rollout_id, RolloutState.DONE.value, f"{list(steps.values()).count(Step.COMMITTED)} devices committed"
            )

    def _wave_has_evidence(self, r: dict, steps: dict[str, str], timed_out: bool) -> bool:
        """A wave passes only if one of its own devices committed: silence is no evidence. Devices
        still silent at the timeout stop blocking once another committed (they get it when they
        return); if none did, the rollout pauses saying so (resume waits again, abort stops)."""
        wave = r["wave"]
        own = r["devices"][r["cuts"][wave - 1] if wave else 0 : r["cuts"][wave]]
        if any(steps.get(d) == Step.COMMITTED for d in own):
            return True
        silent = [d for d in own if d not in steps]
        reason = (
            f"no evidence: none of wave {wave + 1}'s {len(own)} devices committed the new model"
            + (f"; {len(silent)} never reported a step ({', '.join(silent[:5])})" if silent else "")
            + (" (wave timeout)" if timed_out else "")
        )
        self._set_state(r["id"], RolloutState.PAUSED, reason)
        return False

    def _telemetry_gates_pass(self, r: dict, targeted: list[str], steps: dict[str, str], timed_out: bool) -> bool:
        """Judge the wave's telemetry; a failed gate aborts and rolls back, and a wave that ran out
        of time without evidence pauses (no evidence is no pass: a person decides)."""
        rollout_id, gates = r["id"], r["gates"]
        committed = [d for d in targeted if steps.get(d) == Step.COMMITTED]
        window = r["created"] - 3600  # what the devices reported in the hour before, as the baseline
        rows = self._telemetry_rows(r["fleet"], committed, window) if committed else []
        switched = dict(
            self.store.query(
                "SELECT device, switched_ts FROM deployment_state WHERE deployment=? AND switched_ts IS NOT NULL",
                (rollout_id,),
            )
        )
        verdict = judge_telemetry(gates, r["deploy"]["sha256"], rows, rows, committed, switched)
        if not verdict.ready and verdict.failures and timed_out:
            self.abort(rollout_id, "health gate: " + "; ".join(verdict.reasons), rollback=True)
            return False
        if not verdict.ready:
            if timed_out:  # resume waits again, abort stops it
                self._set_state(rollout_id, RolloutState.PAUSED, "; ".join(verdict.reasons) + " (wave timeout)")
            return False
        verdict_text = "failed: " + "; ".join(verdict.reasons) if not verdict.passed else "passed"
        self._event(rollout_id, "gate", f"wave {r['wave'] + 1} {verdict_text}", figures=verdict.figures)
        if not verdict.passed:
            self.abort(rollout_id, "health gate: " + "; ".join(verdict.reasons), rollback=True)
        return verdict.passed

    def _log_failures(self, rollout_id: str, failures: dict[str, str]) -> None:
        """A device failed or rolled back: one event each, with its reason (once, across restarts)."""
        if not failures:
            return
        logged = {
            d
            for (d,) in self.store.query(
                "SELECT device FROM rollout_events WHERE rollout=? AND kind='device_failed'", (rollout_id,)
            )
        }
        for device, reason in failures.items():
            if device not in logged:
                self._event(rollout_id, "device_failed", reason or "(no reason given)", device=device)

    def _rollout_loop(self) -> None:
        """Judge every live rollout twice a second. Nothing one rollout does stops the others or
        the loop: a rollout whose judgement raises pauses with the error as its reason."""
        while not self._stop.wait(0.5):
            try:
                due = self.store.query(
                    "SELECT id FROM rollouts WHERE state=? OR (state IN (?, ?) AND rollback=1)",
                    (RolloutState.RUNNING.value, RolloutState.ABORTED.value, RolloutState.ROLLED_BACK.value),
                )
            except Exception as error:  # the store is down: the next turn tries again
                self._log_loop_error("", error)
                continue
            self._loop_errors.pop("", None)  # the store is back: log its next outage
            for (rollout_id,) in due:
                self._advance_or_pause(rollout_id)

    def _advance_or_pause(self, rollout_id: str) -> None:
        try:
            self._advance(rollout_id)
        except Exception as error:
            self._pause_on_error(rollout_id, error)

    def _pause_on_error(self, rollout_id: str, error: Exception) -> None:
        self._log_loop_error(rollout_id, error)
        try:
            if self._rollout(rollout_id)["state"] == RolloutState.RUNNING:  # resume judges it again
                reason = f"paused: judging the rollout failed: {type(error).__name__}: {error}"
                self._set_state(rollout_id, RolloutState.PAUSED, reason)
        except Exception as again:  # the store itself fails: the next turn tries again
            self._log_loop_error(rollout_id, again)

    def _log_loop_error(self, rollout_id: str, error: Exception) -> None:
        """Log an error of the rollout loop with its traceback once, not twice a second."""
        text = f"{type(error).__name__}: {error}"
        if self._loop_errors.get(rollout_id) != text:
            self._loop_errors[rollout_id] = text
            log.error("rollout loop%s: %s", f" ({rollout_id})" if rollout_id else "", text, exc_info=error)

    def prune_telemetry(self, older_than_s: float) -> int:
        """Retention: drop telemetry windows older than this; returns how many went."""
        return self.store.prune_telemetry(older_than_s)
