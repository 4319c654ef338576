"""The ``edgekit`` command.

Each subcommand lives in its own module under ``edgekit.commands`` with ``add_arguments``
and ``run``; modules are imported only when their subcommand runs, so a device install
without the converter's dependencies still has ``bench`` and ``agent``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgekit import __version__
from edgekit.errors import EdgekitError

# subcommand -> (module under edgekit.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("inspect", "show a model's inputs, outputs, ops, size and what edgekit cannot lower"),
    "convert": ("convert", "convert an ONNX model to a TFLite flatbuffer (fp32, int8, int16x8, fp16)"),
    "verify": ("verify", "compare a TFLite model against its ONNX source on onnxruntime"),
    "bench": ("bench", "benchmark a model the way LiteRT's benchmark_model does"),
    "prune": ("prune", "prune and compress an ONNX model"),
    "package": ("package", "build a signed model package for over-the-air deployment"),
    "keys": ("keys", "create and inspect the fleet's signing keys"),
    "agent": ("agent", "run the device agent"),
    "fleet": ("fleet", "run and drive the fleet manager"),
    "demo": ("demo", "convert and verify the bundled sample model"),
}


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"edgekit.commands.{name}") is not None


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes in one line (what was wrong, where to look), exit 2: not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, (module_name, help_text) in COMMANDS.items():
        if not _available(module_name):
            continue
        p = sub.add_parser(command, help=help_text, description=help_text)
        module = importlib.import_module(f"edgekit.commands.{module_name}")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except EdgekitError as exc:
        print(f"edgekit {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        print(
            f"edgekit {args.command}: error: the Python package '{exc.name}' is not installed; "
            f"install the extra that provides it, e.g. pip install 'edgekit[convert]'",
            file=sys.stderr,
        )
        return 2
