"""Making text safe for a terminal: the one function every text renderer uses.

Process names, command lines, banners and certificate names are chosen by whoever runs the
process or the server: shown raw, a newline would break a table and an escape sequence could
rewrite the user's terminal. This is core (not the rendering layer) because domain code also
words messages from such text (local.kill's refusals).
"""

from __future__ import annotations

import re
from functools import lru_cache

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


@lru_cache(maxsize=4096)
def printable(text: str | None) -> str:
    """text with control characters written as escapes (\\n, \\x1b). Cached: the same
    command line is shown on every socket its process holds."""
    if not text:
        return text or ""
    if text.isprintable():
        return text
    return _CONTROL.sub(_escape, text)
