"""Progress of long work on stderr: a bar with an ETA (tqdm) when stderr is a terminal, plain
timestamped lines otherwise, so a log or CI output gets readable lines rather than carriage returns.

    with progress("calibrating (minmax)", total=len(samples), unit="samples") as bar:
        for sample in samples:
            ...
            bar.update()
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

# a log gets a progress line this often and no more often; work shorter than this prints none
LINE_INTERVAL_S = 10.0


class Progress:
    """Counts units done out of ``total``; ``set_total`` revises the total as the work learns its size."""

    def __init__(self, description: str, total: int, unit: str, stream: TextIO | None, line_interval_s: float) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream
        self._start = time.monotonic()
        self._line_interval_s = line_interval_s
        self._next_line = self._start + line_interval_s
        self._lines_written = 0
        self._done_at_last_line = 0
        self._bar = _terminal_bar(description, total, unit, stream) if stream is not None and stream.isatty() else None

    def update(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + self._line_interval_s
            self._write_line(now)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._lines_written and self.done != self._done_at_last_line:  # a log that heard of the work hears it end
            self._write_line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write_line(self, now: float) -> None:
        if self._stream is None:
            return
        elapsed = now - self._start
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.description}: {self.done}/{self.total} {self.unit}"
        if self.total:
            line += f" ({self.done / self.total:.0%})"
        line += f", {elapsed:.0f} s"
        if 0 < self.done < self.total:
            line += f", about {elapsed * (self.total - self.done) / self.done:.0f} s left"
        self._stream.write(line + "\n")
        self._stream.flush()
        self._lines_written += 1
        self._done_at_last_line = self.done


def _terminal_bar(description: str, total: int, unit: str, stream: TextIO):
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety: without tqdm the terminal gets the plain lines
        return None
    # leave=False: the finished bar is erased, so the result printed next stands alone
    return tqdm(total=total, desc=description, unit=unit, file=stream, leave=False)


def progress(
    description: str,
    total: int,
    unit: str = "it",
    stream: TextIO | None = None,
    line_interval_s: float = LINE_INTERVAL_S,
) -> Progress:
    """Progress on ``stream`` (default: sys.stderr at the time of the call)."""
    return Progress(description, total, unit, stream if stream is not None else sys.stderr, line_interval_s)
