"""edgekit fleet serve | devices | telemetry DEVICE | deploy PACKAGE --to ... | rollouts."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default="fleet.sqlite", help="the fleet database (SQLite file)")
    parser.add_argument("--host", help="MQTT broker host (serve: none given starts the embedded broker)")
    parser.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    parser.add_argument("--fleet", default="default", help="fleet id")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = sub.add_parser("serve", help="ingest telemetry, serve packages, run rollouts")
    serve.add_argument("--packages", default="packages", help="package store folder")
    serve.add_argument("--http-port", type=int, default=8765)
    sub.add_parser("devices", help="the device registry")
    tel = sub.add_parser("telemetry", help="recent telemetry of a device")
    tel.add_argument("device")
    tel.add_argument("--last", type=int, default=10)
    sub.add_parser("rollouts", help="rollouts and their state")
    prov = sub.add_parser("provision", help="broker credentials, ACL and agent.toml for a device")
    prov.add_argument("device")
    prov.add_argument("--broker-dir", default="broker", help="where the Mosquitto passwd/acl files live")
    prov.add_argument("--public-key", required=True, help="the fleet's public key file (edgekit package --new-key)")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from edgekit.fleet.manager import FleetStore

    if args.action == "serve":
        from edgekit.fleet.manager import FleetManager
        from edgekit.fleet.packages import PackageStore, serve_packages

        if args.host is None:
            from edgekit.broker import Broker

            broker = Broker("127.0.0.1", args.port).start()
            print(f"embedded MQTT broker on 127.0.0.1:{broker.port} (use Mosquitto for production fleets)")
            args.host, args.port = "127.0.0.1", broker.port
        manager = FleetManager(args.db, host=args.host, port=args.port)
        try:
            manager.start()
        except OSError as exc:
            from edgekit.errors import FleetError

            raise FleetError(
                f"cannot reach the MQTT broker at {args.host}:{args.port} ({exc}); start mosquitto "
                "or pass --host/--port"
            ) from None
        httpd = serve_packages(PackageStore(Path(args.packages)), port=args.http_port)
        print(f"fleet manager: broker {args.host}:{args.port}, packages on :{httpd.server_address[1]}, db {args.db}")
        try:
            while True:
                time.sleep(5)
                c = manager.counters
                print(f"received {c.received}, stored {c.stored}, malformed {c.malformed}", flush=True)
        except KeyboardInterrupt:
            manager.stop()
        return 0
    if args.action == "provision":
        from edgekit.fleet.provision import provision

        public = Path(args.public_key).read_text().strip()
        creds = provision(args.broker_dir, args.fleet, args.device, public, args.host or "127.0.0.1", args.port)
        print(f"provisioned {args.device}: config {creds['config']} (password inside; copy it to the device)")
        return 0
    store = FleetStore(args.db)
    if args.action == "devices":
        for row in store.query(
            "SELECT device, state, last_seen, tags, model, version FROM devices WHERE fleet=? ORDER BY device",
            (args.fleet,),
        ):
            print("  ".join(str(v) for v in row))
    elif args.action == "telemetry":
        for seq, ts, payload in store.query(
            "SELECT seq, ts, payload FROM telemetry WHERE fleet=? AND device=? ORDER BY ts DESC LIMIT ?",
            (args.fleet, args.device, args.last),
        ):
            p = json.loads(payload)
            print(seq, ts, p.get("count"), p.get("latency", {}).get("p50_ms"), p.get("version"))
    elif args.action == "rollouts":
        for row in store.query("SELECT id, state, wave, created FROM rollouts ORDER BY created"):
            print("  ".join(str(v) for v in row))
    return 0
