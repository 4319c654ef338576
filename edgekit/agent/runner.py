"""The device agent over MQTT: birth/death status, telemetry windows through the outbox,
deployments through the OTA slots with progress reports, rollback on a bad error rate."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from pathlib import Path

from edgekit import protocol
from edgekit.agent.config import AgentConfig, load_config
from edgekit.agent.ota import SAFE_ID, Deployment, Slots
from edgekit.agent.outbox import Outbox
from edgekit.agent.telemetry import TelemetryCollector
from edgekit.agent.trust import UpdateTrust
from edgekit.errors import FleetError
from edgekit.mqtt import choose_version, connect_args, make_client

log = logging.getLogger("edgekit.agent")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _board(board_id: str | None):
    """The board profile that power estimates and the fleet's registry use."""
    from edgekit.devices import boards

    if board_id is None:
        return boards.detect()
    known = boards.profiles()
    if board_id not in known:
        raise FleetError(f"board {board_id!r} is not a known profile; choose one of {', '.join(sorted(known))}")
    return known[board_id]


def _normalized(config: AgentConfig) -> None:
    from edgekit.keys import hex_of

    if config.command_key:
        config.command_key = hex_of(config.command_key)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        import paho.mqtt.client as mqtt

        if not config.command_key and not config.allow_unsigned_commands:
            raise FleetError(
                "agent config has no command_key (the fleet manager's, from `edgekit fleet provision`); "
                "add it, or set allow_unsigned_commands = true for a lab"
            )
        _normalized(config)
        self.board = _board(config.board)  # a config mistake: refused before anything is made
        self.config = config
        root = Path(config.state_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.slots = Slots(root / "models", UpdateTrust(root / "tuf", config.trusted_root.encode()))
        self.outbox = Outbox(root / "outbox.sqlite", config.outbox_limit)
        self.collector = TelemetryCollector(profile=self.board)
        self.seq = 0
        self.malformed = 0
        self.rejected = 0  # deploy messages and commands refused before anything acted on them
        self.package_hosts = frozenset(config.package_hosts or [config.host])
        if config.command_key:
            from edgekit.signing import CommandVerifier

            self.verifier = CommandVerifier(config.command_key, config.fleet, config.device, root / "commands.json")
        else:
            self.verifier = None
            log.warning("allow_unsigned_commands: this device obeys deploys and commands nobody signed")
        self.errors = 0
        self.invocations = 0
        self._inflight: dict[int, mqtt.MQTTMessageInfo] = {}  # outbox row -> its publish
        self._wake = threading.Event()
        self._send_tokens, self._send_stamp = 0.0, time.monotonic()
        self._lock = threading.Lock()
        self._deploying_now: Deployment | None = None  # the deployment at work, under _lock
        self._wanted: Deployment | None = None  # the newest desired state not yet started
        self._stop = threading.Event()
        self._session = None
        self._session_sha = None
        self._watch: tuple[str, int, int] | None = None  # (deployment, invocations, errors) at the switch
        if config.tls_ca_pem and not config.tls_ca:
            config.tls_ca = str(root / "broker-ca.pem")
            Path(config.tls_ca).write_text(config.tls_ca_pem)
        tls = {"ca": config.tls_ca, "cert": config.tls_cert, "key": config.tls_key} if config.tls_ca else None
        self.mqtt_version = choose_version(config.mqtt_version, config.host, config.port, tls)
        self.client = make_client(
            f"{config.fleet}.{config.device}", self.mqtt_version, config.username, config.password, tls
        )
        self.client.will_set(self._topic("status"), self._status("offline"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        # exponential backoff (paho doubles the wait up to the cap) with jitter: every device's schedule
        # is scaled by its own random factor, so a fleet does not reconnect in lockstep after an outage
        jitter = random.uniform(0.5, 1.5)
        self.client.reconnect_delay_set(min_delay=jitter, max_delay=30 * jitter)

    # --- MQTT ---------------------------------------------------------------------------------
    def _topic(self, channel: str) -> str:
        return protocol.topic(self.config.fleet, self.config.device, channel)

    def _status(self, state: str) -> bytes:
        current = self.slots.current() or {}
        self.seq += 1
        return protocol.encode(
            "status",
            state=state,
            seq=self.seq,
            ts=protocol.now(),
            tags=self.config.tags,
            model=current.get("name"),
            version=current.get("version"),
            sha256=current.get("sha256"),
            board=self.board.id,
        )

    def start(self) -> None:
        retry = self.slots.resume(self._progress)  # before the first status: it says what serves after it
        if retry is not None:
            log.info("retrying interrupted deployment %s", retry.id)
        self.client.connect_async(
            self.config.host, self.config.port, keepalive=15, **connect_args(self.mqtt_version, persistent=False)
        )
        self.client.loop_start()
        threading.Thread(target=self._telemetry_loop, name="edgekit-telemetry", daemon=True).start()
        threading.Thread(target=self._sender_loop, name="edgekit-sender", daemon=True).start()
        if self.config.workload_images:
            threading.Thread(target=self._workload_loop, name="edgekit-workload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.client.is_connected():  # else the broker's copy of the last will says it
            info = self.client.publish(self._topic("status"), self._status("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho retries with backoff on its own; without this line an agent that cannot reach its
        # broker (wrong host, port, firewall) would say nothing, forever
        log.warning(
            "cannot reach the broker at %s:%d; retrying (check host, port and tls in the agent config)",
            self.config.host,
            self.config.port,
        )

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        # subscribe before saying "online": the broker handles a client's packets in order, so
        # whoever hears the status can already reach the agent
        client.subscribe([(self._topic("deploy"), 1), (self._topic("cmd"), 1)])
        client.publish(self._topic("status"), self._status("online"), qos=1, retain=True)
        with self._lock:  # a new session: whatever was in flight may be gone, so send it all again
            self._inflight.clear()  # (the fleet stores a window once, whatever the duplicates)
        self._flush()

    def _on_message(self, client, userdata, message) -> None:
        try:
            self._receive(message)
        except Exception:  # paho's loop thread dies with an exception here, and the agent's link with it
            self.malformed += 1
            log.exception("ignored a message on %s that could not be handled", message.topic)

    def _receive(self, message) -> None:
        try:
            channel = protocol.parse_topic(message.topic).channel
            payload = protocol.decode(channel, message.payload)
        except protocol.ProtocolError as exc:
            self.malformed += 1
            log.warning("ignored a message: %s", exc)
            return
        if not payload:
            return
        if channel in ("deploy", "cmd") and self.verifier is not None:
            try:
                self.verifier.check(channel, payload)
            except protocol.ProtocolError as exc:
                self.rejected += 1
                log.warning("refused a %s message: %s", channel, exc)
                return
        if channel == "deploy" and payload.get("cancel") is True:
            self._cancel(payload["deployment"])
        elif channel == "deploy":
            try:
                deployment = Deployment.from_message(payload, self.package_hosts)
            except protocol.ProtocolError as exc:
                self.rejected += 1
                deployment_id = payload["deployment"]  # a str: protocol.validate checked its type
                if self.verifier is not None and SAFE_ID.fullmatch(deployment_id):
                    # signed by the manager, and an id safe to echo: say why, or the rollout waits on silence
                    reason = f"refused the deploy message: {exc}"
                    self._progress(deployment_id, protocol.Step.FAILED, {"reason": reason})
                else:
                    log.warning("refused a deploy message: %s", exc)
                return
            threading.Thread(target=self._deploy, args=(deployment,), daemon=True).start()
        elif channel == "cmd":
            self._command(payload)

    def _cancel(self, deployment_id: str) -> None:
        """The fleet withdrew its desired state (a rollout aborted): a download of that deployment
        stops, one waiting never starts. Its sequence, recorded when it verified, is what makes a
        replay of the withdrawn deploy message refused; what already switched stays (rollback is
        a command of its own)."""
        log.info("the fleet withdrew deployment %s", deployment_id if SAFE_ID.fullmatch(deployment_id) else "?")
        with self._lock:
            if self._wanted is not None and self._wanted.id == deployment_id:
                self._wanted = None
            if self._deploying_now is not None and self._deploying_now.id == deployment_id:
                self.slots.superseded.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._wake.set()  # the sender thread retires acknowledged rows and sends more

    def _flush(self) -> None:
        """Ask the sender thread to send what the outbox holds (never publish from a paho callback
        or under our lock: paho holds its own locks around callbacks)."""
        self._wake.set()

    def _sender_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(5.0)
            self._wake.clear()
            try:
                self._send_pending()
            except Exception:  # the agent must not die on a send hiccup; the rows stay in the outbox
                log.exception("sending from the outbox failed")

    def _send_pending(self) -> None:
        with self._lock:
            acked = [row for row, info in self._inflight.items() if info.is_published()]
            for row in acked:
                del self._inflight[row]
        for row in acked:
            self.outbox.done(row)
        if not self.client.is_connected():
            return
        for row_id, topic, payload in self.outbox.pending():
            with self._lock:
                if row_id in self._inflight:
                    continue
            if not self._paced():
                return
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != 0:  # not connected any more: the next connection sends it
                return
            with self._lock:
                self._inflight[row_id] = info

    def _paced(self) -> bool:
        """Wait for the next send within ``send_rate`` (a second's worth at once at most), so a
        long outage's backlog drains at a rate the manager takes from every device; False on stop."""
        rate = self.config.send_rate
        now = time.monotonic()
        self._send_tokens = min(rate, self._send_tokens + (now - self._send_stamp) * rate)
        self._send_stamp = now
        if self._send_tokens < 1 and self._stop.wait((1 - self._send_tokens) / rate):
            return False
        self._send_tokens -= 1
        return True

    # --- work -----------------------------------------------------------------------------------
    def _progress(self, deployment: str, step: str, details: dict) -> None:
        if step in protocol.FAILED_STEPS:
            log.warning("deployment %s %s: %s", deployment, step, details.get("reason", ""))
        else:
            log.info("deployment %s %s", deployment, step)
        payload = protocol.encode("progress", deployment=deployment, step=step, ts=protocol.now(), details=details)
        self.outbox.put(self._topic("progress"), payload)  # store-and-forward, like telemetry
        self._flush()

    def _deploy(self, d: Deployment) -> None:
        """One deployment at a time, and always the newest desired state: one arriving during a
        download stops it (Slots.superseded) and runs next."""
        with self._lock:
            busy = self._deploying_now
            if busy is not None:
                if busy.id != d.id:  # the same one again (retained, on reconnect) changes nothing
                    self._wanted = d
                    self.slots.superseded.set()
                return
            self._deploying_now, self._wanted = d, d
        while True:
            with self._lock:
                d, self._wanted = self._wanted, None
                self._deploying_now = d
                if d is None:
                    return
                self.slots.superseded.clear()
            try:
                self._deploy_locked(d)
            except Exception:  # the deploy thread must never die silently
                log.exception("deployment %s failed unexpectedly", d.id)

    def _deploy_locked(self, d: Deployment) -> None:
        if self.slots.deploy(d, self._progress):
            self._watch = (d.id, self.invocations, self.errors)
            if self.config.watch_invocations <= 0:
                self.slots.commit(d.id, self._progress)
                self._watch = None
            self._publish_status()

    def _publish_status(self) -> None:
        """Say what serves now, the moment it changes: the fleet's registry reads it from here."""
        self.client.publish(self._topic("status"), self._status("online"), qos=1, retain=True)

    def _command(self, payload: dict) -> None:
        ok, detail = True, {}
        if payload["command"] == "rollback":
            deployment = payload.get("deployment")
            if not isinstance(deployment, str) or not SAFE_ID.fullmatch(deployment):
                self.rejected += 1
                ok, detail = False, {"error": "rollback names no deployment; refused"}
            else:
                ok = self.slots.rollback(deployment, self._progress, "requested by the fleet")
                if ok:
                    self._publish_status()
        elif payload["command"] == "status":
            detail = {
                "current": self.slots.current(),
                "outbox": len(self.outbox),
                "malformed": self.malformed,
                "rejected": self.rejected,
            }
        else:
            ok, detail = False, {"error": f"unknown command {payload['command']!r}"}
        self.client.publish(
            self._topic("cmd/resp"), protocol.encode("cmd/resp", id=payload["id"], ok=ok, **detail), qos=1
        )

    def session(self):
        """The Session of the model serving now; a new model takes over between invocations."""
        from edgekit.runtime import load

        current = self.slots.current()
        if current is None:
            return None
        if current["sha256"] != self._session_sha:
            self._session = load(self.slots.current_model(), threads=1)
            self._session.add_hook(self.collector)
            self._session_sha = current["sha256"]
        return self._session

    def record(self, ok: bool) -> None:
        """Count an invocation (the built-in workload and applications call this)."""
        self.invocations += 1
        if not ok:
            self.errors += 1
            self.collector.error()
        if self._watch is not None:
            dep, start_inv, start_err = self._watch
            seen = self.invocations - start_inv
            if seen >= self.config.watch_invocations:
                rate = (self.errors - start_err) / seen
                if rate > self.config.error_rate_threshold:
                    if self.slots.rollback(dep, self._progress, f"error rate {rate:.0%} after the switch"):
                        self._publish_status()
                else:
                    self.slots.commit(dep, self._progress)
                self._watch = None

    def telemetry(self, window: dict | None = None, sensors: dict | None = None) -> None:
        """Queue one telemetry window (by default the collector's since the last one) and send it."""
        current = self.slots.current() or {}
        fields = dict(window if window is not None else self.collector.window(sensors))
        window_s = fields.pop("window_s", self.config.telemetry_interval_s)
        self.seq += 1
        seq, ts = self.seq, protocol.now()

        def payload(dropped: int) -> bytes:  # the outbox's count once room is made for this window
            return protocol.encode(
                "telemetry",
                seq=seq,
                ts=ts,
                window_s=window_s,
                **{"count": 0, **fields},
                errors_total=self.errors,
                model=current.get("name"),
                version=current.get("version"),
                sha256=current.get("sha256"),
                dropped=dropped,
            )

        self.outbox.put(self._topic("telemetry"), payload)
        self._flush()

    def _telemetry_loop(self) -> None:
        while not self._stop.wait(self.config.telemetry_interval_s * random.uniform(0.9, 1.1)):
            try:
                from edgekit.devices import read_sensors

                self.telemetry(sensors=read_sensors())
            except Exception:  # the agent must not die on a telemetry hiccup
                log.exception("telemetry failed")

    def _workload_loop(self) -> None:
        """The built-in workload: every image of the folder through the serving model, round and
        round, each invocation counted (an exception is an error, not the end of the loop)."""
        from edgekit.runtime.preprocess import preprocess

        folder = Path(self.config.workload_images)
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not images:
            log.error("workload: no images in %s; the built-in workload is off", folder)
            return
        period = 1.0 / self.config.workload_rate_hz
        i = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            session = self.session()
            if session is None:
                self._stop.wait(1.0)
                continue
            try:
                spec = self._preprocessing(session)
                session.run(preprocess(images[i % len(images)], spec))
                self.record(True)
            except Exception as exc:
                log.debug("workload invocation failed: %s", exc)
                self.record(False)
            i += 1
            if period:
                self._stop.wait(max(0.0, period - (time.perf_counter() - started)))

    def _preprocessing(self, session) -> dict:
        """The package's preprocessing, or a resize to the model's first input in the layout its
        signature records (grey for 1 channel)."""
        manifest = self.slots.current_manifest() or {}
        if manifest.get("preprocessing"):
            return manifest["preprocessing"]
        return image_preprocessing(session.signature.inputs[0])


def image_preprocessing(tensor) -> dict:
    """A preprocessing spec that feeds images to ``tensor`` (a TensorSignature) as its layout says."""
    from edgekit.runtime.signature import LAYOUT_NAMES

    if len(tensor.shape) != 4 or tensor.layout not in LAYOUT_NAMES:
        raise ValueError(
            f"cannot feed images to input {tensor.name!r} of shape {list(tensor.shape)} and layout "
            f"{tensor.layout or 'unknown'}: package the model with a preprocessing spec"
        )
    sizes = dict(zip(tensor.layout, tensor.shape, strict=True))
    if sizes["C"] not in (1, 3):
        raise ValueError(f"cannot feed images to input {tensor.name!r}: {sizes['C']} channels ({tensor.layout})")
    return {
        "resize": [sizes["H"], sizes["W"]],
        "color": "L" if sizes["C"] == 1 else "RGB",
        "layout": tensor.layout.lower(),
    }


def run_forever(config: AgentConfig) -> None:
    agent = Agent(config)
    agent.start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        agent.stop()


__all__ = ["Agent", "AgentConfig", "load_config", "run_forever"]
