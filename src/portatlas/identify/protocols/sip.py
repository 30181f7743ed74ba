"""SIP (RFC 3261) over TCP and UDP: an OPTIONS request, answered by 'SIP/2.0 <code>' with our
Call-ID echoed; Server/User-Agent name the product (Asterisk, FreeSWITCH, Kamailio...),
Allow lists the methods."""

from __future__ import annotations

import re
import secrets

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, is_prefix, split_product

_STATUS = re.compile(rb"^SIP/2\.0 (\d{3})(?: ([^\r\n]*))?")
_PRODUCTS = [(re.compile(r"\bAsterisk PBX (\S+)", re.I), "Asterisk"),
             (re.compile(r"\bAsterisk\b", re.I), "Asterisk"),
             (re.compile(r"\bFreeSWITCH(?:-mod_sofia)?/?(\S+)?", re.I), "FreeSWITCH"),
             (re.compile(r"\bkamailio \((\S+)", re.I), "Kamailio"),
             (re.compile(r"\bOpenSIPS \((\S+)", re.I), "OpenSIPS"),
             (re.compile(r"\bYate/?(\S+)?", re.I), "Yate"),
             (re.compile(r"\bsipXecs\b", re.I), "sipXecs")]


def product_of(text: str) -> tuple[str | None, str | None]:
    for pattern, name in _PRODUCTS:
        found = pattern.search(text)
        if found:
            return name, (found.group(1) if found.groups() else None)
    return split_product(text)


def parse_headers(data: bytes) -> dict[str, str]:
    compact = {"i": "call-id", "f": "from", "t": "to", "v": "via", "l": "content-length"}
    out: dict[str, str] = {}
    for raw in data.split(b"\n")[1:80]:
        if not raw.strip():
            break
        name, sep, value = raw.partition(b":")
        if sep:
            key = name.strip().decode("latin-1").lower()
            out.setdefault(compact.get(key, key), clean(value.decode("latin-1"), 300))
    return out


class _SIPProbe(Probe):
    name = "sip"
    ports = frozenset({5060, 5061, 5080})
    services = frozenset({"sip", "sips", "sip-tls"})
    rarity = 40
    read_budget = 16384

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.call_id = secrets.token_hex(8)
        self.tag = secrets.token_hex(4)
        self.branch = "z9hG4bK" + secrets.token_hex(6)

    def start(self) -> Step:
        host = self.ctx.server_name or self.ctx.host
        if ":" in host:
            host = f"[{host}]"
        kind = "TLS" if self.ctx.in_tls else self.transport.upper()
        return Send((
            f"OPTIONS sip:portatlas@{host} SIP/2.0\r\n"
            f"Via: SIP/2.0/{kind} portatlas.invalid;branch={self.branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:portatlas@portatlas.invalid>;tag={self.tag}\r\n"
            f"To: <sip:portatlas@{host}>\r\n"
            f"Call-ID: {self.call_id}@portatlas.invalid\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Contact: <sip:portatlas@portatlas.invalid>\r\n"
            "Accept: application/sdp\r\nUser-Agent: portatlas\r\nContent-Length: 0\r\n\r\n"
        ).encode())

    def feed(self, data: bytes) -> Step:
        if not is_prefix(data, b"SIP/2.0 "):
            return NoMatch("not a SIP response")
        if b"\r\n\r\n" not in data and b"\n\n" not in data:
            return Wait() if len(data) < 8192 else self.finish(data)
        status = _STATUS.match(data)
        if status and status.group(1).startswith(b"1"):
            return Wait()  # provisional (100 Trying): the final answer follows
        return self.finish(data)

    def finish(self, data: bytes) -> Step:
        status = _STATUS.match(data)
        if not status:
            return NoMatch("no SIP status line")
        head = parse_headers(data)
        extra: dict = {"status": int(status.group(1)),
                       "reason": clean((status.group(2) or b"").decode("latin-1"), 80)}
        if head.get("allow"):
            extra["methods"] = [m.strip() for m in head["allow"].split(",")][:30]
        product = version = None
        agent = head.get("server") or head.get("user-agent")
        if agent:
            extra["server"] = agent
            product, version = product_of(agent)
        confidence = 1.0 if self.call_id in head.get("call-id", "") else 0.85
        end = data.find(b"\r\n\r\n")
        return Verdict("sip", product, version, extra, confidence,
                       escape_evidence(data[:end if end > 0 else 200]))


@register
class SIPTCPProbe(_SIPProbe):
    transport = "tcp"


@register
class SIPUDPProbe(_SIPProbe):
    transport = "udp"
