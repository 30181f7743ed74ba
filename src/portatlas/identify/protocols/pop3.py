"""POP3 (RFC 1939): '+OK' greeting; CAPA (RFC 2449) lists capabilities; STLS (RFC 2595)
upgrades to TLS when offered."""

from __future__ import annotations

import re

from ..base import NoMatch, Send, StartTLS, Step, Wait, register
from ._text import GreetingProbe, clean, complete_lines, is_prefix

_PRODUCTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bDovecot\b", re.I), "Dovecot"),
    (re.compile(r"\bCyrus POP3(?: v| server v)?(\d[\w.-]*)?", re.I), "Cyrus pop3d"),
    (re.compile(r"\bCourier\b|Hello there\.", re.I), "Courier pop3d"),
    (re.compile(r"\bQpopper\b.*?version (\d[\w.]*)", re.I), "Qpopper"),
    (re.compile(r"\bZimbra\b", re.I), "Zimbra pop3d"),
    (re.compile(r"Microsoft Exchange", re.I), "Microsoft Exchange pop3d"),
    (re.compile(r"\bpopa3d\b", re.I), "popa3d"),
    (re.compile(r"\bGNU Mailutils\b", re.I), "GNU Mailutils pop3d"),
]


@register
class POP3Probe(GreetingProbe):
    name = "pop3"
    transport = "tcp"
    ports = frozenset({110, 995, 1109})
    services = frozenset({"pop3", "pop3s", "pop2", "kpop"})
    products = _PRODUCTS
    rarity = 12
    read_budget = 32768


    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return banner.startswith(b"+OK")

    def feed(self, data: bytes) -> Step:
        if self.state == "greeting":
            if not is_prefix(data, b"+OK"):
                return NoMatch("POP3 greets with +OK")
            lines = complete_lines(data, 2)
            if not lines:
                return Wait() if len(data) < 1024 else NoMatch("greeting too long")
            self.greeting = clean(lines[0][3:], 300)
            self.evidence = data[:data.find(b"\n")]
            self.extra["greeting"] = self.greeting
            self.state = "capa"
            return Send(b"CAPA\r\n")
        if self.state == "capa":
            if data.startswith(b"-ERR"):
                return self._verdict(0.9) if b"\n" in data else Wait()
            if not data.startswith(b"+OK"):
                return NoMatch("CAPA answer is not POP3") if len(data) >= 3 else Wait()
            lines = complete_lines(data)
            if "." not in lines[1:]:
                return Wait() if len(data) < self.read_budget else self._verdict(0.9)
            caps = [clean(c, 80) for c in lines[1:lines.index(".", 1)]][:40]
            self.extra["capabilities"] = caps
            if any(c.upper() == "STLS" for c in caps) and not self.ctx.in_tls:
                self.state = "stls"
                return Send(b"STLS\r\n")
            return self._verdict(1.0)
        if self.state == "stls":
            if b"\n" not in data:
                return Wait()
            if data.startswith(b"+OK"):
                return StartTLS(self.ctx.server_name)
            self.extra["stls"] = "offered but refused"
            return self._verdict(1.0)
        return NoMatch("unexpected state")

    def tls_ready(self, info) -> Step:
        self.extra["stls"] = True
        return self._verdict(1.0)

    def tls_failed(self, reason: str) -> Step:
        self.extra["stls"] = f"handshake failed: {reason}"
        return self._verdict(1.0)

    def finish(self, data: bytes) -> Step:
        if self.greeting:
            return self._verdict(0.85)
        return NoMatch("no POP3 greeting")

