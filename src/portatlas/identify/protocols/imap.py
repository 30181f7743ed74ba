"""IMAP (RFC 9051/3501): '* OK' (or PREAUTH/BYE) greeting, often with its capabilities;
otherwise CAPABILITY asks for them; STARTTLS upgrades to TLS when offered."""

from __future__ import annotations

import re

from ..base import NoMatch, Send, StartTLS, Step, Wait, register
from ._text import GreetingProbe, clean, complete_lines, is_prefix

_GREETING = re.compile(r"^\* (OK|PREAUTH|BYE)\b ?(.*)$", re.I)
_CAPS_IN_TEXT = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.I)
_PRODUCTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bDovecot\b", re.I), "Dovecot"),
    (re.compile(r"\bCyrus IMAP(?:4)?(?: Murder)? v?(\d[\w.-]*)?", re.I), "Cyrus imapd"),
    (re.compile(r"\bCourier-IMAP\b", re.I), "Courier Imapd"),
    (re.compile(r"Microsoft Exchange Server (\d+)", re.I), "Microsoft Exchange imapd"),
    (re.compile(r"\bZimbra\b", re.I), "Zimbra imapd"),
    (re.compile(r"\bUW IMAP|IMAP4rev1 (\d{4}[a-z]?\.\d+)", re.I), "UW imapd"),
    (re.compile(r"\bUniversity of Washington\b", re.I), "UW imapd"),
    (re.compile(r"\bGimap\b", re.I), "Gmail imapd"),
    (re.compile(r"\bdbmail\b", re.I), "DBMail imapd"),
]
TAGS = (b"pa1", b"pa2")


@register
class IMAPProbe(GreetingProbe):
    name = "imap"
    transport = "tcp"
    ports = frozenset({143, 993, 220})
    services = frozenset({"imap", "imaps", "imap3", "imap4-ssl"})
    products = _PRODUCTS
    rarity = 12
    read_budget = 32768


    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return bool(re.match(rb"\* (OK|PREAUTH|BYE)\b", banner[:16], re.I))

    def feed(self, data: bytes) -> Step:
        if self.state == "greeting":
            return self._greeting(data)
        lines = complete_lines(data)
        tag = TAGS[0] if self.state == "capability" else TAGS[1]
        done = [ln for ln in lines if ln.encode().startswith(tag + b" ")]
        if not done:
            if lines and not all(ln.startswith("*") or ln.startswith("+") for ln in lines):
                return NoMatch("not an IMAP answer")
            return Wait() if len(data) < self.read_budget else self._verdict(0.9)
        ok = done[0].split()[1:2] == ["OK"]
        if self.state == "capability":
            for line in lines:
                if line.upper().startswith("* CAPABILITY "):
                    self.extra["capabilities"] = line.split()[2:60]
            return self._after_capabilities()
        if ok:
            return StartTLS(self.ctx.server_name)
        self.extra["starttls"] = "offered but refused"
        return self._verdict(1.0)

    def _greeting(self, data: bytes) -> Step:
        if not is_prefix(data, b"* "):
            return NoMatch("IMAP greets with '* OK'")
        lines = complete_lines(data, 2)
        if not lines:
            return Wait() if len(data) < 4096 else NoMatch("greeting too long")
        found = _GREETING.match(lines[0])
        if not found:
            return NoMatch("not an IMAP greeting")
        self.greeting = clean(lines[0], 400)
        self.evidence = data[:data.find(b"\n")]
        self.extra["greeting_status"] = found.group(1).upper()
        caps = _CAPS_IN_TEXT.search(lines[0])
        text = _CAPS_IN_TEXT.sub("", found.group(2)).strip()
        self.extra["greeting"] = clean(text, 200)
        if found.group(1).upper() == "BYE":
            return self._verdict(0.9)
        if caps:
            self.extra["capabilities"] = caps.group(1).split()[:60]
            return self._after_capabilities()
        self.state = "capability"
        return Send(TAGS[0] + b" CAPABILITY\r\n")

    def _after_capabilities(self) -> Step:
        caps = [c.upper() for c in self.extra.get("capabilities", [])]
        if "STARTTLS" in caps and not self.ctx.in_tls:
            self.state = "starttls"
            return Send(TAGS[1] + b" STARTTLS\r\n")
        return self._verdict(1.0)

    def tls_ready(self, info) -> Step:
        self.extra["starttls"] = True
        return self._verdict(1.0)

    def tls_failed(self, reason: str) -> Step:
        self.extra["starttls"] = f"handshake failed: {reason}"
        return self._verdict(1.0)

    def finish(self, data: bytes) -> Step:
        if self.greeting:
            return self._verdict(0.85)
        return NoMatch("no IMAP greeting")

