"""One exception family for mistakes a user can make.

The CLI prints an ``EdgekitError`` as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


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
