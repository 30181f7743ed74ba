"""STUN (RFC 5389 / 8489), over UDP and TCP: one Binding request; a STUN server (or a TURN
server, which is one too) answers a Binding success or error response that carries the
magic cookie and our 12-byte transaction id back. That exchange is the proof; the SOFTWARE
attribute, when the server sends one, names the product ("Coturn-4.6.1 'Gorst'").

The same message goes over TCP (RFC 8489 section 6.2.2: no extra framing; the header's length
field says where the message ends).
"""

from __future__ import annotations

import re
import secrets
import struct

from ..base import NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence, register
from ._wire import text

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS, BINDING_ERROR = 0x0101, 0x0111
ATTR_MAPPED_ADDRESS, ATTR_XOR_MAPPED_ADDRESS = 0x0001, 0x0020
ATTR_ERROR_CODE, ATTR_SOFTWARE = 0x0009, 0x8022
HEADER = 20
MAX_MESSAGE = 4096
MAX_ATTRIBUTES = 64
_SOFTWARE = re.compile(r"^([A-Za-z][\w.+-]*?)[-/ ]v?(\d[\w.]*)")


def binding_request(transaction: bytes) -> bytes:
    """A Binding request without attributes (20 bytes)."""
    return struct.pack(">HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + transaction


def software_product(software: str) -> tuple[str | None, str | None]:
    """('Coturn', '4.6.1') from "Coturn-4.6.1 'Gorst'"; (software, None) when no version."""
    found = _SOFTWARE.match(software)
    if found:
        return found.group(1), found.group(2)
    return (software or None), None


def parse_response(data: bytes, transaction: bytes) -> dict | None:
    """Facts from a Binding response to `transaction` at the start of `data`; None when it
    is not one. Raises ValueError('short') when more bytes are needed."""
    if len(data) < HEADER:
        raise ValueError("short")
    kind, length, cookie = struct.unpack(">HHI", data[:8])
    if cookie != MAGIC_COOKIE or data[8:20] != transaction or kind not in (BINDING_SUCCESS,
                                                                          BINDING_ERROR):
        return None
    if length % 4 or length > MAX_MESSAGE:
        return None
    if len(data) < HEADER + length:
        raise ValueError("short")
    facts: dict = {"stun_response": "success" if kind == BINDING_SUCCESS else "error"}
    body, pos = data[HEADER:HEADER + length], 0
    for _ in range(MAX_ATTRIBUTES):
        if pos + 4 > len(body):
            break
        attr, size = struct.unpack(">HH", body[pos:pos + 4])
        value = body[pos + 4:pos + 4 + size]
        if len(value) < size:
            return None  # an attribute overruns the message: not STUN
        if attr == ATTR_SOFTWARE:
            facts["software"] = text(value, 128)
        elif attr == ATTR_ERROR_CODE and size >= 4:
            facts["error_code"] = (value[2] & 7) * 100 + value[3]
        elif attr in (ATTR_XOR_MAPPED_ADDRESS, ATTR_MAPPED_ADDRESS):
            facts["mapped_address"] = True
        pos += 4 + size + (-size % 4)
    return facts


class _StunProbe(Probe):
    services = frozenset({"stun", "turn", "stun-behavior", "stuns", "turns"})
    ports = frozenset({3478, 3479, 19302})
    read_budget = MAX_MESSAGE + HEADER

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.transaction = secrets.token_bytes(12)

    def start(self) -> Step:
        return Send(binding_request(self.transaction))

    def feed(self, data: bytes) -> Step:
        try:
            facts = parse_response(data, self.transaction)
        except ValueError:
            return Wait()
        if facts is None:
            return NoMatch("not a STUN Binding response to our request")
        product = version = None
        if facts.get("software"):
            product, version = software_product(facts["software"])
        facts["transport"] = self.transport
        return Verdict("stun", product, version, facts, 1.0, escape_evidence(data[:64]))

    def finish(self, data: bytes) -> Step:
        if not data:
            return NoMatch("no answer")
        step = self.feed(data)
        return NoMatch("reply cut short") if isinstance(step, Wait) else step


@register
class StunUdpProbe(_StunProbe):
    name = "stun"
    transport = "udp"
    rarity = 40


@register
class StunTcpProbe(_StunProbe):
    name = "stun"
    transport = "tcp"
    rarity = 60  # rare on TCP: tried early only where the port or the registry says STUN
