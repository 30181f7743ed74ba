"""nmap's expressions are PCRE; we run them with Python's `re`. This module says why that is
exact for the installed file, and gives the prefilter that keeps matching cheap. Pure.

Where PCRE and Python's `re` differ, and what the installed file uses (audited by
`differences()`, asserted empty by tests/test_identify_nmap_db.py for every line):
 - `\\Z` (PCRE: end or before a final newline; Python: the very end), `\\z`, `\\h`, `\\v`
   (PCRE: classes; Python: none / a vertical tab), `\\e`, `\\Q..\\E`, `\\K`, `\\R`, `\\X`,
   POSIX classes `[[:alpha:]]` (Python reads them as a plain set), `{,n}` (PCRE 8/10.3x:
   literal; Python: 0..n), named groups `(?<n>` (Python 3.11: an error) - none is used;
 - `\\0`, `\\xHH`, octal, backreferences, lookarounds, possessive quantifiers and atomic
   groups (Python >= 3.11) behave alike; escaped punctuation is literal in both;
 - bytes patterns: `\\d`, `\\w`, `\\s` and `re.I` are ASCII-only in Python, as in PCRE
   without UTF mode (nmap's); `.` stops at "\\n" unless the `s` flag is given, in both;
   `$` matches at the end or before a final newline in both (no DOLLAR_ENDONLY).
nmap's own match limits have no equivalent in `re`; replies are cut to a bounded size
(engine.REPLY_LIMIT) before matching, which bounds the work per line.

The prefilter: most lines are anchored (`^SSH-`, `^HTTP/1\\.[01]`): the literal bytes they
must start with are taken from the pattern once, and a reply that does not start with them
never reaches the regex engine (nor forces the line to be compiled).
"""

from __future__ import annotations

import re

_SPECIAL = set(".^$*+?{}[]\\|()")
_QUANT = set("*+?{")
_SIMPLE_ESC = {"r": 13, "n": 10, "t": 9, "f": 12, "a": 7, "e": 27}

# constructs whose meaning differs between PCRE and Python's re (see the module text)
_DIFFERENT = re.compile(r"\\[ZzhHvVeQEKRX]|\[\[:|\[:\w+:\]|\{,\d|\(\?<(?![=!])|\(\?P?>?&")


def differences(pattern: str) -> list[str]:
    """Constructs of `pattern` whose meaning differs between PCRE and Python (empty when the
    pattern means the same in both). Escaped backslashes are skipped first."""
    found = []
    i = 0
    clean = []
    while i < len(pattern):  # drop '\\\\' pairs so '\\\\Z' (a backslash, then Z) is not read as \Z
        if pattern.startswith("\\\\", i):
            clean.append("__")
            i += 2
        else:
            clean.append(pattern[i])
            i += 1
    for m in _DIFFERENT.finditer("".join(clean)):
        found.append(m.group(0))
    return found


def literal_prefix(pattern: bytes, flags: int) -> bytes:
    """The bytes every match must start at the beginning of the reply with (b"" when the
    pattern is not anchored at ^ or starts with no literal)."""
    text = pattern.decode("latin-1")
    if not text.startswith("^") or _top_level_alternation(text):
        return b""
    out = bytearray()
    i = 1
    while i < len(text):
        ch = text[i]
        start = i
        if ch == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2:i + 4]):
                byte, i = int(text[i + 2:i + 4], 16), i + 4
            elif nxt == "0" and not text[i + 2:i + 3].isdigit():
                byte, i = 0, i + 2
            elif nxt in _SIMPLE_ESC and nxt != "e":
                byte, i = _SIMPLE_ESC[nxt], i + 2
            elif not nxt.isalnum():
                byte, i = ord(nxt), i + 2
            else:
                break  # a class (\d, \s...), a backreference or an octal: stop
        elif ch in _SPECIAL:
            break
        else:
            byte, i = ord(ch), i + 1
        if i < len(text) and text[i] in _QUANT:
            i = start  # the last literal is quantified: it may be absent or repeated
            break
        out.append(byte & 0xFF)
    del i
    return bytes(out)


def _top_level_alternation(text: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if text[i + 1:i + 2] == "^":
                i += 1
            if text[i + 1:i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
        i += 1
    return False
