"""Helpers shared by the line-based (text) protocol modules.

Everything here takes untrusted bytes and returns plain values; nothing raises on garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..base import Probe, ProbeContext, Verdict, escape_evidence

MAX_LINE = 4096


def complete_lines(data: bytes, limit: int = 200) -> list[str]:
    """The complete lines (ending in LF) of `data`, CR stripped, decoded leniently."""
    out = []
    for raw in data.split(b"\n")[:-1][:limit]:
        out.append(raw.rstrip(b"\r").decode("utf-8", "replace"))
    return out


def printable_ratio(data: bytes) -> float:
    if not data:
        return 1.0
    good = sum(1 for b in data if 0x20 <= b < 0x7F or b in (9, 10, 13))
    return good / len(data)


def clean(text: str, limit: int = 200) -> str:
    """Control characters out, whitespace collapsed, length bounded."""
    text = "".join(ch if ch.isprintable() else " " for ch in text[:limit * 2])
    return " ".join(text.split())[:limit]


@dataclass
class Reply:
    """A numeric reply (FTP, SMTP, MTP): code, text lines, and whether it is complete."""

    code: int
    lines: list[str]
    complete: bool
    size: int  # bytes of `data` this reply used

    @property
    def text(self) -> str:
        return " ".join(self.lines)


_CODE = re.compile(rb"^([1-5]\d\d)([ -]|\r?\n|$)")


def numeric_reply(data: bytes) -> Reply | None:
    """Parse one FTP/SMTP-style reply at the start of `data` (multi-line 'ddd-' form included).

    None when the bytes cannot start such a reply."""
    first = _CODE.match(data[:8])
    if not first:
        if len(data) < 4 and re.fullmatch(rb"[1-5]\d{0,2}", data or b"1"):
            return Reply(0, [], False, 0)  # too short to tell yet
        return None
    code = int(first.group(1))
    lines: list[str] = []
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return Reply(code, lines, False, pos)
        line = data[pos:nl].rstrip(b"\r")
        pos = nl + 1
        coded = line[:3] == str(code).encode() and line[3:4] in (b" ", b"-", b"")
        text = (line[4:] if coded else line).decode("utf-8", "replace")
        lines.append(text.strip())
        if len(lines) > 200:
            return None
        # the last line of a reply repeats the code followed by a space (or nothing)
        if line[:3] == str(code).encode() and (len(line) == 3 or line[3:4] == b" "):
            return Reply(code, lines, True, pos)


def split_product(software: str) -> tuple[str | None, str | None]:
    """'nginx/1.22.1' -> ('nginx', '1.22.1'); 'OpenSSH_9.2p1' -> ('OpenSSH', '9.2p1')."""
    software = software.strip()
    found = re.match(r"^([A-Za-z][\w.+ -]*?)[/_ -]v?(\d[\w.+~-]*)", software)
    if found:
        return found.group(1).strip(), found.group(2)
    found = re.match(r"^([A-Za-z][^(;\[]*)", software)
    return (found.group(1).strip()[:60], None) if found else (None, None)


def is_prefix(data: bytes, literal: bytes) -> bool:
    """True when `data` could still become `literal...` (it is a prefix of it, or starts with it)."""
    n = min(len(data), len(literal))
    return data[:n] == literal[:n]


def product_from_patterns(patterns: list[tuple[re.Pattern[str], str]],
                          text: str) -> tuple[str | None, str | None]:
    """The first (pattern, product) whose pattern occurs in `text`: (product, version), where
    the version is the pattern's first group when it has one."""
    for pattern, product in patterns:
        found = pattern.search(text)
        if found:
            return product, (found.group(1) if found.groups() else None)
    return None, None


class GreetingProbe(Probe):
    """Base of the server-first text protocols (FTP, SMTP, POP3, IMAP): a greeting, then a
    short command exchange; the product comes from the greeting via `products`."""

    server_first = True
    products: list[tuple[re.Pattern[str], str]] = []

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.state = "greeting"
        self.greeting = ""
        self.extra: dict = {}
        self.evidence = b""

    def _verdict(self, confidence: float) -> Verdict:
        product, version = product_from_patterns(self.products, self.greeting)
        return Verdict(self.name, product, version, dict(self.extra), confidence,
                       escape_evidence(self.evidence.rstrip(b"\r\n")))
