"""Telnet (RFC 854): servers usually open with option negotiation, IAC (0xFF) followed by
WILL/WONT/DO/DONT (0xFB-0xFE) and an option number, or a sub-negotiation (IAC SB ... IAC SE).
We only read: the negotiated options and any text that follows (a login prompt) are facts."""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, printable_ratio

IAC, SB, SE = 0xFF, 0xFA, 0xF0
VERBS = {0xFB: "WILL", 0xFC: "WONT", 0xFD: "DO", 0xFE: "DONT"}
OPTIONS = {0: "binary", 1: "echo", 3: "suppress-go-ahead", 5: "status", 6: "timing-mark",
           24: "terminal-type", 31: "window-size", 32: "terminal-speed",
           33: "remote-flow-control", 34: "linemode", 35: "x-display-location",
           36: "environ", 37: "authentication", 38: "encryption", 39: "new-environ"}
_PROMPT = re.compile(rb"(login|username|user name|password)\s*:\s*$", re.I)


def parse(data: bytes) -> tuple[list[str], bytes, bool]:
    """(negotiations like 'DO terminal-type', the text outside them, well-formed?)."""
    negotiations: list[str] = []
    text = bytearray()
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte != IAC:
            text.append(byte)
            i += 1
            continue
        if i + 1 >= n:
            break
        cmd = data[i + 1]
        if cmd in VERBS:
            if i + 2 >= n:
                break
            opt = data[i + 2]
            negotiations.append(f"{VERBS[cmd]} {OPTIONS.get(opt, str(opt))}")
            i += 3
        elif cmd == SB:
            end = data.find(bytes([IAC, SE]), i + 2)
            if end < 0:
                break
            negotiations.append(f"SB {OPTIONS.get(data[i + 2], str(data[i + 2]))}"
                                if i + 2 < n else "SB")
            i = end + 2
        elif cmd == IAC:
            text.append(IAC)
            i += 2
        elif 0xF0 <= cmd <= 0xF9:
            i += 2  # NOP, GA and the other two-byte commands
        else:
            return negotiations, bytes(text), False
        if len(negotiations) > 64:
            break
    return negotiations, bytes(text), True


@register
class TelnetProbe(Probe):
    name = "telnet"
    transport = "tcp"
    ports = frozenset({23, 2323, 992})
    services = frozenset({"telnet", "telnets", "rtelnet"})
    server_first = True
    rarity = 20
    read_budget = 8192

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return len(banner) >= 2 and banner[0] == IAC and (banner[1] in VERBS or banner[1] == SB)

    def feed(self, data: bytes) -> Step:
        if data[:1] == bytes([IAC]):
            if len(data) < 3:
                return Wait()
            negotiations, text, ok = parse(data)
            if not ok or not negotiations:
                return NoMatch("malformed telnet negotiation")
            if len(negotiations) < 2 and len(data) < 64:
                return Wait()  # more negotiation (or the prompt) usually follows at once
            return self._verdict(negotiations, text, data, 0.95)
        if _PROMPT.search(data[-64:]) and printable_ratio(data) > 0.95:
            return self._verdict([], data, data, 0.6)  # a bare login prompt: telnet-like
        return NoMatch("no telnet negotiation")

    def finish(self, data: bytes) -> Step:
        if data[:1] == bytes([IAC]):
            negotiations, text, ok = parse(data)
            if ok and negotiations:
                return self._verdict(negotiations, text, data, 0.9)
        return NoMatch("no telnet negotiation")

    def _verdict(self, negotiations: list[str], text: bytes, data: bytes,
                 confidence: float) -> Verdict:
        extra: dict = {"negotiation": negotiations[:32]}
        shown = clean(text.decode("utf-8", "replace"), 200)
        if shown:
            extra["text"] = shown
        product = None
        for needle, name in ((b"BusyBox", "BusyBox telnetd"), (b"MikroTik", "MikroTik telnetd"),
                             (b"Cisco", "Cisco telnetd")):
            if needle in data:
                product = name
        return Verdict("telnet", product, None, extra, confidence, escape_evidence(data))
