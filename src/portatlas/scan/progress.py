"""A one-line progress bar on standard error, only when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from portatlas.textsafe import SafeStream, own

_CR = own("\r")
_ERASE = own("\x1b[K")


class Progress:
    """Call update(done, open_count) as results arrive; finish() clears the line."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        stream = stream or sys.stderr
        # the carriage return and erase-line are our own sequences (portatlas/textsafe.py)
        self.stream = stream if isinstance(stream, SafeStream) else SafeStream(stream)
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled and total > 0
        self.total = total
        self.label = label
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, open_count: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and done < self.total:
            return
        self.last = now
        frac = min(1.0, done / self.total)
        width = 24
        filled = int(frac * width)
        bar = "#" * filled + "-" * (width - filled)
        elapsed = now - self.started
        eta = ""
        if 0 < frac < 1 and elapsed > 0.5:
            eta = f" · ETA {elapsed / frac - elapsed:.0f}s"
        line = (f"{_CR}{self.label} [{bar}] {done:,}/{self.total:,} {frac * 100:3.0f}%"
                f" · {open_count} open{eta}")
        self.stream.write(line + _ERASE)
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.enabled and self.shown:
            self.stream.write(_CR + _ERASE)
            self.stream.flush()
