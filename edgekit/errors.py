"""One exception family for mistakes a user can make.

The CLI prints an ``EdgekitError`` as one line and exits non-zero; anything else is a bug
and keeps its traceback. Where a library (onnx, onnxruntime, LiteRT) refuses what the user gave
it, :func:`mapped` turns its exception into one of these, as httpx maps the exceptions of the
transports it wraps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class EdgekitError(Exception):
    """A user-facing error: the message says what was wrong and what to do."""

    exit_code = 2


class InvalidModelError(EdgekitError):
    """A model file that cannot be read (truncated, not the expected format)."""


class UnsupportedModelError(EdgekitError):
    """A model that uses something edgekit cannot convert or run."""


class ShapeError(EdgekitError):
    """Dynamic, missing or mismatched shapes."""


class InputError(EdgekitError):
    """Bad data passed to a model or a command (wrong name, shape, dtype, values)."""


class CalibrationError(InputError):
    """Calibration data that is missing, empty or malformed."""


class OutputPathError(EdgekitError):
    """An output path that cannot be written."""


class BackendError(EdgekitError):
    """A runtime backend or delegate that is missing or failed to load."""


class PackageError(EdgekitError):
    """A model package that fails verification (signature, digest, size, layout)."""


class FleetError(EdgekitError):
    """Fleet, broker or rollout problems a user can fix."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at ``limit``."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


@contextmanager
def mapped(
    error: type[EdgekitError], what: str, catch: tuple[type[BaseException], ...] = (Exception,)
) -> Iterator[None]:
    """A library exception of a ``catch`` type raised inside becomes ``error("{what}: {its first
    line}")``; edgekit's own errors pass unchanged."""
    try:
        yield
    except EdgekitError:
        raise
    except catch as exc:
        raise error(f"{what}: {first_line(exc)}") from exc


class _Templated:
    """An error whose message is a template naming parameters (see :class:`ParameterError`)."""

    def __init__(self, template: str, **values: Any):
        self.template = template
        self.values = values
        super().__init__(self.renamed({}))

    def renamed(self, flags: Mapping[str, str]) -> str:
        """The message with each parameter named as ``flags`` says (unknown ones keep their name)."""
        return self.template.format_map(_Names(flags, self.values))


class ParameterError(_Templated, InputError):
    """A parameter value the library refuses. The message is a template whose fields are
    parameters: ``{name}`` alone, ``{name:METAVAR}`` with a placeholder, and with the value
    given (``values``) that value. The library says ``name`` / ``name=VALUE``; a CLI says
    ``--flag`` / ``--flag VALUE``, its ``flags`` mapping parameter -> flag."""


class UnsupportedOpsError(_Templated, UnsupportedModelError):
    """Ops edgekit cannot lower, every one named; the message (a template, as
    :class:`ParameterError`'s) says how to convert the part of the model before them."""


class _Names(dict):
    def __init__(self, flags: Mapping[str, str], values: Mapping[str, Any]):
        super().__init__()
        self.flags = flags
        self.values = values

    def __missing__(self, parameter: str) -> _Name:
        return _Name(parameter, self.flags.get(parameter), self.values.get(parameter))


@dataclass(frozen=True)
class _Name:
    parameter: str
    flag: str | None
    value: Any

    def __format__(self, metavar: str) -> str:
        shown = metavar if self.value is None else f"{self.value:g}" if isinstance(self.value, float) else self.value
        if self.flag is None:
            return f"{self.parameter}={shown}" if shown != "" else self.parameter
        return f"{self.flag} {shown}" if shown != "" else self.flag
