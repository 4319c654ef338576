"""edgekit fleet init | serve | devices | telemetry DEVICE | deploy PACKAGE --to ... | rollouts |
pause/resume/abort/rollback ROLLOUT | provision DEVICE | rotate-key.

``serve`` runs the manager (MQTT ingest, rollouts, HTTP API); the other actions are clients of
its HTTP API (``--api``), with the token from ``--token``, $EDGEKIT_FLEET_TOKEN or the token file
``serve`` wrote next to its database."""

from __future__ import annotations

import argparse
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from edgekit.commands._shapes import PORT
from edgekit.protocol import FAILED_STEPS, ROLLOUT_ENDS, SAFE_ID_RULE, Step

DEFAULT_API = "http://127.0.0.1:8765"
# library parameter (a Gates field) -> the deploy flag that sets it, so the library's errors name flags
PARAMETER_FLAGS = {
    "max_failures": "--max-failures",
    "max_error_rate": "--max-error-rate",
    "max_latency_regression": "--max-latency-regression",
    "max_power_w": "--max-power-w",
    "power_measured_only": "--power-measured-only",
    "wave_timeout_s": "--wave-timeout",
    "telemetry_windows": "--min-windows",
    "min_invocations": "--min-invocations",
}
JSON_HELP = "print the API's JSON instead of the table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default="fleet.sqlite", help="the fleet database (SQLite file)")
    parser.add_argument("--fleet", default="default", help="fleet id")
    parser.add_argument("--api", default=os.environ.get("EDGEKIT_FLEET_API", DEFAULT_API), help="the manager's API")
    parser.add_argument(
        "--token",
        help="API token for changes (default: $EDGEKIT_FLEET_TOKEN, or the token file serve wrote: "
        "DB.token beside a SQLite DB, fleet.token for a database URL)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    _add_key_actions(sub)
    _add_serve(sub)
    _add_read_actions(sub)
    _add_deploy(sub)
    _add_rollout_actions(sub)
    _add_provision(sub)


MAX_RETENTION_DAYS = 36_500  # a century: beyond it the cutoff in seconds stops being a useful number


def _retention_days(text: str) -> float:
    """An argparse type: days of telemetry to keep, refused unless a finite number above 0."""
    import math

    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not (math.isfinite(days) and 0 < days <= MAX_RETENTION_DAYS):
        raise argparse.ArgumentTypeError(f"{text} must be a number of days above 0 and at most {MAX_RETENTION_DAYS}")
    return days


def _add_key_actions(sub) -> None:
    init = sub.add_parser(
        "init", help="make the fleet's update metadata (TUF root) once, where the root key is; then serve"
    )
    init.add_argument("--root-key", required=True, help="the root private key (edgekit keys new; keep it offline)")
    init.add_argument("--targets-key", required=True, help="the package private key that signs what devices install")
    rotate = sub.add_parser(
        "rotate-key", help="trust a new package key: devices follow the new root, no re-provisioning"
    )
    rotate.add_argument("--root-key", required=True, help="the fleet's root private key")
    rotate.add_argument("--new-targets-key", required=True, help="the new package private key (edgekit keys new)")


def _add_serve(sub) -> None:
    serve = sub.add_parser("serve", help="ingest telemetry, serve packages and the API, run rollouts")
    serve.add_argument(
        "--host", help="MQTT broker host (none: start the embedded broker on loopback, with --broker-dir's accounts)"
    )
    serve.add_argument(
        "--broker-dir", default="broker", help="fleet provision's folder (passwd, acl) for the embedded broker"
    )
    serve.add_argument("--port", type=PORT, default=1883, help="MQTT broker port (0: any free one)")
    serve.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="without --host: run Mosquitto (auto: when installed) with a TLS listener for devices, "
        "or the embedded loopback-only broker",
    )
    serve.add_argument(
        "--tls-port", type=PORT, default=8883, help="the managed Mosquitto's TLS listener for devices (0: any free one)"
    )
    serve.add_argument(
        "--tls-name",
        action="append",
        default=[],
        help="a host name or address devices reach the broker by (its certificate names it); repeat for more",
    )
    serve.add_argument("--username", help="broker user for the manager")
    serve.add_argument("--password", default=os.environ.get("EDGEKIT_BROKER_PASSWORD"))
    serve.add_argument("--tls-ca", help="CA file: connect to the broker over TLS")
    serve.add_argument("--tls-cert", help="client certificate for the broker")
    serve.add_argument("--tls-key", help="client key for the broker")
    serve.add_argument("--packages", default="packages", help="package store folder")
    serve.add_argument("--http-host", default="127.0.0.1", help="API address (0.0.0.0 for the fleet to reach it)")
    serve.add_argument("--http-port", type=PORT, default=8765, help="API port (0: any free one)")
    serve.add_argument("--public-url", help="URL devices download packages from (default http://HOST:PORT)")
    serve.add_argument(
        "--retention-days",
        type=_retention_days,
        default=30.0,
        help=f"drop telemetry older than this many days (above 0, at most {MAX_RETENTION_DAYS})",
    )
    serve.add_argument(
        "--device-rate", type=float, default=200.0, help="messages a second a device may send (default 200)"
    )
    serve.add_argument(
        "--device-burst",
        type=float,
        default=2000.0,
        help="messages a device may send at once above its rate (default 2000); past both, serve's broker bars it",
    )


def _add_read_actions(sub) -> None:
    devices = sub.add_parser("devices", help="the device registry")
    devices.add_argument("--tag", help="only devices with this tag")
    devices.add_argument("--json", action="store_true", help=JSON_HELP)
    tel = sub.add_parser("telemetry", help="recent telemetry of a device")
    tel.add_argument("device")
    tel.add_argument("--last", type=int, default=10, help="how many windows, newest first (default 10)")
    tel.add_argument("--json", action="store_true", help=JSON_HELP)
    packages = sub.add_parser("packages", help="stored packages and whether the signed targets list them")
    packages.add_argument("--json", action="store_true", help=JSON_HELP)


def _add_deploy(sub) -> None:
    deploy = sub.add_parser("deploy", help="upload and publish a signed package and roll it out")
    deploy.add_argument("package", help="the package .tar (its .sig beside it)")
    deploy.add_argument(
        "--sign", help="the package private key: publishes the package in the fleet's signed targets metadata"
    )
    deploy.add_argument("--to", nargs="+", default=["all"], help="all | tag:NAME | id:DEV[,DEV] (several allowed)")
    deploy.add_argument("--canary", default="5%", help="canary group share (at least one device)")
    deploy.add_argument("--waves", default="25,50,100", help="cumulative wave shares in percent")
    deploy.add_argument(
        "--max-failures",
        default="10%",
        help="abort and roll back past this share of devices failed (or over --max-error-rate)",
    )
    deploy.add_argument("--max-error-rate", help="gate: each device's invocation error rate on the new model, e.g. 2%%")
    deploy.add_argument("--max-latency-regression", type=float, help="gate: p90 new/old, e.g. 1.2")
    deploy.add_argument("--max-power-w", type=float, help="gate: median watts on the new model")
    deploy.add_argument(
        "--power-measured-only",
        action="store_true",
        help="judge --max-power-w on power sensors alone; ignore devices' flagged estimates",
    )
    deploy.add_argument("--wave-timeout", type=float, default=900.0, help="seconds before stragglers stop blocking")
    deploy.add_argument(
        "--min-windows", type=int, default=3, help="telemetry gates: windows per device after its switch (default 3)"
    )
    deploy.add_argument(
        "--min-invocations", type=int, default=30, help="telemetry gates: invocations per device in them (default 30)"
    )
    deploy.add_argument(
        "--id",
        help=f"rollout id: {SAFE_ID_RULE} (default NAME-VERSION-RANDOM)",
    )


def _add_rollout_actions(sub) -> None:
    rollouts = sub.add_parser("rollouts", help="rollouts and their state")
    rollouts.add_argument("rollout", nargs="?", help="show one in detail: devices, failure reasons, event log")
    rollouts.add_argument("--follow", action="store_true", help="with ROLLOUT: print new events until it ends")
    rollouts.add_argument("--json", action="store_true", help=JSON_HELP)
    for action, text in (
        ("pause", "hold a rollout (devices at work finish)"),
        ("resume", "continue a paused rollout"),
        ("abort", "stop a rollout; updated devices keep the new model"),
        ("rollback", "stop a rollout and roll back every device it updated"),
    ):
        sub.add_parser(action, help=text).add_argument("rollout")


def _add_provision(sub) -> None:
    prov = sub.add_parser("provision", help="broker credentials, ACL and agent.toml for a device")
    prov.add_argument("device")
    prov.add_argument("--host", default="127.0.0.1", help="the broker host the device connects to")
    prov.add_argument(
        "--port", type=PORT, help="the broker port the device connects to (default 8883 over TLS, 1883 with --no-tls)"
    )
    prov.add_argument(
        "--no-tls",
        action="store_true",
        help="plain MQTT: passwords cross the network in clear (a lab, or the embedded loopback broker)",
    )
    prov.add_argument("--broker-dir", default="broker", help="where the Mosquitto passwd/acl files live")
    prov.add_argument(
        "--command-key",
        help="the manager's command public key file (default: the one serve made beside --db, DB.command.pub)",
    )


def share(text: str, what: str) -> float:
    """'5%', '5' (percent, as --waves 25,50,100 reads) or '0.05' -> 0.05."""
    from edgekit.commands._shapes import parse_share
    from edgekit.errors import InputError

    try:
        value = parse_share(text)
    except ValueError:
        raise InputError(f"{what} must be a percentage like 10% (got {text!r})") from None
    if value > 1 and not text.endswith("%"):  # a bare number above 1 is a percentage
        value /= 100
    if not 0 <= value <= 1:
        raise InputError(f"{what} must lie between 0% and 100% (got {text!r})")
    return value


def run(args: argparse.Namespace) -> int:
    local = {"serve": serve, "init": init, "provision": provision_device}
    if args.action in local:
        return local[args.action](args)
    from edgekit.fleet.client import FleetClient

    client = FleetClient(args.api, token=_token(args), fleet=args.fleet)
    if getattr(args, "json", False):
        return _print_json(client, args)
    actions = {
        "rotate-key": _rotate_key,
        "devices": _show_devices,
        "packages": _show_packages,
        "telemetry": _show_telemetry,
        "deploy": _deploy,
        "rollouts": _show_rollouts,
    }
    actions.get(args.action, _control)(client, args)
    return 0


def provision_device(args: argparse.Namespace) -> int:
    from edgekit import keys
    from edgekit.errors import InputError
    from edgekit.fleet.provision import check_ids, provision

    check_ids(args.fleet, args.device)
    files = fleet_files(args.db)
    command_file = Path(args.command_key) if args.command_key else files.command_public
    if not command_file.exists():
        raise InputError(
            f"no command key at {command_file}: run `edgekit fleet init` once (it makes one) or pass --command-key"
        )
    command_key = keys.read_public(command_file)
    root = _trusted_root(files.metadata)
    tls_ca = None if args.no_tls else _broker_ca(args.broker_dir, args.host)
    port = args.port or (1883 if args.no_tls else 8883)
    creds = provision(
        args.broker_dir, args.fleet, args.device, root, args.host, port, command_key=command_key, tls_ca=tls_ca
    )
    print(f"provisioned {args.device}: config {creds['config']} (password inside; copy it to the device)")
    return 0


def _rotate_key(client, args: argparse.Namespace) -> None:
    from edgekit.fleet.repository import signer_from_file

    root_signer = signer_from_file(args.root_key, "root key")
    new_signer = signer_from_file(args.new_targets_key, "new package key")
    version = client.rotate_targets_key(root_signer, new_signer)
    print(
        f"root version {version}: devices now trust {args.new_targets_key} for packages and refuse the old key; "
        "sign new packages with it"
    )


def _show_devices(client, args: argparse.Namespace) -> None:
    _print_table(
        [
            [d["device"], d["state"], _age(d["last_seen"]), ",".join(d["tags"]), d["model"], d["version"]]
            for d in client.devices(args.tag)
        ],
        ["device", "state", "last seen", "tags", "model", "version"],
    )


def _show_packages(client, args: argparse.Namespace) -> None:
    _print_table(
        [
            [p["name"], p["version"], f"{p['size']:,}", p["sha256"][:12], "yes" if p.get("published") else "no"]
            for p in client.packages()
        ],
        ["name", "version", "bytes", "sha256", "published"],
    )


def _show_telemetry(client, args: argparse.Namespace) -> None:
    rows = []
    for w in client.telemetry(args.device, args.last):
        lat = w.get("latency") or {}
        power = w.get("power") or {}
        watts = f"{power['watts']:.2f}{'~' if power.get('estimated') else ''}" if power.get("watts") else ""
        rows.append(
            [
                w["seq"],
                _age(w["ts"]),
                w.get("count"),
                w.get("errors"),
                lat.get("p50_ms"),
                lat.get("p90_ms"),
                lat.get("p99_ms"),
                watts,
                w.get("temp_c"),
                w.get("version"),
            ]
        )
    _print_table(rows, ["seq", "age", "count", "errors", "p50 ms", "p90 ms", "p99 ms", "W (~ est.)", "°C", "version"])


def _gates(args: argparse.Namespace) -> dict:
    """The deploy options as Gates fields; a bad value is refused here, before the package travels."""
    from edgekit.fleet.gates import Gates

    gates = {
        "max_failures": share(args.max_failures, "--max-failures"),
        "wave_timeout_s": args.wave_timeout,
        "telemetry_windows": args.min_windows,
        "min_invocations": args.min_invocations,
    }
    if args.max_error_rate is not None:
        gates["max_error_rate"] = share(args.max_error_rate, "--max-error-rate")
    if args.max_latency_regression is not None:
        gates["max_latency_regression"] = args.max_latency_regression
    if args.max_power_w is not None:
        gates["max_power_w"] = args.max_power_w
    if args.power_measured_only:
        gates["power_measured_only"] = True
    Gates.from_dict(gates)
    return gates


def _deploy(client, args: argparse.Namespace) -> None:
    gates = _gates(args)
    waves = [share(w if w.endswith("%") else w + "%", "--waves") for w in args.waves.split(",") if w]
    info = client.upload(args.package)
    if not info.get("published"):
        if not args.sign:
            from edgekit.errors import InputError

            raise InputError(
                f"{info['name']} {info['version']} is not published in the fleet's signed metadata yet: "
                "pass --sign PACKAGE.key"
            )
        from edgekit.fleet.repository import signer_from_file

        client.publish(args.package, info["manifest"], signer_from_file(args.sign, "package key"))
    status = client.deploy(info["sha256"], args.to, share(args.canary, "--canary"), waves, gates, args.id)
    print(f"uploaded {info['name']} {info['version']} ({info['size']:,} bytes, sha256 {info['sha256'][:12]}...)")
    print(f"rollout {status['id']}: {len(status['devices'])} devices, waves at {status['cuts']}")


def _show_rollouts(client, args: argparse.Namespace) -> None:
    if args.follow and not args.rollout:
        from edgekit.errors import InputError

        raise InputError("--follow needs a ROLLOUT: edgekit fleet rollouts ROLLOUT --follow")
    if args.rollout:
        s = client.rollout(args.rollout)
        print(f"{s['id']}: {s['state']} {s['reason']}  wave {s['wave'] + 1}/{len(s['cuts'])}  {s['counts']}")
        for device in s["devices"]:
            reason = s.get("failures", {}).get(device)
            print(f"  {device}  {s['steps'].get(device, '-')}" + (f"  ({reason})" if reason else ""))
        _print_events(client, args.rollout, args.follow)
        return
    _print_table(
        [
            [
                s["id"],
                s["version"],
                s["state"],
                f"{s['wave'] + 1}/{len(s['cuts'])}",
                len(s["devices"]),
                s["counts"].get(Step.COMMITTED, 0),
                sum(s["counts"].get(step, 0) for step in FAILED_STEPS),
                s["reason"],
            ]
            for s in client.rollouts()
        ],
        ["rollout", "version", "state", "wave", "devices", "committed", "failed", "reason"],
    )


def _control(client, args: argparse.Namespace) -> None:
    """pause, resume, abort, rollback"""
    s = client.control(args.rollout, args.action)
    print(f"rollout {s['id']}: {s['state']} {s['reason']}")


def serve(args: argparse.Namespace) -> int:
    import secrets

    from edgekit import keys
    from edgekit.errors import InputError

    if args.host is not None and (args.broker != "auto" or args.tls_name):
        raise InputError("--broker and --tls-name choose the broker serve runs; with --host it runs none")
    _check_tls_files(args)
    budget = _device_budget(args)
    _check_db_file(args.db)
    files = fleet_files(args.db)
    if not files.command_private.exists():
        raise InputError(f"no fleet at {args.db}: make it once with edgekit fleet init --root-key R --targets-key P")
    token_file = _token_file(args.db)
    if not token_file.exists():
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    token = token_file.read_text().strip()
    _raise_open_file_limit()
    from edgekit.fleet.repository import Repository, signer

    command_private = keys.read_private(files.command_private)
    repository = Repository(files.metadata.parent, signer(command_private))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # systemd's stop: the same clean shutdown as Ctrl-C
    broker = _start_broker(args) if args.host is None else None
    try:
        return _serve(args, token, token_file, command_private, repository, budget, broker)
    finally:
        if broker is not None:
            broker.stop()


def _check_tls_files(args: argparse.Namespace) -> None:
    """The manager's TLS files, before anything starts: each one there and a file, and a client
    certificate or key only with the CA that turns TLS on (else they would be ignored)."""
    from edgekit.errors import InputError
    from edgekit.mqtt import tls_file_problem

    for flag, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        problem = tls_file_problem(path) if path else None
        if problem:
            raise InputError(f"{flag} {problem}")
    if (args.tls_cert or args.tls_key) and not args.tls_ca:
        raise InputError("--tls-cert and --tls-key need --tls-ca (the broker's CA file), which turns TLS on")


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def _start_broker(args: argparse.Namespace):
    """The broker serve runs itself: Mosquitto as a managed child (TLS listener for devices) where
    it is installed, else the embedded loopback-only broker; both hold clients to --broker-dir's
    passwd and ACL. Sets args.host/port/username/password for the manager."""
    from edgekit.errors import FleetError
    from edgekit.fleet import mosquitto
    from edgekit.fleet.provision import MANAGER_USER, ensure_manager

    args.username, args.password = MANAGER_USER, ensure_manager(args.broker_dir)
    kind = args.broker if args.broker != "auto" else ("mosquitto" if mosquitto.binary() else "embedded")
    if kind == "mosquitto":
        port = args.port or _free_port()
        args.tls_port = args.tls_port or _free_port()
        broker = mosquitto.ManagedMosquitto(args.broker_dir, port, args.tls_port, args.tls_name).start()
        tls = f", TLS for devices on :{args.tls_port} (CA {args.broker_dir}/{mosquitto.CA_FILE})"
        print(f"Mosquitto (managed) on 127.0.0.1:{port}{tls}: accounts and ACL from {args.broker_dir}/", flush=True)
        args.host, args.port = "127.0.0.1", port
        return broker
    from edgekit.broker import Broker
    from edgekit.fleet.access import BrokerAccess

    access = BrokerAccess.read(args.broker_dir)
    try:
        broker = Broker("127.0.0.1", args.port, access, Path(args.broker_dir) / "retained.json").start()
    except OSError as exc:
        raise FleetError(
            f"the embedded broker cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); pass another --port"
        ) from None
    print(
        f"embedded MQTT broker on 127.0.0.1:{broker.port} (Mosquitto is not installed: loopback only, no TLS): "
        f"accounts and ACL from {args.broker_dir}/",
        flush=True,
    )
    args.host, args.port = "127.0.0.1", broker.port
    return broker


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _device_budget(args: argparse.Namespace):
    from edgekit.errors import InputError
    from edgekit.fleet.ratelimit import DeviceBudget

    try:
        return DeviceBudget(rate=args.device_rate, burst=args.device_burst)
    except ValueError:
        raise InputError(
            f"--device-rate {args.device_rate:g} / --device-burst {args.device_burst:g}: "
            "the rate must be above 0 and the burst at least 1"
        ) from None


def _serve(args: argparse.Namespace, token: str, token_file, command_private: str, repository, budget, broker) -> int:
    from edgekit.errors import FleetError
    from edgekit.fleet.api import serve_api
    from edgekit.fleet.packages import PackageStore

    manager = _start_manager(args, command_private, budget, args.broker_dir if broker is not None else None)
    manager.on_bar = getattr(broker, "apply_bars", None)  # Mosquitto puts a barred device out at once
    try:
        httpd, _ = serve_api(
            manager,
            PackageStore(Path(args.packages), repository),
            token,
            args.http_host,
            args.http_port,
            args.public_url,
        )
    except OSError as exc:
        manager.stop()
        raise FleetError(f"cannot serve the API on {args.http_host}:{args.http_port}: {exc.strerror}") from None
    print(
        f"fleet manager: broker {args.host}:{args.port}, API http://{args.http_host}:{httpd.server_address[1]} "
        f"(token in {token_file}), db {args.db}",
        flush=True,
    )
    print(
        f"console: http://{args.http_host}:{httpd.server_address[1]}/console (log in with the token in {token_file})",
        flush=True,
    )
    try:
        _keep_serving(manager, repository, args.retention_days)
    except KeyboardInterrupt:
        manager.stop()
        httpd.shutdown()
    return 0


def _start_manager(args: argparse.Namespace, command_private: str, budget, broker_folder: str | None):
    """The manager, connected and subscribed, or a FleetError saying why not."""
    from edgekit.errors import FleetError
    from edgekit.fleet.manager import FleetManager

    tls = {"ca": args.tls_ca, "cert": args.tls_cert, "key": args.tls_key} if args.tls_ca else None
    manager = FleetManager(
        args.db,
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        tls=tls,
        command_key=command_private,
        budget=budget,
        broker_folder=broker_folder,
    )
    try:
        listening = manager.start()
    except (OSError, ValueError) as exc:
        raise FleetError(
            f"cannot reach the MQTT broker at {args.host}:{args.port} ({exc}); start mosquitto or pass --host/--port"
        ) from None
    if not listening:
        manager.stop()
        if manager.refused:
            raise FleetError(
                f"the MQTT broker at {args.host}:{args.port} refused the fleet manager: {manager.refused}; "
                "check --username/--password and the broker's ACL"
            )
        raise FleetError(f"the MQTT broker at {args.host}:{args.port} did not answer the fleet manager's subscriptions")
    return manager


def _keep_serving(manager, repository, retention_days: float) -> None:
    """Until Ctrl-C: re-sign the timestamp, apply retention hourly, print the ingest counters."""
    import time

    last_retention = 0.0
    while True:
        time.sleep(5)
        repository.refresh()  # a timestamp that is never re-signed expires: devices then refuse updates
        if time.time() - last_retention > 3600:
            manager.prune_telemetry(retention_days * 86400)
            last_retention = time.time()
        c = manager.counters
        print(f"received {c.received}, stored {c.stored}, malformed {c.malformed}", flush=True)


def _token_file(db: str):
    """Next to a SQLite database; ``fleet.token`` here for a database URL."""
    from pathlib import Path

    return Path("fleet.token") if "://" in db else Path(db).with_suffix(".token")


def _raise_open_file_limit() -> None:
    """Every device holds a broker connection: lift the soft limit on open files (often 1024) to
    the hard one, as Mosquitto's and nginx's packaging do."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


@dataclass(frozen=True)
class FleetFiles:
    """What a fleet keeps beside its SQLite database (``fleet.*`` for a database URL)."""

    command_private: Path  # the manager's online key: commands, snapshot and timestamp metadata
    command_public: Path
    metadata: Path  # the TUF repository's metadata folder


def _check_db_file(db: str) -> None:
    """--db, before anything is written next to it: a URL, or an SQLite file (new or empty, or
    an existing database) in a folder that exists; a model or a folder given by mistake is refused."""
    from edgekit.errors import InputError

    if "://" in db:
        return
    path = Path(db)
    if not path.resolve().parent.is_dir():
        raise InputError(f"--db {db}: folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise InputError(f"--db {db}: is a folder; give the fleet's database file, e.g. {path / 'fleet.sqlite'}")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            raise InputError(f"--db {db}: not an SQLite database; give the fleet's database or a new file name")


def fleet_files(db: str) -> FleetFiles:
    base = Path("fleet.sqlite") if "://" in db else Path(db)
    return FleetFiles(
        base.with_suffix(".command.key"), base.with_suffix(".command.pub"), base.with_suffix(".tuf") / "metadata"
    )


def init(args: argparse.Namespace) -> int:
    """The fleet's keys and update metadata, made once where the root key is."""
    from edgekit import keys
    from edgekit.errors import InputError
    from edgekit.fleet import repository
    from edgekit.signing import new_command_key

    _check_db_file(args.db)
    root_signer = repository.signer_from_file(args.root_key, "root key")
    targets_signer = repository.signer_from_file(args.targets_key, "package key")
    if root_signer.public_key.keyid == targets_signer.public_key.keyid:
        raise InputError("--root-key and --targets-key must be two different keys (the root key stays offline)")
    files = fleet_files(args.db)
    if (files.metadata / "1.root.json").exists():
        raise InputError(f"{files.metadata} exists already: devices are pinned to it; rotate keys with rotate-key")
    if not files.command_private.exists():
        new_command_key(files.command_private, files.command_public)
    online = keys.read_public(files.command_public)
    repository.create(files.metadata.parent, root_signer, targets_signer, online)
    print(
        f"fleet update metadata in {files.metadata} (root signed by {args.root_key}: keep that key offline); "
        f"manager key {files.command_private} (0600); now run edgekit fleet serve --db {args.db}"
    )
    return 0


def _broker_ca(broker_dir: str, host: str) -> str:
    """The CA certificate (PEM) of the broker serve runs, checked to name ``host``."""
    from edgekit.errors import InputError
    from edgekit.fleet import mosquitto

    folder = Path(broker_dir)
    if not (folder / mosquitto.CERT_FILE).exists():
        raise InputError(
            f"no broker certificate in {folder}/: start edgekit fleet serve (it makes one for Mosquitto's TLS "
            "listener) before provisioning, or pass --no-tls for a plain lab broker"
        )
    names = mosquitto.names_in(folder)
    if host not in names:
        raise InputError(
            f"the broker's certificate does not name {host} (it names {', '.join(sorted(names))}); "
            f"restart serve with --tls-name {host}"
        )
    return (folder / mosquitto.CA_FILE).read_text()


def _trusted_root(metadata: Path) -> str:
    from edgekit.errors import InputError

    versions = sorted(metadata.glob("*.root.json"), key=lambda p: int(p.name.split(".")[0]))
    if not versions:
        raise InputError(f"no fleet update metadata in {metadata}: run edgekit fleet init first")
    return versions[-1].read_text()


def _token(args: argparse.Namespace) -> str | None:
    if args.token or os.environ.get("EDGEKIT_FLEET_TOKEN"):
        return args.token or os.environ["EDGEKIT_FLEET_TOKEN"]
    path = _token_file(args.db)
    return path.read_text().strip() if path.exists() else None


def _print_json(client, args: argparse.Namespace) -> int:
    """The same facts the table shows, as the API returns them."""
    import json

    from edgekit.errors import InputError

    if args.action == "rollouts" and args.follow:
        raise InputError("--json prints one document; --follow streams events: choose one")
    data = {
        "devices": lambda: client.devices(args.tag),
        "telemetry": lambda: client.telemetry(args.device, args.last),
        "packages": client.packages,
        "rollouts": lambda: (
            {**client.rollout(args.rollout), "events": client.events(args.rollout)}
            if args.rollout
            else client.rollouts()
        ),
    }[args.action]()
    print(json.dumps(data, indent=1))
    return 0


def _print_events(client, rollout_id: str, follow: bool) -> None:
    """The event log; with ``follow``, new events as they come until the rollout ends (Ctrl-C stops)."""
    import time

    since, ended = 0.0, False
    print("events:")
    while True:
        for e in client.events(rollout_id, since):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
            device = f" {e['device']}" if e["device"] else ""
            print(f"  {stamp}  {e['kind']}{device}  {e['message']}", flush=True)
            since = max(since, e["ts"])
        if not follow or ended:
            return
        ended = client.rollout(rollout_id)["state"] in ROLLOUT_ENDS
        time.sleep(0 if ended else 1.0)  # once ended: one last look for its final events


def _age(ts: float | None) -> str:
    import time

    if ts is None:
        return "-"
    seconds = max(0.0, time.time() - ts)
    return (
        f"{seconds:.0f}s ago"
        if seconds < 120
        else f"{seconds / 60:.0f}m ago"
        if seconds < 7200
        else f"{seconds / 3600:.0f}h ago"
    )


def _print_table(rows: list[list], headers: list[str]) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if not rows:
        print("(none)")
