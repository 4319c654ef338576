"""Fleet benchmark on loopback Mosquitto (and the embedded broker):

1. Ingest: simulated devices publish telemetry windows (QoS 1) as fast as they can; the fleet
   manager must store every one. Reports the sustained stored rate with zero loss and the
   manager's CPU use at a fixed 1,000 messages/s (1,000 devices x 1 message/s).
2. Rollout: N agents (one process, real MQTT, real OTA with separate-process health checks) take
   a good package through canary and waves; then a bad one stops in the canary.

    python bench/fleet.py [--messages 20000] [--agents 20]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ingest(port: int, work: Path, messages: int, devices: int = 50) -> tuple[float, int, int]:
    import paho.mqtt.client as mqtt

    from edgekit import protocol
    from edgekit.fleet.manager import FleetManager

    manager = FleetManager(work / f"ingest-{port}.sqlite", port=port, client_id=f"bench-{port}")
    manager.start()
    time.sleep(0.5)
    clients = []
    for d in range(devices):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim{d}")
        c.max_inflight_messages_set(100)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    per_device = messages // devices
    start = time.perf_counter()
    infos = []
    for seq in range(per_device):
        for d, c in enumerate(clients):
            payload = protocol.encode("telemetry", seq=seq, ts=float(seq), window_s=1, count=10)
            infos.append(c.publish(protocol.topic("bench", f"sim{d}", "telemetry"), payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    total = per_device * devices
    while manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] < total and time.perf_counter() - start < 300:
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stored = manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0]
    for c in clients:
        c.loop_stop()
        c.disconnect()
    manager.stop()
    return total / seconds, total, stored


def cpu_at_rate(port: int, work: Path, rate: int = 1000, seconds: float = 10.0) -> float:
    import paho.mqtt.client as mqtt

    from edgekit import protocol
    from edgekit.fleet.manager import FleetManager

    manager = FleetManager(work / f"cpu-{port}.sqlite", port=port, client_id=f"cpu-{port}")
    manager.start()
    sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rate")
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    stop = threading.Event()

    def send() -> None:
        seq, next_t = 0, time.perf_counter()
        while not stop.is_set():
            for d in range(rate // 10):  # 1,000 devices in batches of 100 every 0.1 s
                payload = protocol.encode("telemetry", seq=seq, ts=float(seq), window_s=1, count=1)
                sender.publish(protocol.topic("cpu", f"dev{(seq * 100 + d) % 1000}", "telemetry"), payload, qos=0)
            seq += 1
            next_t += 0.1
            time.sleep(max(0.0, next_t - time.perf_counter()))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    time.sleep(1.0)
    c0, t0 = manager_cpu(), time.perf_counter()
    time.sleep(seconds)
    share = (manager_cpu() - c0) / (time.perf_counter() - t0)
    stop.set()
    thread.join()
    sender.loop_stop()
    manager.stop()
    return share


def manager_cpu() -> float:
    """CPU of this process (manager threads + the load generator; an upper bound for the manager)."""
    return cpu_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--agents", type=int, default=20)
    args = parser.parse_args()
    from edgekit.broker import Broker
    from tests.fleet.mosquitto import Mosquitto

    work = Path(tempfile.mkdtemp(prefix="edgekit-fleet-"))
    rows = []
    # a fleet broker needs room for QoS 1 bursts to the manager (Mosquitto defaults: 20 in flight, 1000 queued)
    mosquitto = Mosquitto(work, extra="max_inflight_messages 1000\nmax_queued_messages 1000000\n").start()
    embedded = Broker(port=0).start()
    try:
        for name, port in (("mosquitto", mosquitto.port), ("embedded", embedded.port)):
            rate, sent, stored = ingest(port, work, args.messages)
            cpu = cpu_at_rate(port, work)
            rows.append([name, sent, stored, f"{rate:,.0f}", "yes" if stored == sent else "NO", f"{100 * cpu:.0f}%"])
    finally:
        mosquitto.stop()
        embedded.stop()
    print(table(rows, ["broker", "sent", "stored", "stored msg/s", "zero loss", "CPU at 1,000 msg/s (1 core = 100%)"]))


if __name__ == "__main__":
    main()
