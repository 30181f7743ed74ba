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
_QUANTIFIER = re.compile(r"\{\d*,?\d*\}")
_ZERO_QUANT = re.compile(r"\{0*,|\{0+\}")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_QUANT = set("*+?{")
_SIMPLE_ESC = {"r": 13, "n": 10, "t": 9, "f": 12, "a": 7, "e": 27}

# constructs whose meaning differs between PCRE and Python's re (see the module text)
_DIFFERENT = re.compile(r"\\[ZzhHvVeQEKRX]|\[\[:|\[:\w+:\]|\{,\d|\(\?<(?![=!])|\(\?P?>?&")


def differences(pattern: str) -> list[str]:
    """Constructs of `pattern` whose meaning differs between PCRE and Python (empty when the
    pattern means the same in both). Escaped backslashes are skipped first."""
    # drop '\\\\' pairs first, so that '\\\\Z' (a backslash, then Z) is not read as \Z
    clean = pattern.replace("\\\\", "__")
    found = [m.group(0) for m in _DIFFERENT.finditer(clean)]
    return found


# the literal head of an anchored pattern, found in one regex call (cheap for 12,000 lines)
_HEAD = re.compile(r"\^((?:[^\\.^$*+?{}\[\]|()]|\\x[0-9A-Fa-f]{2}|\\0(?!\d)|\\[rntfa]"
                   r"|\\[^A-Za-z0-9])*)")


def first_literal(pattern: bytes) -> int:
    """The first byte every match must start with, or -1 when it is not certain (cheap: the
    candidate index of every probe needs it for thousands of lines). Conservative: any doubt
    gives -1, which only means the line is always tried."""
    if pattern[:1] != b"^" or len(pattern) < 2:
        return -1
    text = pattern.decode("latin-1")
    ch, end = text[1], 2
    if ch == "\\":
        nxt = text[2:3]
        if nxt == "x" and _HEX2.fullmatch(text, 3, 5):
            byte, end = int(text[3:5], 16), 5
        elif nxt == "0" and not text[3:4].isdigit():
            byte, end = 0, 3
        elif nxt in _SIMPLE_ESC and nxt != "e":
            byte, end = _SIMPLE_ESC[nxt], 3
        elif nxt and not nxt.isalnum():
            byte, end = ord(nxt), 3
        else:
            return -1
    elif ch in _SPECIAL:
        return -1
    else:
        byte = ord(ch) & 0xFF
    if text[end:end + 1] in ("?", "*", "{") or _top_level_alternation(text):
        return -1
    return byte


def literal_prefix(pattern: bytes, flags: int) -> bytes:
    """The bytes every match must start at the beginning of the reply with (b"" when the
    pattern is not anchored at ^ or starts with no literal)."""
    text = pattern.decode("latin-1")
    if not text.startswith("^"):
        return b""
    head = _HEAD.match(text)
    if head is None or not head.group(1) or _top_level_alternation(text):
        return b""
    text = "^" + head.group(1) + text[head.end():head.end() + 1]
    out = bytearray()
    i = 1
    while i < len(text):
        ch = text[i]
        start = i
        if ch == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt == "x" and _HEX2.fullmatch(text, i + 2, i + 4):
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


_ESCAPED = re.compile(r"\\.", re.S)
_SET = re.compile(r"\[\^?\]?[^\]]*\]")
_STRUCTURE = re.compile(r"[()|]")


def _top_level_alternation(text: str) -> bool:
    """Is there a '|' outside every group? (Escapes and sets removed first, in C; then only
    parentheses and bars are walked.)"""
    if "|" not in text:
        return False
    bare = _SET.sub("", _ESCAPED.sub("", text))
    depth = 0
    for m in _STRUCTURE.finditer(bare):
        ch = m.group(0)
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            return True
    return False


def literal_weight(pattern: bytes) -> int:
    """Roughly how many literal bytes a match must contain: characters outside sets,
    classes and negative lookarounds, not made optional by ?, * or {0,...}. A line of weight
    < WEAK_WEIGHT ('^(?!HTTP).{264}$': any 264 bytes) proves little about a service."""
    text = pattern.decode("latin-1")
    count, i, depth_neg = 0, 0, 0
    stack: list[bool] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1:i + 2]
            step = 4 if nxt == "x" else 2
            literal = not nxt.isalpha() or nxt in "xrnt0"
            i += step
            if literal and not depth_neg and not _optional(text, i):
                count += 1
            continue
        if ch == "[":
            i = _class_end(text, i)
            continue
        if ch == "(":
            negative = text.startswith("(?!", i) or text.startswith("(?<!", i)
            stack.append(negative)
            depth_neg += negative
            i += 1
            continue
        if ch == ")":
            if stack and stack.pop():
                depth_neg -= 1
            i += 1
            continue
        if ch == "{":
            quant = _QUANTIFIER.match(text, i)
            if quant and quant.group(0) != "{}":
                i += len(quant.group(0))
                continue
        elif ch in ".^$|*+?}":
            i += 1
            continue
        i += 1
        if not depth_neg and not _optional(text, i):
            count += 1
    return count


WEAK_WEIGHT = 2


def _class_end(text: str, i: int) -> int:
    """The index just past the character class that opens at text[i] ("["): a "]" right
    after the "[" or "[^" is a member, not the end, and escapes are skipped."""
    j = i + 1
    if text[j:j + 1] == "^":
        j += 1
    if text[j:j + 1] == "]":
        j += 1
    while j < len(text) and text[j] != "]":
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _optional(text: str, i: int) -> bool:
    nxt = text[i:i + 1]
    return nxt in ("?", "*") or text.startswith("{0", i) or text.startswith("{,", i)


NEEDLE_SCAN = 160  # characters of a pattern scanned for its required literal


def required_literal(pattern: bytes) -> bytes:
    """The longest run of literal bytes every match must contain somewhere (b"" when none is
    certain): literals of the top-level sequence only - groups, sets and classes end a run,
    a quantifier that allows zero removes the character before it, and a top-level
    alternation makes nothing certain."""
    text = pattern.decode("latin-1")
    if "|" in text and _top_level_alternation(text):
        return b""
    text = text[:NEEDLE_SCAN]  # a run found early is as good a filter (and it stays cheap)
    runs: list[bytearray] = [bytearray()]
    i = 0
    while i < len(text):
        ch = text[i]
        byte = None
        if ch == "\\":
            nxt = text[i + 1:i + 2]
            if nxt == "x" and _HEX2.fullmatch(text, i + 2, i + 4):
                byte, i = int(text[i + 2:i + 4], 16), i + 4
            elif nxt == "0" and not text[i + 2:i + 3].isdigit():
                byte, i = 0, i + 2
            elif nxt in _SIMPLE_ESC and nxt != "e":
                byte, i = _SIMPLE_ESC[nxt], i + 2
            elif nxt and not nxt.isalnum():
                byte, i = ord(nxt), i + 2
            else:
                i += 2  # a class, backreference or octal: not a literal
        elif ch == "[":
            i = _class_end(text, i)
        elif ch == "(":
            depth, j = 0, i
            while j < len(text):  # skip the whole group
                c = text[j]
                if c == "\\":
                    j += 2
                    continue
                if c == "[":
                    j = _class_end(text, j)
                    continue
                depth += c == "("
                depth -= c == ")"
                j += 1
                if depth == 0:
                    break
            i = j
        elif ch == "{" and _QUANTIFIER.match(text, i) and text[i:i + 2] != "{}":
            i = _QUANTIFIER.match(text, i).end()
        elif ch in ".^$*+?|)":
            i += 1
        else:
            byte, i = ord(ch) & 0xFF, i + 1
        quant = text[i:i + 1]
        optional = quant in ("?", "*") or (quant == "{" and _ZERO_QUANT.match(text, i))
        if byte is not None and not optional and quant not in ("+", "{"):
            runs[-1].append(byte)
            continue
        if byte is not None and not optional:
            runs[-1].append(byte)  # required at least once, but what follows may repeat it
        if runs[-1]:
            runs.append(bytearray())
    return bytes(max(runs, key=len)) if runs else b""
