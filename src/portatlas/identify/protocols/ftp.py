"""FTP (RFC 959): a 220 greeting, then FEAT (RFC 2389) lists the features; AUTH TLS
(RFC 4217) upgrades the control connection when offered.

A 220 greeting is shared with SMTP and MTP; FTP answers FEAT with 211, or at least SYST with
215 ('UNIX Type: L8') or 530 (log in first). SMTP servers answer both with 500/502.
"""

from __future__ import annotations

import re

from ..base import NoMatch, Send, StartTLS, Step, Wait, register
from ._text import GreetingProbe, clean, numeric_reply

_FTPISH = re.compile(rb"FTP|FileZilla|Serv-U|ProFTPD|vsFTPd|Pure-FTPd", re.I)
_PRODUCTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bvsFTPd (\d[\w.]*)", re.I), "vsftpd"),
    (re.compile(r"\bProFTPD (\d[\w.]*)", re.I), "ProFTPD"),
    (re.compile(r"\bProFTPD\b", re.I), "ProFTPD"),
    (re.compile(r"\bPure-FTPd\b", re.I), "Pure-FTPd"),
    (re.compile(r"\bFileZilla Server(?: version)? ?(\d[\w.]*)?", re.I), "FileZilla ftpd"),
    (re.compile(r"Microsoft FTP Service", re.I), "Microsoft ftpd"),
    (re.compile(r"\bServ-U FTP Server v?(\d[\w.]*)", re.I), "Serv-U ftpd"),
    (re.compile(r"\bbftpd (\d[\w.]*)", re.I), "bftpd"),
    (re.compile(r"\bwu-(\d[\w.()-]*)", re.I), "WU-FTPD"),
    (re.compile(r"\bTwisted (\d[\w.]*) FTP Server", re.I), "Twisted ftpd"),
    (re.compile(r"\bpyftpdlib (\d[\w.]*)", re.I), "pyftpdlib"),
    (re.compile(r"\bGNU inetutils (\d[\w.]*)|GNU FTP server", re.I), "GNU inetutils ftpd"),
]


@register
class FTPProbe(GreetingProbe):
    name = "ftp"
    transport = "tcp"
    ports = frozenset({21, 2121, 990})
    services = frozenset({"ftp", "ftps", "tftp-mcast"})
    products = _PRODUCTS
    rarity = 10
    read_budget = 32768


    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return banner[:4] in (b"220 ", b"220-", b"120 ", b"120-") and \
            bool(_FTPISH.search(banner[:1024]))

    def feed(self, data: bytes) -> Step:
        reply = numeric_reply(data)
        if reply is None:
            return NoMatch(f"not an FTP reply ({self.state})")
        if not reply.complete:
            return Wait() if len(data) < self.read_budget else NoMatch("reply too long")
        if self.state == "greeting" and reply.code == 120 and reply.size < len(data):
            rest = numeric_reply(data[reply.size:])  # 120 'ready in n minutes', then 220
            if rest is None:
                return NoMatch("not an FTP reply")
            if not rest.complete:
                return Wait()
            reply = rest
        return getattr(self, "_on_" + self.state)(reply, data)

    def _on_greeting(self, reply, data: bytes) -> Step:
        if reply.code == 120:
            return Wait()
        if reply.code not in (220, 421):
            return NoMatch(f"greeting code {reply.code} is not FTP's")
        self.greeting = clean(reply.text, 300)
        self.evidence = data[:reply.size]
        self.extra["greeting"] = self.greeting
        if reply.code == 421:
            # 'too many users' and friends: only the words can tell FTP from SMTP here
            return self._verdict(0.85) if _FTPISH.search(data) else NoMatch("421 greeting")
        self.state = "feat"
        return Send(b"FEAT\r\n")

    def _on_feat(self, reply, data: bytes) -> Step:
        if reply.code == 211:
            feats = [clean(line, 80) for line in reply.lines[1:-1] if line.strip()][:40]
            self.extra["features"] = feats
            if any(f.upper().startswith("AUTH") and "TLS" in f.upper() for f in feats) \
                    and not self.ctx.in_tls:
                self.state = "auth"
                return Send(b"AUTH TLS\r\n")
            return self._verdict(1.0)
        self.state = "syst"
        return Send(b"SYST\r\n")

    def _on_syst(self, reply, data: bytes) -> Step:
        if reply.code == 215:
            self.extra["system"] = clean(reply.text, 120)
            return self._verdict(0.95)
        if reply.code == 530 and _FTPISH.search(self.greeting.encode()):
            return self._verdict(0.9)
        if reply.code == 530:
            return self._verdict(0.75)
        return NoMatch(f"SYST answered {reply.code}: not FTP")

    def _on_auth(self, reply, data: bytes) -> Step:
        if reply.code == 234:
            return StartTLS(self.ctx.server_name)
        self.extra["auth_tls"] = f"offered but refused ({reply.code})"
        return self._verdict(1.0)

    def tls_ready(self, info) -> Step:
        self.extra["auth_tls"] = True
        return self._verdict(1.0)

    def tls_failed(self, reason: str) -> Step:
        self.extra["auth_tls"] = f"handshake failed: {reason}"
        return self._verdict(1.0)

    def finish(self, data: bytes) -> Step:
        if self.state in ("feat", "syst", "auth") and _FTPISH.search(self.greeting.encode()):
            return self._verdict(0.8)
        return NoMatch("no FTP answer")

