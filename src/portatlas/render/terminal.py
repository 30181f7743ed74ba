"""Terminal output: colour only on a terminal (honouring NO_COLOR/FORCE_COLOR), word wrap,
tables and JSON. The front ends and the other renderers use this; nothing below them does.

A small hand-rolled styler instead of rich: lookups must start in a few milliseconds.
"""

from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any, TextIO

from portatlas.textsafe import own, visible

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
          "magenta": "35", "cyan": "36"}


def colour_enabled(stream: TextIO | None = None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


class Style:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = colour_enabled() if enabled is None else enabled
        # Behind the CLI's output filter (portatlas/textsafe.py) colours are written tagged:
        # the filter lets only tagged sequences through, so data cannot colour anything.
        from portatlas.textsafe import SafeStream

        self._tagged = isinstance(sys.stdout, SafeStream)
        self._reset = own("\x1b[0m") if self._tagged else "\x1b[0m"

    def _open(self, codes: str) -> str:
        sequence = "\x1b[" + codes + "m"
        return own(sequence) if self._tagged else sequence

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return self._open(codes) + text + self._reset


def terminal_width() -> int:
    try:
        return max(40, min(os.get_terminal_size(sys.stdout.fileno()).columns, 160))
    except (OSError, ValueError, AttributeError):
        return 100


def wrap(text: str, width: int, indent: str) -> list[str]:
    """Greedy word wrap that keeps existing line breaks."""
    out: list[str] = []
    room = max(20, width - len(indent))
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split():
            if line and len(line) + 1 + len(word) > room:
                out.append(indent + line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append(indent + line)
    return out


def table(rows: list[list[str]], headers: list[str] | None = None, style: Style | None = None) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    all_rows = ([headers] if headers else []) + rows
    if not all_rows:
        return []
    widths = [max(len(_plain(r[i])) for r in all_rows if i < len(r)) for i in range(len(all_rows[0]))]
    lines = []
    for n, row in enumerate(all_rows):
        cells = [c + " " * (widths[i] - len(_plain(c))) if i < len(row) - 1 else c
                 for i, c in enumerate(row)]
        line = "  ".join(cells).rstrip()
        if headers and n == 0 and style:
            line = style(line, "bold")
        lines.append(line)
    return lines


def _plain(text: str) -> str:
    return visible(text)


def print_json(obj: Any, stream: TextIO | None = None) -> None:
    import json

    stream = stream or sys.stdout
    stream.write(json.dumps(obj, indent=2, ensure_ascii=False, default=_default))
    stream.write("\n")


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)
