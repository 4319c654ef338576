"""edgekit package MODEL.tflite --name N --version V --sign KEY: a signed model package."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="the .tflite (or .onnx) model")
    parser.add_argument("-o", "--output", help="package file (default NAME-VERSION.tar.xz, or .tar uncompressed)")
    parser.add_argument("--name")
    parser.add_argument("--version")
    parser.add_argument("--sign", metavar="KEY", help="the fleet's ed25519 private key file")
    parser.add_argument("--latency-budget-ms", type=float, help="the health check's p50 latency limit")
    parser.add_argument(
        "--preprocess",
        metavar="JSON",
        help='image preprocessing the device applies, e.g. \'{"resize": [8, 8], "color": "L", "layout": "nchw"}\'',
    )
    parser.add_argument("--compression", choices=("xz", "none"), default="xz", help="archive compression (default xz)")
    parser.add_argument(
        "--io-change",
        action="store_true",
        help="the model's inputs/outputs differ from the one serving, on purpose (devices refuse it otherwise)",
    )
    parser.add_argument(
        "--new-key",
        nargs=2,
        metavar=("PRIVATE", "PUBLIC"),
        help="create a signing key pair and exit (as `edgekit keys new`; refuses to overwrite)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


def run(args: argparse.Namespace) -> int:
    from edgekit import package
    from edgekit.errors import InputError

    if args.new_key:
        _check_key_only(args)
        public_key = package.generate_key(*args.new_key)
        print(json.dumps({"public_key": public_key}) if args.json else f"public key: {public_key}")
        return 0
    if not (args.model and args.name and args.version and args.sign):
        raise InputError("edgekit package MODEL --name N --version V --sign KEY (or --new-key PRIVATE PUBLIC)")
    preprocessing = None
    if args.preprocess:
        try:
            preprocessing = json.loads(args.preprocess)
        except ValueError as exc:
            raise InputError(f"--preprocess is not valid JSON ({exc})") from None
        if not isinstance(preprocessing, dict):
            raise InputError("--preprocess takes a JSON object, e.g. '{\"resize\": [224, 224]}'")
    suffix = ".tar.xz" if args.compression == "xz" else ".tar"
    output = args.output or f"{args.name}-{args.version}{suffix}"
    info = package.build(
        args.model,
        output,
        name=args.name,
        version=args.version,
        signing_key=args.sign,
        latency_budget_ms=args.latency_budget_ms,
        preprocessing=preprocessing,
        compression=args.compression,
        io_change=args.io_change,
    )
    facts = {
        "package": str(info.path),
        "size_bytes": info.size,
        "model_bytes": info.manifest["compression"]["model_bytes"],
        "sha256": info.sha256,
        "signature": f"{info.path}.sig",
        "manifest": info.manifest,
    }
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        print(
            f"wrote {facts['package']} ({facts['size_bytes']:,} bytes; model {facts['model_bytes']:,} bytes), "
            f"sha256 {facts['sha256']}, signature {facts['signature']}"
        )
        signature = package.manifest_signature(info.manifest)  # what devices check the model against
        for kind, tensors in (("input ", signature.inputs), ("output", signature.outputs)) if signature else ():
            for tensor in tensors:
                print(f"{kind} {tensor.describe()}")
    return 0


def _check_key_only(args: argparse.Namespace) -> None:
    """--new-key makes a key pair and exits: packaging options beside it would do nothing."""
    from edgekit.errors import InputError

    given = [
        flag
        for flag, value in (
            ("MODEL", args.model),
            ("-o", args.output),
            ("--name", args.name),
            ("--version", args.version),
            ("--sign", args.sign),
            ("--latency-budget-ms", args.latency_budget_ms),
            ("--preprocess", args.preprocess),
            ("--io-change", args.io_change),
        )
        if value
    ]
    if given:
        raise InputError(
            f"--new-key only makes a key pair; {', '.join(given)} would do nothing: make the key first, "
            "then package with --sign PRIVATE"
        )
