"""Fleet benchmark on loopback Mosquitto (and the embedded broker):

1. Ingest, on both brokers as ``fleet serve`` runs them (every client provisioned and
   authenticated, the ACL and the manager's per-device message budget on): 200 simulated devices
   publish telemetry windows (QoS 1) as fast as they can; the fleet manager must store every
   one. Reports the sustained stored rate with zero loss and the manager's CPU use at a fixed
   1,000 messages/s (1,000 devices x 1 message/s). Then the same load again while one device
   floods progress messages (QoS 1, as fast as it can, on its own topic, for a running rollout,
   coming back whenever it is put out) and 1,000 idle connections are open (half MQTT clients
   that CONNECT and say nothing more, half TCP connections to the manager's HTTP API that send
   nothing, reopened when the server closes them): the stored rate, against the undisturbed one.
2. Rollout: 200 agents (25 per process, real MQTT, real OTA with separate-process health
   checks), driven through the HTTP API: a good package goes through a 5% canary and waves
   25/50/100; then a package with a broken model must stop in the canary.

    python -m bench.fleet [--messages 50000] [--idle 1000] [--agents 200] [--skip-ingest]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

# a fleet broker needs room for QoS 1 bursts to the manager (Mosquitto defaults: 20 in flight, 1000 queued)
FLEET_BROKER = "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table, work_dir  # noqa: E402


def cpu_seconds() -> float:
    """CPU of this process: the fleet manager alone (the simulated devices run in other processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


FLEET = "bench"
INGEST_DEVICES = 200  # at this machine's rates each stays well inside a device's message budget
STEADY_DEVICES = 1000


def provisioned(folder: Path, idle: int) -> tuple[dict[str, str], str]:
    """``fleet provision``'s files for every simulated device, the flooding one and ``idle`` idle
    MQTT clients (device name -> password), and the manager's password: both brokers run with
    authentication, the ACL and the manager's bars on, as serve runs them."""
    from edgekit.fleet.provision import ensure_manager, provision

    names = [f"sim{d}" for d in range(STEADY_DEVICES)] + ["flood"] + [f"idle{n}" for n in range(idle // 2)]
    creds = {name: provision(folder, FLEET, name, "{}", command_key="cd" * 32)["password"] for name in names}
    return creds, ensure_manager(folder)


def _client(port: int, user: str, password: str):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def simulate(port: int, creds: dict, first: int, devices: int, per_device: int, rate: float, ready, go) -> None:
    """Devices ``first..first+devices`` publish ``per_device`` telemetry windows each, QoS 1:
    as fast as the broker takes them (rate 0) or spread evenly at ``rate`` messages/s."""
    from edgekit import protocol

    clients = []
    for d in range(first, first + devices):
        name = f"sim{d}"
        clients.append((protocol.topic(FLEET, name, "telemetry"), _client(port, name, creds[name])))
    ready.put(1)
    go.wait()
    infos, start = [], time.perf_counter()
    for seq in range(per_device):
        for topic, c in clients:
            payload = protocol.encode("telemetry", seq=seq, ts=float(seq), window_s=1, count=10)
            infos.append(c.publish(topic, payload, qos=1))
        if rate:
            time.sleep(max(0.0, start + (seq + 1) * len(clients) / rate - time.perf_counter()))
    for info in infos:
        info.wait_for_publish(120)
    for _, c in clients:
        c.disconnect()
    for _, c in clients:
        c.loop_stop()


def flood_progress(port: int, password: str, deployment: str, sent, ready, stop) -> None:
    """The device "flood" publishes valid progress for ``deployment`` (QoS 1) as fast as the broker
    takes it, at most 1,000 unacknowledged, and comes back whenever it is put out, as an attacker's
    would; ``sent`` counts the publishes the broker acknowledged."""
    from edgekit import protocol

    client = _client(port, "flood", password)
    client.on_publish = lambda c, u, mid, rc, p: setattr(sent, "value", sent.value + 1)
    topic, published = protocol.topic(FLEET, "flood", "progress"), 0
    ready.put(1)
    while not stop.is_set():
        if not client.is_connected():  # paho reconnects on its own (refused while the bar lasts)
            time.sleep(0.05)
            continue
        if published - sent.value >= 1000:
            time.sleep(0.001)
            continue
        details = {"offset": published, "attempt": 1}
        payload = protocol.encode(
            "progress", deployment=deployment, step="downloading", ts=time.time(), details=details
        )
        if client.publish(topic, payload, qos=1).rc == 0:
            published += 1
    client.disconnect()
    client.loop_stop()


def mqtt_connect_packet(user: str, password: str) -> bytes:
    """MQTT 3.1.1 CONNECT with a user name and password, clean session, no keepalive: a client that
    then says nothing at all."""

    def field(text: str) -> bytes:
        return len(text.encode()).to_bytes(2, "big") + text.encode()

    body = b"\x00\x04MQTT\x04\xc2\x00\x00" + field(user) + field(user) + field(password)
    return bytes([0x10, len(body)]) + body


def idle_connections(mqtt_port: int, http_port: int, creds: dict, count: int, open_now, ready, stop) -> None:
    """``count // 2`` MQTT clients that CONNECT and then idle, ``count // 2`` TCP connections to the HTTP
    API that send nothing; whatever the server closes is opened again. ``open_now``: (MQTT, HTTP)
    connections established (an HTTP one past the API's listen backlog waits in SYN retries)."""
    import selectors

    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, max(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    selector = selectors.DefaultSelector()

    def open_mqtt(n: int) -> None:
        s = socket.create_connection(("127.0.0.1", mqtt_port), timeout=10)
        s.sendall(mqtt_connect_packet(f"idle{n}", creds[f"idle{n}"]))
        if s.recv(4)[:4] != b"\x20\x02\x00\x00":
            raise SystemExit("the broker did not accept an idle client's CONNECT")
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, ("mqtt", n))

    def open_http(n: int) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", http_port))  # no wait: past the server's backlog, the SYN waits
        selector.register(s, selectors.EVENT_READ, ("http", n))

    def established(s: socket.socket) -> bool:
        try:
            s.getpeername()
            return True
        except OSError:
            return False

    opener = {"mqtt": open_mqtt, "http": open_http}
    for n in range(count // 2):
        open_mqtt(n)
        open_http(n)
    ready.put(1)
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.2):
            try:
                closed = not key.fileobj.recv(4096)
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:  # the server hung up on an idle client: it comes back, as an attacker's would
                selector.unregister(key.fileobj)
                key.fileobj.close()
                opener[key.data[0]](key.data[1])
        kinds = [key.data[0] for key in selector.get_map().values() if established(key.fileobj)]
        open_now[0], open_now[1] = kinds.count("mqtt"), kinds.count("http")
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def end_session(port: int, password: str, mqtt_version: int) -> None:
    """Drop the manager's persistent session at the broker: otherwise Mosquitto goes on queueing
    every later run's messages for it, and each run would pay for the runs before it."""
    import paho.mqtt.client as mqtt

    from edgekit.fleet.provision import MANAGER_USER

    if mqtt_version != 5:  # the embedded broker (3.1.1) keeps no session past a disconnect
        return
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=MANAGER_USER, protocol=mqtt.MQTTv5)
    client.username_pw_set(MANAGER_USER, password)
    client.connect("127.0.0.1", port, clean_start=True)  # no session expiry: gone at the disconnect
    client.loop_start()
    deadline = time.time() + 10
    while not client.is_connected() and time.time() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def run_load(broker: dict, work: Path, run: str, devices: int, per_device: int, rate: float = 0, disturb: int = 0):
    """(stored/s over the whole run, sent, stored, manager CPU share, disturbance figures); the devices
    run in other processes, at most 250 per process (paho's select() loop cannot watch fds above 1024).
    ``disturb``: that many idle connections open (half MQTT, half to the manager's HTTP API) and one
    device flooding progress for a running rollout while the devices publish."""
    from edgekit.fleet.manager import FleetManager
    from edgekit.fleet.provision import MANAGER_USER

    port, creds = broker["port"], broker["creds"]
    procs = max(2, math.ceil(devices / 250))
    manager = FleetManager(work / f"{run}.sqlite", port=port, username=MANAGER_USER, password=broker["manager"],
                           client_id=MANAGER_USER, broker_folder=broker["folder"])  # fmt: skip
    manager.on_bar = broker["on_bar"]
    if not manager.start():  # subscribed, so the first window counts
        raise SystemExit(f"the broker on port {port} did not take the fleet manager's subscriptions")
    ready, go = mp.Queue(), mp.Event()
    share = devices // procs
    workers = [
        mp.Process(target=simulate, args=(port, creds, i * share, share, per_device, rate / procs, ready, go))
        for i in range(procs)
    ]
    disturbance, stop_disturbing, httpd = {}, mp.Event(), None
    flood_sent, open_now = mp.Value("q", 0, lock=False), mp.Array("i", 2, lock=False)
    if disturb:
        from edgekit.fleet.api import serve_api
        from edgekit.fleet.packages import PackageStore

        httpd, _ = serve_api(manager, PackageStore(work / f"{run}-packages"), "bench-token")
        manager.store.execute(  # the flooding device's registry row, so a rollout can target it
            "INSERT INTO devices (fleet, device, state, last_seen, tags) VALUES (?,?,?,?,?)",
            (FLEET, "flood", "online", time.time(), "[]"),
        )
        deploy = {"deployment": "flooded", "package": "p.tar", "sha256": "0" * 64, "size": 1, "url": "http://x/"}
        manager.start_rollout(FLEET, deploy, ["flood"], canary=0, waves=(1.0,))  # its status query runs every 0.5 s
        workers += [
            mp.Process(
                target=flood_progress, args=(port, creds["flood"], "flooded", flood_sent, ready, stop_disturbing)
            ),
            mp.Process(
                target=idle_connections,
                args=(port, httpd.server_address[1], creds, disturb, open_now, ready, stop_disturbing),
            ),
        ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=60)
    total = share * procs * per_device
    c0, start, flooded0 = cpu_seconds(), time.perf_counter(), flood_sent.value
    go.set()

    def stored() -> int:
        return manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0]

    while stored() < total and time.perf_counter() - start < 300:
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    cpu = (cpu_seconds() - c0) / seconds
    if disturb:
        disturbance = {
            "progress/s": (flood_sent.value - flooded0) / seconds,
            "open": tuple(open_now),
            "barred": manager.counters.barred,
        }
    stop_disturbing.set()
    for w in workers:
        w.join(timeout=120)
    count = stored()
    manager.stop()
    end_session(port, broker["manager"], manager.mqtt_version)
    if httpd is not None:
        httpd.shutdown()
    (broker["folder"] / "quarantine.json").unlink(missing_ok=True)  # the next run starts with nobody barred
    return total / seconds, total, count, cpu, disturbance


def host_agents(port: int, trusted_root: str, command_key: str, work: str, first: int, count: int, ready, stop) -> None:
    """``count`` real agents (MQTT, outbox, OTA slots, separate-process health checks) in this process."""
    from edgekit.agent.runner import Agent, AgentConfig

    agents = []
    for i in range(first, first + count):
        config = AgentConfig(
            fleet="bench",
            device=f"a{i:03d}",
            state_dir=f"{work}/a{i:03d}",
            trusted_root=trusted_root,
            port=port,
            telemetry_interval_s=3600,
            watch_invocations=0,
            tags=["cameras"],
            command_key=command_key,
        )
        agents.append(Agent(config))
        agents[-1].start()
    ready.put(count)
    stop.wait()
    for agent in agents:
        agent.stop()


def rollout(port: int, work: Path, agents: int, per_process: int = 25) -> list[list]:
    """A good package through canary 5% and waves 25/50/100 to every agent, then a package whose
    model is broken: it must stop in the canary, which keeps serving the good one."""
    from edgekit import package
    from edgekit.converters import convert
    from edgekit.fleet import repository
    from edgekit.fleet.api import serve_api
    from edgekit.fleet.client import FleetClient
    from edgekit.fleet.manager import FleetManager
    from edgekit.fleet.packages import PackageStore

    key, pub = work / "fleet.key", work / "fleet.pub"
    package.generate_key(key, pub)
    package.generate_key(work / "root.key", work / "root.pub")
    good_model, bad_model = work / "digits.tflite", work / "broken.tflite"
    convert(str(ROOT / "edgekit" / "samples" / "digits_cnn.onnx"), good_model)
    bad_model.write_bytes(good_model.read_bytes()[:400])
    good = package.build(good_model, work / "good.tar", name="digits", version="1", signing_key=key)
    bad = package.build(bad_model, work / "bad.tar", name="digits", version="2", signing_key=key, validate=False)

    from edgekit.signing import new_command_key

    command_public = new_command_key(work / "command.key", work / "command.pub")
    command_private = (work / "command.key").read_text().strip()
    manager = FleetManager(work / "rollout.sqlite", port=port, client_id="bench-rollout", command_key=command_private)
    if not manager.start():
        raise SystemExit(f"the broker on port {port} did not take the fleet manager's subscriptions")
    repository.create(
        work / "fleet.tuf",
        repository.signer_from_file(work / "root.key", "root key"),
        repository.signer_from_file(key, "package key"),
        command_public,
    )
    repo = repository.Repository(work / "fleet.tuf", repository.signer(command_private.rpartition(":")[2]))
    trusted_root = repo.file("root.json").read_text()
    httpd, _ = serve_api(manager, PackageStore(work / "store", repo), "bench-token")
    client = FleetClient(f"http://127.0.0.1:{httpd.server_address[1]}", "bench-token", fleet="bench")
    ready, stop = mp.Queue(), mp.Event()
    hosts = [
        mp.Process(
            target=host_agents,
            args=(port, trusted_root, command_public, str(work / "agents"), i, min(per_process, agents - i))
            + (ready, stop),
        )
        for i in range(0, agents, per_process)
    ]
    rows = []
    try:
        for h in hosts:
            h.start()
        for _ in hosts:
            ready.get(timeout=120)
        deadline = time.time() + 60
        while len(manager.devices("bench")) < agents and time.time() < deadline:
            time.sleep(0.2)
        for info, expect in ((good, "done"), (bad, "aborted")):
            client.upload(info.path)
            client.publish(info.path, info.manifest, repository.signer_from_file(key, "package key"))
            start = time.perf_counter()
            status = client.deploy(info.sha256, ["tag:cameras"], 0.05, [0.25, 0.5, 1.0], {"max_failures": 0.1})
            while status["state"] == "running" and time.perf_counter() - start < 900:
                time.sleep(0.5)
                status = client.rollout(status["id"])
            seconds = time.perf_counter() - start
            settle = time.perf_counter()  # devices at work when the rollout stopped finish their step
            while time.perf_counter() - settle < 60 and any(
                step not in ("committed", "failed", "rolled_back") for step in status["steps"].values()
            ):
                time.sleep(0.5)
                status = client.rollout(status["id"])
            serving = manager.store.query(
                "SELECT COUNT(*) FROM devices WHERE fleet='bench' AND version='1' AND state='online'"
            )[0][0]
            touched = len(status["steps"])
            rows.append(
                [
                    f"v{info.manifest['version']} ({'good' if expect == 'done' else 'broken model'})",
                    agents,
                    status["state"] + ("" if status["state"] == expect else " (UNEXPECTED)"),
                    f"{touched} ({status['counts']})",
                    serving,
                    f"{seconds:.1f}",
                ]
            )
    finally:
        stop.set()
        for h in hosts:
            h.join(timeout=60)
        manager.stop()
        httpd.shutdown()
    return rows


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def ingest_table(args: argparse.Namespace, work: Path) -> str:
    from edgekit.fleet.mosquitto import ManagedMosquitto
    from tests.fleet.mosquitto import free_port

    folder = work / "broker"
    creds, manager_password = provisioned(folder, args.idle)
    rows, disturbed_rows = [], []
    mosquitto = ManagedMosquitto(folder, free_port(), None).start()
    embedded_port = free_port()  # in its own process, so the manager's CPU figure is the manager's alone
    embedded = subprocess.Popen(
        [sys.executable, "-m", "edgekit.broker", "--port", str(embedded_port), "--access", str(folder)]
    )
    wait_for_port(embedded_port)
    try:
        for name, port in (("mosquitto", mosquitto.port), ("embedded", embedded_port)):
            broker = {"port": port, "creds": creds, "manager": manager_password, "folder": folder}
            broker["on_bar"] = mosquitto.apply_bars if name == "mosquitto" else None  # as serve wires it
            per_device = args.messages // INGEST_DEVICES
            rate, sent, stored, ingest_cpu, _ = run_load(broker, work, f"ingest-{name}", INGEST_DEVICES, per_device)
            _, sent_1k, stored_1k, cpu, _ = run_load(
                broker, work, f"steady-{name}", STEADY_DEVICES, args.seconds, rate=STEADY_DEVICES
            )
            rows.append(
                [
                    name,
                    f"{stored:,}/{sent:,}",
                    f"{rate:,.0f}",
                    "yes" if stored == sent else "NO",
                    f"{100 * cpu:.0f}%",
                    "yes" if stored_1k == sent_1k else "NO",
                ]
            )
            if args.idle:
                disturbed_rate, sent_d, stored_d, disturbed_cpu, seen = run_load(
                    broker, work, f"disturbed-{name}", INGEST_DEVICES, per_device, disturb=args.idle
                )
                disturbed_rows.append(
                    [
                        name,
                        f"{rate:,.0f}",
                        f"{disturbed_rate:,.0f}",
                        f"{disturbed_rate / rate:.0%}",
                        "yes" if stored_d == sent_d else "NO",
                        f"{seen['progress/s']:,.0f}",
                        seen["barred"],
                        f"{seen['open'][0]} + {seen['open'][1]}",
                        f"{100 * ingest_cpu:.0f}% / {100 * disturbed_cpu:.0f}%",
                    ]
                )
    finally:
        mosquitto.stop()
        embedded.terminate()
        embedded.wait(timeout=10)
    headers = ["broker", "stored/sent", "stored msg/s", "zero loss", "manager CPU at 1,000 msg/s", "zero loss"]
    out = table(rows, headers)
    if disturbed_rows:
        headers = ["broker", "undisturbed msg/s", "disturbed msg/s", "of undisturbed", "zero loss"]
        headers += ["flood progress msg/s taken", "times barred", "idle MQTT + HTTP established"]
        headers += ["manager CPU undisturbed / disturbed"]
        out += "\n\n" + table(disturbed_rows, headers)
    return out


def rollout_table(args: argparse.Namespace, work: Path) -> str:
    from tests.fleet.mosquitto import Mosquitto

    folder = work / "rollout"
    folder.mkdir()
    mosquitto = Mosquitto(folder, extra=FLEET_BROKER).start()
    try:
        rows = rollout(mosquitto.port, folder, args.agents)
    finally:
        mosquitto.stop()
    return table(rows, ["package", "agents", "rollout", "devices touched (final step)", "serving v1", "seconds to end"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50000, help=f"ingest: windows from {INGEST_DEVICES} devices")
    parser.add_argument("--seconds", type=int, default=10, help="steady load: 1,000 devices x 1 msg/s for this long")
    parser.add_argument(
        "--idle", type=int, default=1000, help="ingest disturbed: idle connections beside the progress flood (0: skip)"
    )
    parser.add_argument("--agents", type=int, default=200, help="rollout: simulated agents (0: skip)")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    work = work_dir("edgekit-fleet-")
    if not args.skip_ingest:
        print(ingest_table(args, work), flush=True)
    if args.agents:
        print(rollout_table(args, work))


if __name__ == "__main__":
    main()
