"""Making text safe for a terminal: the one function every text renderer uses.

Registry files, /etc/services, certificate names, banners, process names: all of it is chosen
by someone else. Printed raw, an escape sequence in it can retitle the window (ESC ] 0;... BEL),
clear the screen (ESC [2J), move the cursor to overwrite earlier lines, or, on some terminals,
write to the clipboard. `terminal_safe` shows every such character as a visible escape
(\\x1b, \\x07, \\u009b, \\u202e) instead, so the text stays readable and nothing reaches the terminal
as a command.

What counts as unsafe: the C0 controls (except, with multiline=True, newline and tab), DEL,
the C1 controls (U+0080-U+009F: U+009B is a one-character CSI on some terminals), the line and
paragraph separators, and the bidirectional overrides/isolates (which make text read in a
different order than it is stored: "Trojan Source").

`SafeStream` is the backstop: the CLI wraps stdout and stderr in it, so even a renderer that
forgot the function cannot send a control sequence. It lets through only what portatlas
itself writes: newlines, tabs, carriage returns and colour (SGR, ESC [ digits m) and
erase-line (ESC [K) sequences. (A colour sequence inside data would pass it: it can change
colours, never the title, the screen or the cursor; renderers call terminal_safe on data so
that even that does not happen.)
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs milliseconds at start-up
if TYPE_CHECKING:
    from typing import TextIO

_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_UNSAFE_MULTILINE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# what the backstop lets through: our own colour/erase-line sequences, newline, tab, CR
_OWN = re.compile(r"\x1b\[[0-9;]*[mK]|[\n\t\r]")
_ANY_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")


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
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE
    return pattern.sub(_escape, text)


class SafeStream:
    """A text stream wrapper that neutralises control sequences portatlas did not write."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if not text.isprintable() and _ANY_CONTROL.search(text):
            # ESC [ ... m / K are let through only as whole sequences, so a lone ESC from
            # data (followed by ']' or '[2J') is escaped
            text = _backstop_sequences(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _backstop_sequences(text: str) -> str:
    out = []
    pos = 0
    length = len(text)
    while pos < length:
        match = _ANY_CONTROL.search(text, pos)
        if match is None:
            out.append(text[pos:])
            break
        start = match.start()
        out.append(text[pos:start])
        own = _OWN.match(text, start)
        if own is not None:
            out.append(own.group())
            pos = own.end()
        else:
            out.append(_escape(match))
            pos = start + 1
    return "".join(out)
