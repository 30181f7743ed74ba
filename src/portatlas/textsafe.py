"""Making text safe for a terminal: the one function every text renderer's output passes.

This is core (not the rendering layer) because domain code also words messages from such
text (local.kill's refusals) and the CLI's output filter is installed before any renderer.

Registry files, /etc/services, certificate names, banners, process names: all of it is chosen
by someone else. Printed raw, an escape sequence in it can retitle the window (ESC ] 0;... BEL),
clear the screen (ESC [2J), move the cursor to overwrite earlier lines, change colours to hide
text, or, on some terminals, write to the clipboard. `terminal_safe` shows every such
character as a visible escape (\\x1b, \\x07, \\u009b, \\u202e) instead, so the text stays
readable and nothing reaches the terminal as a command.

What counts as unsafe: the C0 controls (except, with multiline=True, newline and tab), DEL,
the C1 controls (U+0080-U+009F: U+009B is a one-character CSI on some terminals), the line and
paragraph separators, and the bidirectional overrides/isolates (which make text read in a
different order than it is stored: "Trojan Source").

Where it is applied: the CLI wraps stdout and stderr in `SafeStream`, which passes everything
written through terminal_safe(multiline=True), so no renderer can forget it. portatlas's own
control sequences (colours, erase-line, the carriage return of a progress line) are written
with `own()`, which tags them with a per-process random nonce; SafeStream turns only tagged
sequences back into real ones. Text from a file or the network cannot carry the tag (it does
not know the nonce), so even a colour sequence in data is shown, not obeyed.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from typing import TextIO

_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_UNSAFE_MULTILINE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# The printable ASCII bytes (and newline and tab, for multiline text): deleting them from an
# ASCII text leaves exactly its unsafe characters. bytes.translate does that several times
# faster than the regular expression scans (local --json writes megabytes of ASCII).
_ASCII_SAFE = {False: bytes(range(0x20, 0x7f)), True: bytes(range(0x20, 0x7f)) + b"\n\t"}
# The unsafe ASCII characters one by one: for a long text, looking for each (a memchr pass,
# tens of bytes per instruction) is much faster than translate's byte-by-byte loop; for a
# short one the 33 passes cost more than they save.
_ASCII_UNSAFE = {multi: [chr(c) for c in range(0x80) if c not in safe]
                 for multi, safe in _ASCII_SAFE.items()}
_LONG = 2048

# Our own sequences: TAG + printable stand-ins + END, made by own() and undone by SafeStream.
_NONCE = os.urandom(4).hex()
TAG = "\ue000" + _NONCE
END = "\ue001"
_STAND_IN = {"\x1b": "E", "\r": "R", "\x07": "G"}
_BACK = {v: k for k, v in _STAND_IN.items()}
_TAGGED = re.compile(re.escape(TAG) + "([^\ue001]{1,32})" + END)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    # C0 controls as \xNN; the rest as \uNNNN, which is also a valid escape inside a JSON
    # string (json.dumps leaves C1 controls and bidi marks raw with ensure_ascii=False, and
    # the backstop must not turn valid JSON into invalid JSON)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}")


def terminal_safe(text: object, *, multiline: bool = False) -> str:
    """`text` with every character that a terminal could act on shown as an escape.

    multiline=True keeps newlines and tabs (for notes and descriptions that have lines)."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():  # the usual case: no work
        return text
    if text.isascii():
        # lines of plain ASCII (a JSON document, a table): safe when no control is in them
        if len(text) > _LONG:
            if not any(c in text for c in _ASCII_UNSAFE[multiline]):
                return text
        elif not text.encode("ascii").translate(None, _ASCII_SAFE[multiline]):
            return text
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE
    return pattern.sub(_escape, text)


@lru_cache(maxsize=4096)
def printable(text: str | None) -> str:
    """terminal_safe for one-line values, cached: the same command line is shown on every
    socket its process holds (the name the renderers and domain messages use)."""
    return terminal_safe(text)


def own(sequence: str) -> str:
    """A control sequence portatlas itself writes (a colour, erase-line, a carriage return),
    tagged so that SafeStream lets it through. Only ESC, CR and BEL may appear in it."""
    return TAG + "".join(_STAND_IN.get(c, c) for c in sequence) + END


def visible(text: str) -> str:
    """`text` without our own sequences (for measuring widths)."""
    return _TAGGED.sub("", text) if TAG in text else text


def _restore(match: re.Match[str]) -> str:
    return "".join(_BACK.get(c, c) for c in match.group(1))


def for_terminal(text: str) -> str:
    """What SafeStream writes for `text`: data made safe, our own sequences restored."""
    if text.isprintable():
        return text
    text = terminal_safe(text, multiline=True)
    if TAG in text:
        text = _TAGGED.sub(_restore, text)
    return text


class SafeStream:
    """A text stream that writes everything through for_terminal()."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(for_terminal(text))

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
