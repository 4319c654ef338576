"""Writing files so that nothing is ever lost: one place for every command and layer.

A file is the whole new content or the old one (a temporary file in the same folder, flushed,
then renamed over), never half-written, never left behind as a temporary on failure. Its mode is
what ``open()`` would give under the umask, or the one asked for (secrets: 0600) from the first
byte. ``check_output_path`` refuses, before any work, an output that is a folder, a special file,
in a folder that does not exist or cannot be written, or one of the command's own inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def check_output_path(path: str | os.PathLike, *inputs: str | os.PathLike | bytes | None) -> Path:
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"cannot write {path}: it is not a regular file")
    if not path.parent.is_dir():
        raise OutputPathError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    for source in inputs:
        if source is not None and not isinstance(source, bytes | bytearray) and _same_file(path, source):
            raise OutputPathError(f"{path} is the command's input: writing it would destroy it; choose another -o")
    try:  # can a file be made there at all (/proc, a read-only mount)? Better known now than after the work
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _same_file(a: Path, b) -> bool:
    try:
        return Path(b).exists() and a.exists() and os.path.samefile(a, b)
    except (OSError, TypeError):
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
