"""edgekit package MODEL.tflite --name N --version V --sign KEY: a signed model package."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="the .tflite (or .onnx) model")
    parser.add_argument("-o", "--output", help="package file (default NAME-VERSION.tar)")
    parser.add_argument("--name")
    parser.add_argument("--version")
    parser.add_argument("--sign", metavar="KEY", help="the fleet's ed25519 private key file")
    parser.add_argument("--latency-budget-ms", type=float, help="the health check's p50 latency limit")
    parser.add_argument("--new-key", nargs=2, metavar=("PRIVATE", "PUBLIC"), help="create a signing key pair and exit")


def run(args: argparse.Namespace) -> int:
    from edgekit import package
    from edgekit.errors import InputError

    if args.new_key:
        print(f"public key: {package.generate_key(*args.new_key)}")
        return 0
    if not (args.model and args.name and args.version and args.sign):
        raise InputError("edgekit package MODEL --name N --version V --sign KEY (or --new-key PRIVATE PUBLIC)")
    output = args.output or f"{args.name}-{args.version}.tar"
    info = package.build(
        args.model,
        output,
        name=args.name,
        version=args.version,
        signing_key=args.sign,
        latency_budget_ms=args.latency_budget_ms,
    )
    print(f"wrote {info.path} ({info.size:,} bytes), sha256 {info.sha256}, signature {info.path}.sig")
    return 0
