"""IRC (RFC 1459/2812): we register (NICK + USER); servers answer with NOTICE lines, numeric
replies (001 welcome ... 004 'servername version', 020 'please wait', 433 nick in use,
451/462...), PING (answered with PONG, some servers insist) or ERROR. Many servers also
greet before we say anything (NOTICE AUTH), which claims the banner."""

from __future__ import annotations

import re
import secrets

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, complete_lines

_LINE = re.compile(r"^(?::(\S+) )?([A-Za-z]+|\d{3})(?: (.*))?$")
_IRC_COMMANDS = {"NOTICE", "PING", "ERROR", "PRIVMSG", "CAP", "MODE", "JOIN"}
_PRODUCTS = [(re.compile(r"^(ngircd)-?(\S+)", re.I), "ngIRCd"),
             (re.compile(r"^(inspircd)-?(\S+)", re.I), "InspIRCd"),
             (re.compile(r"^(unreal(?:ircd)?)-?(\S+)", re.I), "UnrealIRCd"),
             (re.compile(r"^(ircd-hybrid|hybrid)-?(\S+)", re.I), "ircd-hybrid"),
             (re.compile(r"^(solanum)-?(\S+)", re.I), "Solanum"),
             (re.compile(r"^(charybdis)-?(\S+)", re.I), "Charybdis"),
             (re.compile(r"^(ergo)-?(\S+)", re.I), "Ergo"),
             (re.compile(r"^(oragono)-?(\S+)", re.I), "Oragono"),
             (re.compile(r"^(ircd-ratbox|ratbox)-?(\S+)", re.I), "ircd-ratbox"),
             (re.compile(r"^(bahamut)-?(\S+)", re.I), "Bahamut"),
             (re.compile(r"^(u2\.\S+)", re.I), "ircu")]


def parse_line(line: str) -> tuple[str | None, str, str] | None:
    found = _LINE.match(line.strip())
    if not found:
        return None
    prefix, command, params = found.groups()
    command = command.upper()
    if command.isdigit() and not prefix:
        return None  # numeric replies always carry the server prefix (and '220 ...' is SMTP)
    if not command.isdigit() and command not in _IRC_COMMANDS:
        return None
    if not command.isdigit() and not (params or "").strip():
        # every IRC command here carries parameters ("ERROR :Closing link: ..."): a bare word
        # is another protocol's line - memcached answers each line it does not know with a
        # bare "ERROR", which was named IRC (issue 11)
        return None
    if command == "ERROR" and not params.startswith(":"):
        return None  # IRC's ERROR message is one trailing parameter
    return prefix, command, params or ""


@register
class IRCProbe(Probe):
    name = "irc"
    transport = "tcp"
    ports = frozenset({194, 6665, 6666, 6667, 6668, 6669, 6697, 7000})
    services = frozenset({"irc", "ircu", "ircs-u", "ircs", "ircd"})
    rarity = 45
    read_budget = 32768

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.nick = "pa" + secrets.token_hex(3)
        self.ponged = False
        self.seen: list[str] = []
        self.evidence = b""

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        lines = complete_lines(banner, 3)
        return bool(lines) and parse_line(lines[0]) is not None

    def start(self) -> Step:
        return Send(f"NICK {self.nick}\r\nUSER portatlas 0 * :portatlas identify\r\n".encode())

    def feed(self, data: bytes) -> Step:
        lines = complete_lines(data, 100)
        if not lines:
            return Wait() if len(data) < 1024 else NoMatch("no IRC line")
        parsed = [parse_line(ln) for ln in lines]
        if parsed[0] is None:
            return NoMatch("not an IRC message")
        self.evidence = self.evidence or data[:data.find(b"\n")]
        for item in parsed:
            if item is None:
                continue
            prefix, command, params = item
            if command == "PING" and not self.ponged:
                self.ponged = True
                token = params.split(":", 1)[-1].strip() or "x"
                return Send(f"PONG :{token}\r\n".encode()[:512])
            if command == "004":
                return self._verdict(parsed, 1.0)
        numerics = [p for p in parsed if p and p[1].isdigit()]
        if any(p[1] == "001" for p in numerics) and len(data) > 2048:
            return self._verdict(parsed, 1.0)
        return Wait()

    def finish(self, data: bytes) -> Step:
        lines = complete_lines(data + b"\n" if data and not data.endswith(b"\n") else data, 100)
        parsed = [parse_line(ln) for ln in lines]
        if parsed and parsed[0] is not None:
            return self._verdict(parsed, 0.9)
        if self.evidence:
            return self._verdict([], 0.85)
        return NoMatch("no IRC answer")

    def _verdict(self, parsed: list, confidence: float) -> Verdict:
        extra: dict = {}
        product = version = None
        for item in parsed:
            if not item:
                continue
            prefix, command, params = item
            if prefix and "server" not in extra and "!" not in prefix:
                extra["server"] = clean(prefix, 100)
            if command == "004":
                words = params.split()
                if len(words) >= 3:
                    extra["server"], extra["daemon"] = clean(words[1], 100), clean(words[2], 60)
                    for pattern, name in _PRODUCTS:
                        found = pattern.match(words[2])
                        if found:
                            product = name
                            version = found.group(2) if found.lastindex and found.lastindex > 1 \
                                else None
                    product = product or clean(words[2], 60)
            if command == "ERROR":
                extra["error"] = clean(params.lstrip(":"), 200)
        return Verdict("irc", product, version, extra, confidence,
                       escape_evidence(self.evidence))
