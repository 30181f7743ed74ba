"""SSDP (UPnP discovery) over UDP: a unicast M-SEARCH for every service type. A UPnP device
answers with an HTTP-like '200 OK' carrying ST, USN and LOCATION headers and a SERVER header
('Linux/5.10 UPnP/1.0 MiniUPnPd/2.3.3') that names the product.
"""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, escape_evidence, register
from ._wire import text

_STATUS = re.compile(rb"^HTTP/1\.[01] 200 [^\r\n]{0,40}\r\n")
UPNP_HEADERS = ("st", "usn", "location")
MAX_HEADERS = 32


def build_msearch(host: str, port: int) -> bytes:
    target = f"[{host}]" if ":" in host else host
    return (f"M-SEARCH * HTTP/1.1\r\nHOST: {target}:{port}\r\nMAN: \"ssdp:discover\"\r\n"
            "MX: 1\r\nST: ssdp:all\r\nUSER-AGENT: portatlas UPnP/1.1 portatlas/0.1\r\n\r\n"
            ).encode()


def parse_headers(data: bytes) -> dict[str, str] | None:
    if not _STATUS.match(data):
        return None
    headers: dict[str, str] = {}
    for line in data.split(b"\r\n")[1:MAX_HEADERS + 1]:
        if not line:
            break
        name, sep, value = line.partition(b":")
        if sep:
            headers[text(name, 40).lower()] = text(value, 300)
    return headers


def product_from_server(value: str) -> tuple[str | None, str | None]:
    """The product token of 'OS/version UPnP/1.x product/version' (UDA 1.1, 1.2.3)."""
    tokens = [t for t in value.split() if "/" in t and not t.lower().startswith("upnp/")]
    if len(tokens) < 2:
        return None, None
    name, _, version = tokens[-1].partition("/")
    return name or None, version or None


@register
class SsdpProbe(Probe):
    name = "ssdp"
    transport = "udp"
    ports = frozenset({1900})
    services = frozenset({"ssdp"})
    rarity = 45
    read_budget = 4096

    def start(self) -> Step:
        return Send(build_msearch(self.ctx.host, self.ctx.port))

    def feed(self, data: bytes) -> Step:
        headers = parse_headers(data)
        if headers is None or not any(h in headers for h in UPNP_HEADERS):
            return NoMatch("not an SSDP answer")
        extra = {key: headers[key] for key in ("server", "st", "usn", "location") if key in headers}
        product, version = product_from_server(headers.get("server", ""))
        return Verdict("ssdp", product, version, extra, 1.0, escape_evidence(data, 160))

    def finish(self, data: bytes) -> Step:
        return self.feed(data) if data else NoMatch("no answer")
