"""edgekit agent run --config agent.toml: the device agent."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="connect to the broker and serve deployments and telemetry")
    run.add_argument(
        "--config",
        required=True,
        help="agent.toml ([agent] fleet, device, state_dir, trusted_root, command_key, host, port, "
        "telemetry_interval_s, ...: edgekit fleet provision writes one)",
    )


def run(args: argparse.Namespace) -> int:
    from edgekit.agent.runner import load_config, run_forever
    from edgekit.errors import InputError

    try:
        config = load_config(args.config)
    except OSError as exc:
        raise InputError(f"cannot read agent config {args.config}: {exc.strerror or exc}") from None
    except ValueError as exc:  # also TOML syntax: tomllib's error is a ValueError
        raise InputError(f"agent config {args.config}: {exc}") from None
    run_forever(config)
    return 0
