"""edgekit demo: the whole product on this machine, offline, in a throw-away folder.

Converts the bundled digits CNN to fp32, int8 and a pruned int8 model and prints the trade-off;
makes throw-away keys, a fleet and signed packages; runs ``edgekit fleet serve`` and simulated
devices (``edgekit agent run`` processes tagged with a board profile, running the real runtime on a
workload of sample digits); rolls the int8 model out through a canary and waves, then a broken
package the canary catches; prints a summary and keeps serving until Ctrl-C (``--headless``:
exits after the summary). Every process it starts runs in a process group of its own and is
stopped on the way out, whatever ends the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit import protocol
from edgekit.commands._shapes import PORT, whole_number
from edgekit.errors import FleetError, InputError

MODEL_NAME = "digits"
# simulated devices take these boards in turn: (device id prefix, board profile id in devices/boards/)
BOARDS = (("pi4", "raspberry-pi-4"), ("pi5", "raspberry-pi-5"), ("coral", "coral-dev-board"))
DEFAULT_API_PORT = 8765  # the port `edgekit fleet` commands reach without --api
WORKLOAD_RATE_HZ = 25.0
TELEMETRY_INTERVAL_S = 1.0  # short windows, so the rollout gates have their evidence in seconds
WATCH_INVOCATIONS = 10  # a device commits a new model after this many invocations without errors
PRUNED_MAC_SHARE = 0.7  # channel pruning keeps this share of the multiply-accumulates
CANARY, WAVES = "10%", "50,100"
# the rollouts' telemetry gate: the error rate. Not latency: the simulated devices share this
# machine's cores, and their p90s (tens of microseconds) swing several-fold with whatever else runs
GATE_OPTIONS = ("--max-error-rate", "5%", "--wave-timeout", "60")
STEP_TIMEOUT_S = 120.0  # any one wait (manager up, devices online, a rollout) longer than this is a failure
STOP_TIMEOUT_S = 10.0  # a child that has not exited this long after SIGINT is killed
DEMO_WAIT_ENDS = (*protocol.ROLLOUT_ENDS, protocol.RolloutState.PAUSED)  # the demo stops waiting at either


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices", type=whole_number(1, 12), default=3, help="simulated devices (default 3: Pi 4, Pi 5, Coral)"
    )
    parser.add_argument(
        "--port",
        type=PORT,
        default=DEFAULT_API_PORT,
        help=f"the fleet manager's HTTP port (default {DEFAULT_API_PORT}, where `edgekit fleet` commands look; "
        "0: any free one)",
    )
    parser.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="the broker fleet serve runs (auto: Mosquitto with TLS where installed, else the embedded one)",
    )
    parser.add_argument(
        "--workdir", help="an empty or new folder for everything the demo makes, kept afterwards (default: a "
        "temporary folder, removed when the demo ends)",
    )  # fmt: skip
    parser.add_argument("--headless", action="store_true", help="exit after the summary instead of serving")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    api_port = _api_port(args.port)
    workdir = _workdir(args.workdir)
    children = Children()
    keep_logs = args.workdir is not None
    previous_handlers = _interrupt_on_signals()
    try:
        say(f"edgekit demo in {workdir} (every log is there)")
        demo = Demo(workdir, api_port, args.devices, args.broker, children)
        demo.run_until_summary()
        say(f"\nfirst summary {time.monotonic() - started:.0f} s after the start")
        if not args.headless:
            demo.serve_until_interrupted()
    except KeyboardInterrupt:
        if args.headless or not children.serving:
            raise
        # Ctrl-C is how a serving demo ends
    except Exception:
        keep_logs = True
        say(f"edgekit demo: stopped; logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        try:
            children.stop_all()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if not keep_logs:
                shutil.rmtree(workdir, ignore_errors=True)
    say("every process the demo started has stopped")
    return 0


def say(text: str = "", file=None) -> None:
    print(text, file=file or sys.stdout, flush=True)


def _api_port(port: int) -> int:
    """The manager's HTTP port: checked free before anything starts, so a taken one is one line."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise InputError(
                f"port {port} is taken (another fleet manager or demo?); pass --port with a free one, "
                "or --port 0 for any"
            ) from None
        return probe.getsockname()[1]


def _free_port() -> int:
    return _api_port(0)


def _workdir(path: str | None) -> Path:
    if path is None:
        return Path(tempfile.mkdtemp(prefix="edgekit-demo-"))
    folder = Path(path).resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"--workdir {path} is not an empty folder; pass a new or empty one")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _interrupt_on_signals() -> dict:
    """SIGTERM and SIGHUP (a closed terminal) end the demo as Ctrl-C does, through the same cleanup.
    SIGINT gets its handler even where it was ignored (a shell's background job): an ignored signal
    stays ignored in the children, and they stop gracefully only on SIGINT."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, interrupt)
    return previous


class Children:
    """The processes the demo started, each the leader of its own process group: Ctrl-C on the
    terminal reaches only the demo, which then stops them in order (devices before the manager)."""

    def __init__(self) -> None:
        self.running: list[Child] = []
        self.serving = False

    def start(self, name: str, command: list[str], cwd: Path, log: Path, stops_last: bool = False) -> None:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running.append(Child(name, process, log, stops_last))

    def check_alive(self) -> None:
        for child in self.running:
            if child.process.poll() is not None:
                raise FleetError(
                    f"{child.name} stopped (exit {child.process.returncode}): {_last_line(child.log)}; see {child.log}"
                )

    def stop_all(self) -> None:
        """SIGINT to the leaders, the devices before the manager (they tell its broker they are
        going), a grace period, then SIGKILL to every group, which also ends what a leader left
        behind (Mosquitto under the manager, a device's health check). A second Ctrl-C cuts the
        grace period short."""
        try:
            for stops_last in (False, True):
                group = [c for c in self.running if c.stops_last == stops_last and c.process.poll() is None]
                for child in group:
                    child.process.send_signal(signal.SIGINT)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                for child in group:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for child in self.running:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=STOP_TIMEOUT_S)
            self.running.clear()


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path
    stops_last: bool


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


@dataclass
class ModelVariant:
    label: str
    tflite: Path
    tflite_bytes: int
    accuracy: float  # on the held-out digits, on the runtime
    p50_us: float
    sqnr_db: float  # against the ONNX model it was converted from
    package: Path | None = None
    package_bytes: int = 0
    version: str = ""


@dataclass
class Device:
    name: str
    board: str
    folder: Path


class Demo:
    def __init__(self, workdir: Path, api_port: int, device_count: int, broker: str, children: Children) -> None:
        from edgekit.fleet.client import FleetClient

        self.workdir = workdir
        self.api = f"http://127.0.0.1:{api_port}"
        self.api_port = api_port
        self.children = children
        self.broker = broker
        self.devices = []
        for number in range(1, device_count + 1):
            prefix, board = BOARDS[(number - 1) % len(BOARDS)]
            name = f"{prefix}-{number}"
            self.devices.append(Device(name, board, workdir / "devices" / name))
        self.client = FleetClient(self.api, timeout=10.0)
        self.mqtt_port = self.tls_port = 0  # chosen when the manager starts
        self.provision_tls = False  # devices connect over TLS (to Mosquitto), or in clear (embedded broker)
        self.serving_version = ""  # what the fleet runs since the last rollout that went through

    # --- the story ------------------------------------------------------------------------------
    def run_until_summary(self) -> None:
        say("\n[1/5] converting the bundled digits CNN (fp32, int8 calibrated on 200 digits, int8 pruned)")
        variants = self.build_models()
        say("\n[2/5] throw-away keys, a fleet, signed packages")
        self.make_fleet_and_packages(variants)
        print_tradeoff(variants)
        say("\n[3/5] the fleet manager and the devices")
        self.start_manager()
        self.start_devices()
        fp32, int8, broken = variants[0], variants[1], self.broken_package(variants[0])
        self.rollout(fp32, f"{MODEL_NAME}-1-fp32", "0%", "100", (), expect="done")
        say(f"\n[4/5] rolling {MODEL_NAME} {int8.version} (int8) out: a canary, then waves, judged on telemetry")
        self.rollout(int8, f"{MODEL_NAME}-2-int8", CANARY, WAVES, GATE_OPTIONS, expect="done")
        say(f"\n[5/5] rolling out {MODEL_NAME} {broken.version}, a broken package (a truncated model)")
        self.rollout(broken, f"{MODEL_NAME}-3-broken", CANARY, WAVES, GATE_OPTIONS, expect="aborted")
        self.print_summary(int8)

    def serve_until_interrupted(self) -> None:
        say("\nserving until Ctrl-C")
        self.children.serving = True
        while True:
            self.children.check_alive()
            time.sleep(1.0)

    # --- step 1: models ---------------------------------------------------------------------------
    def build_models(self) -> list[ModelVariant]:
        from importlib.resources import files

        import numpy as np

        from edgekit.converters import convert, verify
        from edgekit.converters.onnx.frontend import read_model
        from edgekit.converters.prune.budget import prune_to_budget
        from edgekit.converters.prune.recovery import correct_bias
        from edgekit.progress import progress

        samples = files("edgekit") / "samples"
        data = np.load(str(samples / "digits_data.npz"))
        dense = read_model(str(samples / "digits_cnn.onnx")).model
        # this CNN's layers are 16 to 64 channels wide: rounding them to XNNPACK's tiles of 16
        # (round_to's default) would leave little to prune; without fine-tuning, the bias
        # correction is what keeps the accuracy within sight of the dense model's
        pruned, _, _ = prune_to_budget(dense, PRUNED_MAC_SHARE, "macs", round_to=1)
        pruned = correct_bias(dense, pruned, data["x_calib"])
        int8 = {"quantize": "int8", "calibration": data["x_calib"]}
        plan = (  # (label, file stem, ONNX model, conversion options)
            ("fp32", "fp32", dense, {}),
            ("int8", "int8", dense, int8),
            (f"int8 pruned {PRUNED_MAC_SHARE:.0%} MACs", "int8-pruned", pruned, int8),
        )
        models = self.workdir / "models"
        models.mkdir()
        variants = []
        with (
            progress("converting and measuring", total=len(plan), unit="models", line_interval_s=3.0) as bar,
            (self.workdir / "convert.log").open("w") as log,
            contextlib.redirect_stderr(log),  # the converter's own progress lines: the bar above says it
        ):
            for label, stem, source, options in plan:
                path = models / f"{MODEL_NAME}-{stem}.tflite"
                result = convert(source, path, **options)
                report = verify(source, path, data=data["x_test"])
                accuracy, p50_us = measure_on_runtime(path, data["x_test"], data["y_test"])
                variants.append(ModelVariant(label, path, result.size_bytes, accuracy, p50_us, report.min_sqnr_db))
                bar.update()
        return variants

    # --- step 2: keys, fleet, packages ----------------------------------------------------------
    def make_fleet_and_packages(self, variants: list[ModelVariant]) -> None:
        from edgekit import package

        self.edgekit("keys", "new", "root.key", "root.pub")
        self.edgekit("keys", "new", "package.key", "package.pub")
        self.edgekit("fleet", "init", "--root-key", "root.key", "--targets-key", "package.key")
        # versions only go up on a device: fp32 1, int8 2, the broken package 3, the pruned model 4
        for variant, version in zip(variants, ("1", "2", "4"), strict=True):
            variant.version = version
            variant.package = self.workdir / f"{MODEL_NAME}-{version}.tar.xz"
            info = package.build(
                variant.tflite,
                variant.package,
                name=MODEL_NAME,
                version=version,
                signing_key=self.workdir / "package.key",
            )
            variant.package_bytes = info.size
        say(
            f"root.key (the fleet's root of trust), package.key (signs packages), fleet.sqlite; packages "
            f"{', '.join(v.package.name for v in variants)} signed with package.key"
        )

    def broken_package(self, fp32: ModelVariant) -> ModelVariant:
        """Half a model, packaged with validation off: it fails to load wherever it runs."""
        from edgekit import package

        truncated = self.workdir / "models" / f"{MODEL_NAME}-broken.tflite"
        data = fp32.tflite.read_bytes()
        truncated.write_bytes(data[: len(data) // 2])
        path = self.workdir / f"{MODEL_NAME}-3-broken.tar.xz"
        info = package.build(
            truncated, path, name=MODEL_NAME, version="3", signing_key=self.workdir / "package.key", validate=False
        )
        return ModelVariant("broken", truncated, len(data) // 2, 0.0, 0.0, 0.0, path, info.size, "3")

    # --- step 3: manager and devices ------------------------------------------------------------
    def start_manager(self) -> None:
        from edgekit.fleet import mosquitto

        broker = self.broker if self.broker != "auto" else ("mosquitto" if mosquitto.binary() else "embedded")
        self.mqtt_port, self.tls_port = _free_port(), _free_port()
        log = self.workdir / "serve.log"
        # absolute paths: the work folder then shows in the command lines of serve and its Mosquitto,
        # so `ps` tells which processes belong to this demo
        self.children.start(
            "the fleet manager",
            [*self.edgekit_command(), "fleet", "--db", str(self.workdir / "fleet.sqlite"), "serve",
             "--broker-dir", str(self.workdir / "broker"), "--packages", str(self.workdir / "packages"),
             "--broker", broker, "--port", str(self.mqtt_port), "--tls-port", str(self.tls_port),
             "--http-port", str(self.api_port)],
            self.workdir,
            log,
            stops_last=True,
        )  # fmt: skip
        self.wait_for("starting the fleet manager", self._answers, total=1)
        self.provision_tls = broker == "mosquitto"
        what = (
            f"Mosquitto (TLS for devices on :{self.tls_port})"
            if self.provision_tls
            else f"the embedded broker (:{self.mqtt_port}, loopback only)"
        )
        say(f"fleet manager at {self.api} with {what}; SQLite in fleet.sqlite")

    def _answers(self) -> int:
        self.children.check_alive()
        token_file = self.workdir / "fleet.token"
        if not token_file.exists():  # serve writes it first thing, before the API listens
            return 0
        self.client.token = token_file.read_text().strip()  # reading the API needs it as much as changes do
        try:
            self.client.devices()
        except FleetError:
            return 0
        return 1

    def start_devices(self) -> None:
        from dataclasses import asdict, replace

        from edgekit.agent.runner import load_config

        images = self.workload_images()
        for device in self.devices:
            if self.provision_tls:
                self.edgekit("fleet", "provision", device.name, "--port", str(self.tls_port))
            else:
                self.edgekit("fleet", "provision", device.name, "--no-tls", "--port", str(self.mqtt_port))
            provisioned = load_config(str(self.workdir / "broker" / "devices" / f"{device.name}.toml"))
            settings = replace(
                provisioned,
                state_dir=str(device.folder / "state"),
                tags=["demo"],
                board=device.board,
                workload_images=str(images),
                workload_rate_hz=WORKLOAD_RATE_HZ,
                telemetry_interval_s=TELEMETRY_INTERVAL_S,
                watch_invocations=WATCH_INVOCATIONS,
            )
            device.folder.mkdir(parents=True)
            config = device.folder / "agent.toml"
            fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the broker password
            with os.fdopen(fd, "w") as f:
                f.write(toml_table("agent", asdict(settings)))
            self.children.start(
                f"device {device.name}",
                [*self.edgekit_command(), "agent", "run", "--config", str(config)],
                device.folder,
                device.folder / "agent.log",
            )

        def online() -> int:
            self.children.check_alive()
            return sum(1 for d in self.client.devices() if d["state"] == "online")

        self.wait_for("devices online", online, total=len(self.devices))
        boards = ", ".join(f"{d.name} ({d.board})" for d in self.devices)
        say(f"{len(self.devices)} devices, each an `edgekit agent run` process with its own state folder: {boards}")

    def workload_images(self) -> Path:
        """Held-out sample digits as 8x8 greyscale PNGs: what the devices' built-in workload classifies."""
        from importlib.resources import files

        import numpy as np
        from PIL import Image

        folder = self.workdir / "workload"
        folder.mkdir()
        digits = np.load(str(files("edgekit") / "samples" / "digits_data.npz"))["x_test"][:16]
        for i, digit in enumerate(digits):
            pixels = digit.reshape(8, 8)
            scaled = pixels * 255 / max(float(pixels.max()), 1e-6)
            Image.fromarray(scaled.astype(np.uint8), "L").save(folder / f"{i:02d}.png")
        return folder

    # --- steps 4 and 5: rollouts ----------------------------------------------------------------
    def rollout(
        self, variant: ModelVariant, rollout_id: str, canary: str, waves: str, gates: tuple, expect: str
    ) -> None:
        """Deploy ``variant`` through the CLI, follow the rollout to its end, show its event log, and
        check it ended as ``expect``-ed: done with every device on it, or aborted by the canary."""
        targets = "id:" + ",".join(d.name for d in self.devices)  # in this order: the first is the canary
        command = [
            "fleet", "--api", self.api, "deploy", variant.package.name, "--sign", "package.key", "--to", targets,
            "--canary", canary, "--waves", waves, *gates, "--id", rollout_id,
        ]  # fmt: skip
        say(f"$ edgekit {' '.join(command)}")
        self.edgekit(*command)

        def settled() -> int:
            self.children.check_alive()
            status = self.client.rollout(rollout_id)
            if status["state"] in DEMO_WAIT_ENDS:
                return len(self.devices)
            finished = sum(status["counts"].get(step, 0) for step in protocol.FINAL_STEPS)
            return min(finished, len(self.devices) - 1)  # all there only once the manager says it ended

        self.wait_for(f"rollout {rollout_id}", settled, total=len(self.devices))
        status = self.client.rollout(rollout_id)
        for event in self.client.events(rollout_id):
            device = f" {event['device']}" if event["device"] else ""
            figures = gate_figures(event["figures"]) if event["kind"] == "gate" else ""
            say(f"  {event['kind']}{device}: {event['message']}{figures}")
        if status["state"] != expect:
            raise FleetError(
                f"rollout {rollout_id} ended {status['state']} ({status['reason']}), not {expect}; see serve.log and "
                "devices/*/agent.log"
            )
        if expect == "done":
            serving = self.wait_for_version(variant.version)
            self.serving_version = variant.version
            say(f"every device serves {MODEL_NAME} {variant.version} ({variant.label}): {serving}")
        else:
            canary_device = self.devices[0].name
            if canary_device not in status["failures"]:
                raise FleetError(f"rollout {rollout_id} ended {status['state']} without the canary failing")
            spared = [d.name for d in self.devices[1:] if d.name not in status["steps"]]
            serving = self.wait_for_version(self.serving_version)
            say(
                f"the canary {canary_device} refused it; the manager aborted the rollout and rolled it back "
                f"({len(spared)} other device(s) never received it): every device still serves "
                f"{MODEL_NAME} {self.serving_version}: {serving}"
            )

    def wait_for_version(self, version: str) -> str:
        def serving() -> int:
            return sum(1 for d in self.client.devices() if d["version"] == version and d["state"] == "online")

        self.wait_for(f"devices reporting version {version}", serving, total=len(self.devices))
        return ", ".join(sorted(d["device"] for d in self.client.devices()))

    def wait_for(self, what: str, count_done, total: int) -> None:
        """Poll ``count_done`` (how many of ``total`` are there) with a progress display, until all are."""
        from edgekit.progress import progress

        deadline = time.monotonic() + STEP_TIMEOUT_S
        with progress(what, total=total, unit="done", line_interval_s=3.0) as bar:
            while True:
                done = min(count_done(), total)
                if done > bar.done:
                    bar.update(done - bar.done)
                if done >= total:
                    return
                if time.monotonic() > deadline:
                    raise FleetError(
                        f"{what}: {done} of {total} after {STEP_TIMEOUT_S:.0f} s; see serve.log and devices/*/agent.log"
                    )
                time.sleep(0.3)

    # --- the summary ----------------------------------------------------------------------------
    def print_summary(self, deployed: ModelVariant) -> None:
        rows = []
        for device in self.devices:
            record = next((d for d in self.client.devices() if d["device"] == device.name), {})
            window = self.latest_window(device.name, deployed.version)
            latency, power = window.get("latency") or {}, window.get("power") or {}
            watts = power.get("watts")
            rows.append(
                [
                    device.name,
                    device.board,
                    record.get("state", "-"),
                    f"{record.get('model')} {record.get('version')}",
                    _number(latency.get("p90_ms"), ".3f"),
                    _number(window.get("throughput_ips"), ".1f"),
                    "-" if watts is None else f"{watts:.2f}{'~' if power.get('estimated') else ''}",
                ]
            )
        say("\nsummary (latest telemetry window of each device)")
        print_table(rows, ["device", "board", "state", "serves", "p90 ms", "inferences/s", "watts"])
        from edgekit.devices import detect

        say(
            f"watts marked ~ are estimates, not sensor readings: from CPU use between the idle and peak power of "
            f"the board the agents detect, this machine's ({detect().id}), not the board each one stands for"
        )
        say(f"\nfleet console  {self.console_url()}")
        say(f"login token    in {self.workdir / 'fleet.token'} (the API and the edgekit fleet commands need it too)")
        edgekit = self.edgekit_shown()
        api = "" if self.api_port == DEFAULT_API_PORT else f" --api {self.api}"
        first = self.devices[0].name
        say("\nnext, in another terminal:")
        for line in (
            f"cd {self.workdir}",
            f"{edgekit} fleet{api} devices",
            f"{edgekit} fleet{api} telemetry {first}",
            f"{edgekit} fleet{api} rollouts {MODEL_NAME}-3-broken",
            f"{edgekit} fleet{api} deploy {MODEL_NAME}-4.tar.xz --sign package.key --canary {CANARY} --waves {WAVES}"
            "   # ship the pruned model",
        ):
            say(f"  {line}")

    def latest_window(self, device: str, version: str) -> dict:
        """The device's newest telemetry window with inferences on ``version`` (one comes each second)."""
        deadline = time.monotonic() + 15.0
        while True:
            windows = [w for w in self.client.telemetry(device, 10) if w.get("count") and w.get("version") == version]
            if windows or time.monotonic() > deadline:
                return max(windows, key=lambda w: w["seq"], default={})
            time.sleep(0.5)

    def console_url(self) -> str:
        """The manager's console for people where it serves one, else its API's description."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.api}/console", timeout=5):  # its login page, when not logged in
                return f"{self.api}/console"
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return f"{self.api}/console"
        except OSError:
            pass
        return f"{self.api}/openapi.json"

    # --- running edgekit ------------------------------------------------------------------------
    def edgekit_command(self) -> list[str]:
        return [sys.executable, "-m", "edgekit"]

    def edgekit_shown(self) -> str:
        """How the reader runs edgekit: by name where it is on PATH, else the script beside this Python."""
        script = Path(sys.executable).parent / "edgekit"
        found = shutil.which("edgekit")
        if found and (not script.exists() or Path(found).resolve() == script.resolve()):
            return "edgekit"
        return str(script) if script.exists() else f"{sys.executable} -m edgekit"

    def edgekit(self, *args: str) -> str:
        """One edgekit command in the work folder; its output goes to commands.log."""
        result = subprocess.run(
            [*self.edgekit_command(), *args], cwd=self.workdir, capture_output=True, text=True, timeout=120
        )
        with (self.workdir / "commands.log").open("a") as log:
            log.write(f"$ edgekit {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            raise FleetError(f"edgekit {args[0]} {args[1] if len(args) > 1 else ''} failed: {last}")
        return result.stdout


def measure_on_runtime(path: Path, images, labels) -> tuple[float, float]:
    """(held-out accuracy, p50 latency in µs) of one model on the runtime, one digit at a time."""
    import numpy as np

    from edgekit.runtime import LatencyWindow, load

    session = load(path, threads=1)
    window = LatencyWindow()
    session.add_hook(window)
    output = session.outputs[0].name
    nhwc = images.transpose(0, 2, 3, 1)  # the samples are NCHW, the converted models NHWC
    predictions = np.array([session.run(x[None])[output].argmax() for x in nhwc])
    return float(np.mean(predictions == labels)), 1000 * window.summary()["p50_ms"]


def print_tradeoff(variants: list[ModelVariant]) -> None:
    say("\nthe trade-off (accuracy on the 360 held-out digits, on this machine's runtime, one thread)")
    print_table(
        [
            [
                v.label,
                f"{v.tflite_bytes:,}",
                f"{v.package_bytes:,}",
                f"{100 * v.accuracy:.1f}%",
                f"{v.p50_us:.1f}",
                f"{v.sqnr_db:.1f}",
                v.package.name,
            ]
            for v in variants
        ],
        ["model", ".tflite bytes", "package bytes", "accuracy", "p50 us", "SQNR dB", "package"],
    )


def gate_figures(figures: dict) -> str:
    """A gate verdict's evidence, as people read it."""
    shown = []
    if "error_rate" in figures:
        shown.append(f"error rate {figures['error_rate']:.1%}")
    if "p90_ratio" in figures:
        shown.append(f"p90 {figures['p90_ratio']:.2f}x the previous version's")
    if "watts" in figures:
        shown.append(f"median {figures['watts']:.2f} W")
    return f" ({', '.join(shown)})" if shown else ""


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for i, row in enumerate([headers, *rows]):
        say("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            say("  " + "  ".join("-" * width for width in widths))


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def toml_table(name: str, settings: dict) -> str:
    """One TOML table; JSON's strings, numbers, booleans and lists are TOML's too (None has no TOML form)."""
    lines = [f"[{name}]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items() if value is not None]
    return "\n".join(lines) + "\n"
