"""The ``edgekit`` command.

Each subcommand lives in its own module under ``edgekit.commands`` with ``add_arguments``
and ``run``; modules are imported only when their subcommand runs, so a device install
without the converter's dependencies still has ``bench`` and ``agent``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
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
    "demo": ("demo", "run the whole product here: models, packages, simulated devices, rollouts"),
}


# the libraries whose versions decide what edgekit can run and convert, as `edgekit --version` lists them
REPORTED_LIBRARIES = ("ai-edge-litert", "tflite-runtime", "onnxruntime", "onnx", "numpy")
LOG_LEVELS = ("debug", "info", "warning", "error")
# (command, action) of the long-running services, whose log is their record of what they did (rollout events,
# deployments); every other command logs warnings and worse unless --log-level says otherwise
LOGS_AT_INFO = {("agent", "run"), ("fleet", "serve")}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"edgekit.commands.{name}") is not None


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes in one line (what was wrong, where to look), exit 2: not a usage dump."""

    def error(self, message: str):
        path = _typed_path(self, getattr(self, "typed", []))
        hint = _where_options_go(path, message) or f"see {path[-1].prog} --help"
        self.exit(2, f"{self.prog}: error: {message} ({hint})\n")


def _where_options_go(path: list[argparse.ArgumentParser], message: str) -> str | None:
    """For an option given after a sub-action (``edgekit fleet devices --api URL``): the command
    on the typed path that takes it, before its action."""
    if not message.startswith("unrecognized arguments: "):
        return None
    options = [word.split("=")[0] for word in message.split(": ", 1)[1].split() if word.startswith("--")]
    for option in options:
        for owner in path:
            if option in owner._option_string_actions:
                return f"{option} belongs to '{owner.prog}': put it before the action, right after '{owner.prog}'"
    return None


def _typed_path(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[argparse.ArgumentParser]:
    """``parser`` and the sub-parsers the typed ``words`` select, outermost first."""
    path = [parser]
    for word in words:
        actions = [a for a in path[-1]._actions if isinstance(a, argparse._SubParsersAction)]
        if actions and word in actions[0].choices:
            path.append(actions[0].choices[word])
    return path


def version_report() -> str:
    """edgekit's version, then each reported library's (read from package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    lines = [f"edgekit {__version__} (Python {platform.python_version()})"]
    width = max(len(name) for name in REPORTED_LIBRARIES)
    for name in REPORTED_LIBRARIES:
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "not installed"
        lines.append(f"  {name:<{width}}  {found}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """argparse's own version action re-wraps the text into one paragraph: this keeps the lines."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_report())
        parser.exit()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes, not the stream it was made with:
    a caller that swaps stderr (a test harness, a redirect) never leaves it writing to a closed one."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(level_name: str) -> None:
    """One stderr handler on the root logger, replacing the one an earlier ``main`` call made."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "edgekit_cli", False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.edgekit_cli = True
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level_name.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgekit", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action=VersionAction, help="show edgekit's version and the runtime and converter libraries found"
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        help="diagnostics on stderr from this level up (default warning; info for "
        + " and ".join(" ".join(service) for service in sorted(LOGS_AT_INFO))
        + ")",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, (module_name, help_text) in COMMANDS.items():
        if not _available(module_name):
            continue
        p = sub.add_parser(command, help=help_text, description=help_text)
        module = importlib.import_module(f"edgekit.commands.{module_name}")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def user_message(exc: EdgekitError, module) -> str:
    """The error's one line, naming the command's flags where the library named its parameters
    (an error with ``renamed``, given the module's PARAMETER_FLAGS: parameter -> flag)."""
    renamed = getattr(exc, "renamed", None)
    return renamed(getattr(module, "PARAMETER_FLAGS", {})) if renamed else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.typed = list(sys.argv[1:] if argv is None else argv)  # for the hint of OneLineParser.error
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    service = (args.command, getattr(args, "action", None))
    configure_logging(args.log_level or ("info" if service in LOGS_AT_INFO else "warning"))
    try:
        return int(args._module.run(args) or 0)
    except EdgekitError as exc:
        print(f"edgekit {args.command}: error: {user_message(exc, args._module)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader (head, a closed pager) stopped reading: nothing went wrong here
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141
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
