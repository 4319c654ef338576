"""Writing files so that nothing is ever lost: one place for every command and layer.

A file is the whole new content or the old one (a temporary file in the same folder, flushed,
then renamed over), never half-written, never left behind as a temporary on failure. Its mode is
what ``open()`` would give under the umask, or the one asked for (secrets: 0600) from the first
byte. ``check_output_path`` refuses, before any work, an output that is a folder, a special file,
in a folder that does not exist or cannot be written, one of the command's own inputs or other
outputs, or a model named as another format."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from edgekit.errors import InvalidModelError, OutputPathError


def read_model(path: str | os.PathLike) -> bytes:
    """A model file's bytes, or one line saying why there are none (missing, a folder, unreadable)."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InvalidModelError(f"{path}: is a folder; give the model's .tflite or .onnx file") from None
    except FileNotFoundError:
        raise InvalidModelError(f"{path}: no such file; give the model's .tflite or .onnx file") from None
    except OSError as exc:
        raise InvalidModelError(f"{path}: {exc.strerror}") from None


def umask_mode(base: int = 0o666) -> int:
    """The mode ``open()`` gives a new file: ``base`` less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


Source = str | os.PathLike | bytes | None  # an input a command reads: a path, or bytes (nothing to clash with)


class ModelFormat(NamedTuple):
    label: str  # as messages name it
    suffixes: tuple[str, ...]  # the file name endings that say it, the usual one first


# a model format -> how to tell it; an output whose name says another format is refused
MODEL_FORMATS: dict[str, ModelFormat] = {
    "tflite": ModelFormat("TFLite", (".tflite",)),
    "onnx": ModelFormat("ONNX", (".onnx",)),
}


def check_output_path(
    path: str | os.PathLike,
    *inputs: Source,
    option: str = "-o",
    named: Mapping[str, Source] | None = None,
    outputs: Mapping[str, Source] | None = None,
    model_format: str | None = None,
) -> Path:
    """``path`` can be written without losing anything, checked before any work. ``inputs`` and
    ``named`` (what names the input -> its path) are what the command reads; ``outputs`` (what
    names it -> its path) the other files it writes; ``model_format`` the model ``path`` will hold
    (a key of MODEL_FORMATS). ``option`` is what the messages call ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"cannot write {path}: it is not a regular file")
    if not path.parent.is_dir():
        raise OutputPathError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    _check_not_an_input(path, option, [(None, source) for source in inputs] + list((named or {}).items()))
    for label, other in (outputs or {}).items():
        if other is not None and _same_path(path, other):
            raise OutputPathError(f"{option} and {label} both name {path}; give them different files")
    _check_model_suffix(path, option, model_format)
    try:  # can a file be made there at all (/proc, a read-only mount)? Better known now than after the work
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _check_not_an_input(path: Path, option: str, inputs: list[tuple[str | None, Source]]) -> None:
    for label, source in inputs:
        if source is not None and not isinstance(source, bytes | bytearray) and _same_file(path, source):
            which = f" ({label})" if label else ""
            raise OutputPathError(
                f"{path} is the command's input{which}: writing it would destroy it; choose another {option}"
            )


def _check_model_suffix(path: Path, option: str, model_format: str | None) -> None:
    """A model written under another format's name (a TFLite flatbuffer as x.onnx) is refused:
    it would replace a model of that format and mislead whatever reads it by its name."""
    if model_format is None:
        return
    written, suffix = MODEL_FORMATS[model_format], path.suffix.lower()
    for other in MODEL_FORMATS.values():
        if other != written and suffix in other.suffixes:
            raise OutputPathError(
                f"{path}: the name says {other.label}, but {option} gets a model in {written.label} format; "
                f"give {option} a {written.suffixes[0]} name"
            )


def _same_file(a: Path, b) -> bool:
    try:
        return Path(b).exists() and a.exists() and os.path.samefile(a, b)
    except (OSError, TypeError):
        return False


def _same_path(a: Path, b) -> bool:
    """Two outputs that are one file: the same file when both exist (links too), else the same place."""
    try:
        return _same_file(a, b) or a.resolve() == Path(b).resolve()
    except (OSError, TypeError, RuntimeError):
        return False


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> Path:
    """``data`` into ``path``, whole or not at all; ``mode`` None follows the umask. A failure is an
    OutputPathError naming the file (a full disk, a read-only folder), and the old file stays."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"write_atomic takes bytes or str, not {type(data).__name__}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, umask_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputPathError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
