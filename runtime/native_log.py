"""What the interpreters' C++ logger writes, sent through ``logging``.

LiteRT and tflite-runtime write "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to file
descriptor 2 for every interpreter they create. Neither has a Python switch for it: TF_CPP_MIN_LOG_LEVEL
does not reach that logger (ai-edge-litert 2.3, tflite-runtime 2.14), and neither library exports
its severity setter. So while ``to_logging`` is open, fd 2 points at a temporary file; afterwards
its INFO lines become debug records, WARNING and ERROR lines records of their level, and any other
text (another thread's output) goes back to stderr as it was written."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

NATIVE_LINE = re.compile(r"^(VERBOSE|INFO|WARNING|ERROR): (.*)$")
NATIVE_LEVELS = {"VERBOSE": logging.DEBUG, "INFO": logging.DEBUG, "WARNING": logging.WARNING, "ERROR": logging.ERROR}

# fd 2 is one per process: two overlapping redirects would restore each other's target, not stderr
_redirecting = threading.Lock()


@contextmanager
def to_logging() -> Iterator[None]:
    with _redirecting:
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 at all (a daemon started with stderr closed): nothing to keep out
            saved = None
        if saved is None:
            yield
            return
        if sys.stderr is not None:
            sys.stderr.flush()
        with tempfile.TemporaryFile() as sink:  # a pipe would block the interpreter once its buffer filled
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                forward(sink.read().decode(errors="replace"))


def forward(text: str) -> None:
    """Native log lines to ``logging``; anything else back to stderr unchanged."""
    other = []
    for line in text.splitlines():
        native = NATIVE_LINE.match(line)
        if native:
            log.log(NATIVE_LEVELS[native[1]], "%s", native[2])
        elif line.strip():
            other.append(line)
    if other and sys.stderr is not None:
        sys.stderr.write("\n".join(other) + "\n")
        sys.stderr.flush()
