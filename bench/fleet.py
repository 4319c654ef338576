"""Fleet benchmark on loopback Mosquitto (and the embedded broker):

1. Ingest: simulated devices publish telemetry windows (QoS 1) as fast as they can; the fleet
   manager must store every one. Reports the sustained stored rate with zero loss and the
   manager's CPU use at a fixed 1,000 messages/s (1,000 devices x 1 message/s).
2. Rollout: 200 agents (25 per process, real MQTT, real OTA with separate-process health
   checks), driven through the HTTP API: a good package goes through a 5% canary and waves
   25/50/100; then a package with a broken model must stop in the canary.

    python bench/fleet.py [--messages 50000] [--agents 200] [--skip-ingest]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# a fleet broker needs room for QoS 1 bursts to the manager (Mosquitto defaults: 20 in flight, 1000 queued)
FLEET_BROKER = "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402


def cpu_seconds() -> float:
    """CPU of this process: the fleet manager alone (the simulated devices run in other processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def simulate(port: int, fleet: str, first: int, devices: int, per_device: int, rate: float, ready, go) -> None:
    """Devices ``first..first+devices`` publish ``per_device`` telemetry windows each, QoS 1:
    as fast as the broker takes them (rate 0) or spread evenly at ``rate`` messages/s."""
    import paho.mqtt.client as mqtt

    from edgekit import protocol

    clients = []
    for d in range(first, first + devices):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{fleet}-sim{d}")
        c.max_inflight_messages_set(100)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append((protocol.topic(fleet, f"sim{d}", "telemetry"), c))
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


def run_load(port: int, work: Path, fleet: str, devices: int, per_device: int, rate: float = 0):
    """(stored/s over the whole run, sent, stored, manager CPU share); the devices run in other
    processes, at most 250 per process (paho's select() loop cannot watch fds above 1024)."""
    procs = max(2, math.ceil(devices / 250))
    from edgekit.fleet.manager import FleetManager

    manager = FleetManager(work / f"{fleet}-{port}.sqlite", port=port, client_id=f"manager-{fleet}-{port}")
    if not manager.start():  # subscribed, so the first window counts
        raise SystemExit(f"the broker on port {port} did not take the fleet manager's subscriptions")
    ready, go = mp.Queue(), mp.Event()
    share = devices // procs
    workers = [
        mp.Process(target=simulate, args=(port, fleet, i * share, share, per_device, rate / procs, ready, go))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=60)
    total = share * procs * per_device
    c0, start = cpu_seconds(), time.perf_counter()
    go.set()

    def stored() -> int:
        return manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0]

    while stored() < total and time.perf_counter() - start < 300:
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    cpu = (cpu_seconds() - c0) / seconds
    for w in workers:
        w.join()
    count = stored()
    manager.stop()
    return total / seconds, total, count, cpu


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
    from tests.fleet.mosquitto import Mosquitto, free_port

    rows = []
    mosquitto = Mosquitto(work, extra=FLEET_BROKER).start()
    embedded_port = free_port()  # in its own process, so the manager's CPU figure is the manager's alone
    embedded = subprocess.Popen([sys.executable, "-m", "edgekit.broker", "--port", str(embedded_port)])
    wait_for_port(embedded_port)
    try:
        for name, port in (("mosquitto", mosquitto.port), ("embedded", embedded_port)):
            rate, sent, stored, _ = run_load(port, work, f"ingest-{name}", 50, args.messages // 50)
            _, sent_1k, stored_1k, cpu = run_load(port, work, f"steady-{name}", 1000, args.seconds, rate=1000)
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
    finally:
        mosquitto.stop()
        embedded.terminate()
    headers = ["broker", "stored/sent", "stored msg/s", "zero loss", "manager CPU at 1,000 msg/s", "zero loss"]
    return table(rows, headers)


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
    parser.add_argument("--messages", type=int, default=50000, help="ingest: windows from 50 devices")
    parser.add_argument("--seconds", type=int, default=10, help="steady load: 1,000 devices x 1 msg/s for this long")
    parser.add_argument("--agents", type=int, default=200, help="rollout: simulated agents (0: skip)")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgekit-fleet-"))
    if not args.skip_ingest:
        print(ingest_table(args, work), flush=True)
    if args.agents:
        print(rollout_table(args, work))


if __name__ == "__main__":
    main()
