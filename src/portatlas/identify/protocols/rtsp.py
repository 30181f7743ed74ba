"""RTSP (RFC 2326/7826): OPTIONS answered by 'RTSP/1.0 <code>' with our CSeq echoed, the
methods in Public and the product in Server."""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, is_prefix, split_product

_STATUS = re.compile(rb"^RTSP/(\d\.\d) (\d{3})")


def headers(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in data.split(b"\n")[1:60]:
        name, sep, value = raw.partition(b":")
        if not sep:
            if not raw.strip():
                break
            continue
        out.setdefault(name.strip().decode("latin-1").lower(), clean(value.decode("latin-1"), 300))
    return out


@register
class RTSPProbe(Probe):
    name = "rtsp"
    transport = "tcp"
    ports = frozenset({554, 8554, 7070, 5554})
    services = frozenset({"rtsp", "rtsp-alt", "rtsps"})
    rarity = 40
    read_budget = 16384

    def start(self) -> Step:
        host = self.ctx.server_name or self.ctx.host
        if ":" in host:
            host = f"[{host}]"
        return Send(f"OPTIONS rtsp://{host}:{self.ctx.port}/ RTSP/1.0\r\nCSeq: 1\r\n"
                    "User-Agent: portatlas\r\n\r\n".encode())

    def feed(self, data: bytes) -> Step:
        if not is_prefix(data, b"RTSP/"):
            return NoMatch("not an RTSP response")
        if b"\r\n\r\n" not in data and b"\n\n" not in data:
            return Wait() if len(data) < 8192 else self.finish(data)
        return self.finish(data)

    def finish(self, data: bytes) -> Step:
        status = _STATUS.match(data)
        if not status:
            return NoMatch("no RTSP status line")
        head = headers(data)
        extra: dict = {"status": int(status.group(2)), "rtsp_version": status.group(1).decode()}
        if head.get("public"):
            extra["methods"] = [m.strip() for m in head["public"].split(",")][:20]
        product = version = None
        server = head.get("server")
        if server:
            extra["server"] = server
            product, version = split_product(server)
        confidence = 1.0 if head.get("cseq") == "1" else 0.9
        return Verdict("rtsp", product, version, extra, confidence,
                       escape_evidence(data[:data.find(b"\r\n\r\n") if b"\r\n\r\n" in data else 200]))
