"""XMPP (RFC 6120): we open a client stream; the server answers with its own stream header
(namespace http://etherx.jabber.org/streams), then <stream:features> (STARTTLS, SASL
mechanisms) or a <stream:error>."""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean

STREAMS_NS = b"http://etherx.jabber.org/streams"
_ATTR = re.compile(rb"""\b(from|id|version|xml:lang)=['"]([^'"]{0,200})['"]""")
_MECH = re.compile(rb"<mechanism>([^<]{1,64})</mechanism>")


def stream_header(ctx) -> bytes:
    domain = ctx.server_name or ctx.host
    return ("<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" % domain).encode()


@register
class XMPPProbe(Probe):
    name = "xmpp"
    transport = "tcp"
    ports = frozenset({5222, 5223, 5269, 5280})
    services = frozenset({"xmpp-client", "xmpp-server", "jabber-client", "jabber-server",
                          "xmpp-bosh"})
    rarity = 40
    read_budget = 32768

    def start(self) -> Step:
        return Send(stream_header(self.ctx))

    def feed(self, data: bytes) -> Step:
        head = data.lstrip()[:64]
        if head and not head.startswith(b"<"):
            return NoMatch("not XML")
        if b"<stream:stream" not in data and b"<stream " not in data:
            if len(data) > 4096 or (b">" in data and not data.lstrip().startswith(b"<?xml")):
                return NoMatch("no XMPP stream header")
            return Wait()
        if STREAMS_NS not in data:
            return NoMatch("stream without the XMPP namespace")
        if b"</stream:features>" in data or b"<stream:error" in data or \
                b"<stream:features/>" in data:
            return self._verdict(data, 1.0)
        return Wait() if len(data) < self.read_budget else self._verdict(data, 0.9)

    def finish(self, data: bytes) -> Step:
        if STREAMS_NS in data and (b"<stream:stream" in data or b"<stream " in data):
            return self._verdict(data, 0.9)
        return NoMatch("no XMPP stream")

    def _verdict(self, data: bytes, confidence: float) -> Verdict:
        start = data.find(b"<stream:stream")
        header = data[start:data.find(b">", start) + 1] if start >= 0 else b""
        extra: dict = {}
        for key, value in _ATTR.findall(header):
            extra[key.decode().replace("xml:", "")] = clean(value.decode("utf-8", "replace"), 100)
        extra.pop("id", None)
        features: list[str] = []
        if b"<starttls" in data:
            features.append("starttls" + (" (required)" if b"<required" in data else ""))
        mechanisms = [clean(m.decode("utf-8", "replace"), 40) for m in _MECH.findall(data)]
        if mechanisms:
            extra["sasl_mechanisms"] = mechanisms[:20]
        if b"urn:xmpp:features:" in data or b"<register" in data:
            features.append("in-band registration" if b"<register" in data else "extensions")
        if features:
            extra["features"] = features
        error = re.search(rb"<stream:error>\s*<([\w-]+)", data)
        if error:
            extra["stream_error"] = error.group(1).decode()
        return Verdict("xmpp", None, None, extra, confidence, escape_evidence(data[:200]))
