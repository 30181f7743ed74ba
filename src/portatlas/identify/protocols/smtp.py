"""SMTP (RFC 5321): a 220 greeting, then EHLO lists the extensions; STARTTLS when offered.

The greeting alone does not prove SMTP: FTP and MTP (RFC 780, SMTP's ancestor) greet with
220 too. An SMTP server must accept HELO (EHLO since RFC 1869), so: EHLO answered 250 ->
ESMTP; EHLO refused but HELO answered 250 -> plain SMTP; both refused -> not SMTP.
"""

from __future__ import annotations

import re

from ..base import NoMatch, Send, StartTLS, Step, Wait, register
from ._text import GreetingProbe, clean, numeric_reply

EHLO = b"EHLO portatlas.invalid\r\n"
HELO = b"HELO portatlas.invalid\r\n"
GREETINGS = (220, 421, 554)
_MAILISH = re.compile(rb"SMTP|MAIL|Exim|Postfix|Sendmail|qmail|Exchange|MTA", re.I)

# greeting patterns -> product (version group when there is one)
_PRODUCTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bExim (\d[\w.]*)", re.I), "Exim"),
    (re.compile(r"\bPostfix\b", re.I), "Postfix"),
    (re.compile(r"\bSendmail (\d[\w.]*)", re.I), "Sendmail"),
    (re.compile(r"\bSendmail\b", re.I), "Sendmail"),
    (re.compile(r"Microsoft ESMTP MAIL Service(?:, Version: (\S+))?", re.I),
     "Microsoft Exchange smtpd"),
    (re.compile(r"\bOpenSMTPD\b", re.I), "OpenSMTPD"),
    (re.compile(r"\bHaraka/?(\d[\w.]*)?", re.I), "Haraka"),
    (re.compile(r"\bqmail\b", re.I), "qmail"),
    (re.compile(r"\bCourier\b", re.I), "Courier MTA"),
    (re.compile(r"\bhMailServer\b", re.I), "hMailServer"),
    (re.compile(r"\bMDaemon (\d[\w.]*)", re.I), "MDaemon"),
    (re.compile(r"\bZimbra\b", re.I), "Zimbra"),
    (re.compile(r"\bDMA\b"), "DragonFly Mail Agent"),
    (re.compile(r"\bSmtpd\b \(aiosmtpd\)|aiosmtpd ?(\d[\w.]*)?", re.I), "aiosmtpd"),
    (re.compile(r"\bMailEnable\b", re.I), "MailEnable"),
]


def first_word_host(text: str) -> str | None:
    word = text.split()[0] if text.split() else ""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z0-9-]+|\[[0-9a-fA-F.:]+\]", word):
        return word
    return None


@register
class SMTPProbe(GreetingProbe):
    name = "smtp"
    transport = "tcp"
    ports = frozenset({25, 465, 587, 2525, 24, 26})
    services = frozenset({"smtp", "submission", "submissions", "urd", "smtps", "lmtp"})
    products = _PRODUCTS
    rarity = 10
    read_budget = 32768


    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return banner[:4] in (b"220 ", b"220-") and bool(_MAILISH.search(banner[:512]))

    def feed(self, data: bytes) -> Step:
        reply = numeric_reply(data)
        if reply is None:
            return NoMatch(f"not an SMTP reply ({self.state})")
        if not reply.complete:
            return Wait() if len(data) < self.read_budget else NoMatch("reply too long")
        return getattr(self, "_on_" + self.state)(reply, data)

    def _on_greeting(self, reply, data: bytes) -> Step:
        if reply.code not in GREETINGS:
            return NoMatch(f"greeting code {reply.code} is not SMTP's")
        self.greeting = clean(reply.text, 300)
        self.evidence = data[:reply.size]
        self.extra["greeting"] = self.greeting
        host = first_word_host(self.greeting)
        if host:
            self.extra["hostname"] = host
        if reply.code != 220:
            self.extra["refusing"] = reply.code
        self.state = "ehlo"
        return Send(EHLO)

    def _on_ehlo(self, reply, data: bytes) -> Step:
        if reply.code == 250:
            self.extra["esmtp"] = True
            first = reply.lines[0] if reply.lines else ""
            host = first_word_host(first)
            if host:
                self.extra["hostname"] = host
            self.extra["extensions"] = [clean(line, 80) for line in reply.lines[1:40]]
            if self._has_starttls() and not self.ctx.in_tls:
                self.state = "starttls"
                return Send(b"STARTTLS\r\n")
            return self._verdict(1.0)
        if reply.code in (500, 501, 502, 503, 504, 530):
            self.state = "helo"
            return Send(HELO)
        if reply.code in (421, 554) and self.extra.get("refusing"):
            return self._verdict(0.8)  # refused us politely, the SMTP way
        return NoMatch(f"EHLO answered {reply.code}")

    def _on_helo(self, reply, data: bytes) -> Step:
        if reply.code == 250:
            self.extra["esmtp"] = False
            return self._verdict(0.95)
        return NoMatch("refuses both EHLO and HELO: not SMTP (an RFC 780 MTP server?)")

    def _on_starttls(self, reply, data: bytes) -> Step:
        if reply.code == 220:
            return StartTLS(self.ctx.server_name)
        self.extra["starttls"] = f"offered but refused ({reply.code})"
        return self._verdict(1.0)

    def _has_starttls(self) -> bool:
        return any(e.upper().split()[:1] == ["STARTTLS"] for e in self.extra.get("extensions", []))

    def tls_ready(self, info) -> Step:
        self.extra["starttls"] = True
        return self._verdict(1.0)

    def tls_failed(self, reason: str) -> Step:
        self.extra["starttls"] = f"handshake failed: {reason}"
        return self._verdict(1.0)

    def finish(self, data: bytes) -> Step:
        if self.state in ("ehlo", "starttls") and self.greeting:
            return self._verdict(0.75)  # greeted like SMTP, then went quiet
        return NoMatch("no SMTP answer")

