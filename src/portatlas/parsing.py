"""Parsing what the user typed: a port, port/transport, a range, or a service name.

(Not named query.py: a submodule would shadow the API function portatlas.query.)
"""

from __future__ import annotations

import re

from portatlas.errors import UsageError
from portatlas.model import TRANSPORTS

MAX_RANGE_SPAN = 16384  # wider ranges are a scan spec, not a question; `search` covers the rest
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._\-]{0,62}$")


class Query:
    """kind is 'port', 'range' or 'service'."""

    __slots__ = ("kind", "lo", "hi", "transport", "name", "text")

    def __init__(self, kind: str, text: str, lo: int | None = None, hi: int | None = None,
                 transport: str | None = None, name: str | None = None) -> None:
        self.kind = kind
        self.text = text
        self.lo = lo
        self.hi = hi
        self.transport = transport
        self.name = name


def parse_port(text: str) -> int:
    """A port number 0-65535, or UsageError with a one-line reason."""
    text = text.strip()
    if not text:
        raise UsageError("empty port")
    if text.startswith("-") and text[1:].isdigit():
        raise UsageError(f"port {text} is negative; ports are 0-65535")
    if not text.isdigit() or not text.isascii():
        raise UsageError(f"{text!r} is not a port number (0-65535)")
    port = int(text)
    if port > 65535:
        raise UsageError(f"port {port} is out of range; ports are 0-65535")
    return port


def parse_transport(text: str) -> str:
    lower = text.strip().lower()
    if lower not in TRANSPORTS:
        raise UsageError(f"unknown transport {text!r}; use one of {', '.join(TRANSPORTS)}")
    return lower


def parse_query(text: str, transport: str | None = None) -> Query:
    """'57', '57/tcp', '6000-6010', '6000-6010/udp', 'http', 'whois++'."""
    raw = text
    text = text.strip()
    if not text:
        raise UsageError("empty query: give a port (57), port/transport (57/tcp), range or service name")
    body, slash, proto = text.partition("/")
    if slash:
        transport_from_text = parse_transport(proto)
        if transport and transport != transport_from_text:
            raise UsageError(f"conflicting transports {transport_from_text} and {transport}")
        transport = transport_from_text
    elif transport:
        transport = parse_transport(transport)
    if body[:1].isdigit() or body.startswith("-"):
        lo_text, dash, hi_text = body.partition("-")
        if dash and lo_text:
            lo, hi = parse_port(lo_text), parse_port(hi_text)
            if lo > hi:
                raise UsageError(f"range {body} runs backwards; write {hi}-{lo}")
            if hi - lo + 1 > MAX_RANGE_SPAN:
                raise UsageError(f"range {body} spans {hi - lo + 1} ports; the most is "
                                 f"{MAX_RANGE_SPAN} (narrow it, or use 'portatlas search')")
            return Query("range", raw, lo, hi, transport)
        port = parse_port(body)
        return Query("port", raw, port, port, transport)
    if not _SERVICE.match(body):
        raise UsageError(f"{body!r} is neither a port, a range nor a service name")
    if slash and not body:
        raise UsageError("missing port before '/'")
    return Query("service", raw, transport=transport, name=body)


def is_ip_literal(text: str) -> bool:
    """Whether text is an IPv4 or IPv6 address (brackets allowed), not a host name: a TLS server
    name (SNI) is only sent for names."""
    import ipaddress  # not on the path of `portatlas PORT`, which never asks

    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False
