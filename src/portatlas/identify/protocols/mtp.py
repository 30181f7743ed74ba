"""MTP, the Mail Transfer Protocol of RFC 780 (May 1981), historic service of port 57.

MTP is SMTP's direct ancestor (RFC 788, November 1981, replaced it) and looks like it at
first sight: a '220' greeting, three-digit replies, MAIL, RSET, HELP, NOOP, QUIT. What
only MTP has, and what we test:

 - the multi-recipient commands: MRSQ (scheme query/selection: 'R' recipients first,
   'T' text first) and MRCP (one recipient). We send 'MRSQ ?', which asks the server for
   its preferred scheme: an MTP server answers 215 '<scheme> is preferred' (or 200 when it
   takes the command without a preference); SMTP servers do not know MRSQ (500/502);
 - no HELO: RFC 780 has no such command (it arrived with SMTP). A server that accepts HELO
   is SMTP, whatever else it says. A server that greets with 220 and rejects MRSQ and HELO
   alike is NOT named MTP on that alone (many text services greet with 220 and reject
   unknown commands): only a HELP listing MRSQ/MRCP names it then.

We never send MAIL (in MTP it would open a mail transaction: 354 and text input).
"""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, numeric_reply

MRSQ_QUERY = b"MRSQ ?\r\n"
HELO = b"HELO portatlas.invalid\r\n"
HELP = b"HELP\r\n"
SCHEMES = {"R": "recipients first", "T": "text first"}
GREETS_ONLY = ("greets with a 220 line, rejects unknown commands (MRSQ, HELO): "
               "not enough to name MTP")


@register
class MTPProbe(Probe):
    name = "mtp"
    transport = "tcp"
    ports = frozenset({57})
    services = frozenset({"mtp", "priv-term"})
    server_first = True
    rarity = 30
    read_budget = 16384

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.state = "greeting"
        self.extra: dict = {}
        self.evidence = b""
        self.confidence = 0.0

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        head = banner[:512].upper()
        return head[:4] in (b"220 ", b"220-") and b"SMTP" not in head and \
            (b"MTP" in head or b"MAIL TRANSFER PROTOCOL" in head)

    def feed(self, data: bytes) -> Step:
        reply = numeric_reply(data)
        if reply is None:
            return NoMatch(f"not an RFC 780 reply ({self.state})")
        if not reply.complete:
            return Wait() if len(data) < self.read_budget else NoMatch("reply too long")
        return getattr(self, "_on_" + self.state)(reply, data)

    def _on_greeting(self, reply, data: bytes) -> Step:
        if reply.code not in (220, 421):
            return NoMatch(f"greeting code {reply.code} is not MTP's")
        self.evidence = data[:reply.size]
        self.extra["greeting"] = clean(reply.text, 300)
        self.state = "mrsq"
        return Send(MRSQ_QUERY)

    def _on_mrsq(self, reply, data: bytes) -> Step:
        self.extra["mrsq_reply"] = f"{reply.code} {clean(reply.text, 120)}".strip()
        if reply.code == 215:
            scheme = (reply.text.split() or ["?"])[0].upper()
            self.extra["preferred_scheme"] = f"{scheme} ({SCHEMES.get(scheme, 'unknown')})"
            return self._ask_help(1.0)
        if reply.code == 200:
            return self._ask_help(0.95)
        if reply.code in (501, 504):
            # the command is known, only its argument is not: SMTP never knew MRSQ at all
            return self._ask_help(0.9)
        if reply.code in (500, 502):
            self.state = "helo"
            return Send(HELO)
        return NoMatch(f"MRSQ answered {reply.code}")

    def _on_helo(self, reply, data: bytes) -> Step:
        if reply.code == 250:
            return NoMatch("accepts HELO: SMTP, not RFC 780 MTP")
        if reply.code in (500, 502):
            self.extra["helo"] = "unknown (RFC 780 has no HELO)"
            self.state = "help_only"  # positive evidence is still missing: HELP must give it
            self.confidence = 0.0
            return Send(HELP)
        return NoMatch(f"HELO answered {reply.code}")

    def _on_help_only(self, reply, data: bytes) -> Step:
        commands = set()
        if reply.code in (211, 214):
            commands = set(re.findall(r"\b[A-Z]{4}\b", " ".join(reply.lines)))
        if {"MRSQ", "MRCP"} & commands and not {"HELO", "EHLO"} & commands:
            self.extra["commands"] = sorted(commands)[:40]
            self.confidence = 0.9
            return self._verdict()
        return NoMatch(GREETS_ONLY)

    def _ask_help(self, confidence: float) -> Step:
        self.confidence = confidence
        self.state = "help"
        return Send(HELP)

    def _on_help(self, reply, data: bytes) -> Step:
        if reply.code in (211, 214):
            words = re.findall(r"\b[A-Z]{4}\b", " ".join(reply.lines))
            commands = sorted(set(words))[:40]
            if commands:
                self.extra["commands"] = commands
            if {"MRSQ", "MRCP"} & set(commands):
                self.confidence = max(self.confidence, 0.95)
            if "HELO" in commands or "EHLO" in commands:
                self.confidence = min(self.confidence, 0.6)
        return self._verdict()

    def finish(self, data: bytes) -> Step:
        if self.state == "help":
            return self._verdict()
        if self.state == "help_only":
            return NoMatch(GREETS_ONLY)
        return NoMatch("no MTP answer")

    def _verdict(self) -> Verdict:
        return Verdict("mtp", None, None, dict(self.extra), self.confidence,
                       escape_evidence(self.evidence.rstrip(b"\r\n")))
