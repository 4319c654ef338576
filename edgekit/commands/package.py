"""edgekit package MODEL.tflite --name N --version V --sign KEY: a signed model package."""

from __future__ import annotations

import argparse
import json
import math

from edgekit.protocol import SAFE_ID, SAFE_ID_RULE, SAFE_VERSION, SAFE_VERSION_RULE


def _package_id(text: str) -> str:
    """--name: an id devices and the fleet take (it becomes file and target names)."""
    if not SAFE_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid: it must be {SAFE_ID_RULE}")
    return text


def _package_version(text: str) -> str:
    """--version: the same, or a semantic version with build metadata (1.0+cuda)."""
    if not SAFE_VERSION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid: it must be {SAFE_VERSION_RULE}")
    return text


def _milliseconds(text: str) -> float:
    """A latency limit: a finite number > 0 (NaN would pass every health check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of milliseconds > 0, e.g. 50")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="the .tflite (or .onnx) model")
    parser.add_argument("-o", "--output", help="package file (default NAME-VERSION.tar.xz, or .tar uncompressed)")
    parser.add_argument("--name", type=_package_id, help=f"the model's name: {SAFE_ID_RULE}")
    parser.add_argument("--version", type=_package_version, help="the model's version, e.g. 1.2 or 1.2+cuda")
    parser.add_argument("--sign", metavar="KEY", help="the fleet's ed25519 private key file")
    parser.add_argument(
        "--latency-budget-ms", type=_milliseconds, metavar="MS", help="the health check's p50 latency limit (> 0)"
    )
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
    preprocessing = _preprocessing(args.preprocess) if args.preprocess else None
    suffix = ".tar.xz" if args.compression == "xz" else ".tar"
    output = args.output or f"{args.name}-{args.version}{suffix}"
    _check_outputs(args, output)
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


def _preprocessing(text: str) -> dict:
    """--preprocess as a JSON object; NaN, Infinity and 1e999, which Python's JSON reader takes, refused."""
    from edgekit.errors import InputError

    def refuse(constant: str):
        raise InputError(f"--preprocess holds {constant}; give finite numbers")

    def finite(number: str) -> float:
        return float(number) if math.isfinite(float(number)) else refuse(number)

    try:
        preprocessing = json.loads(text, parse_constant=refuse, parse_float=finite)
    except ValueError as exc:
        raise InputError(f"--preprocess is not valid JSON ({exc})") from None
    if not isinstance(preprocessing, dict):
        raise InputError("--preprocess takes a JSON object, e.g. '{\"resize\": [224, 224]}'")
    return preprocessing


def _check_outputs(args: argparse.Namespace, output: str) -> None:
    """The package and its .sig are neither the model nor the signing key (nor a folder...), told
    with this command's flags before the library checks them again."""
    from edgekit.files import check_output_path

    inputs = {"MODEL": args.model, "--sign": args.sign}
    check_output_path(output, named=inputs)
    check_output_path(f"{output}.sig", named=inputs)
