"""RDP: an X.224 Connection Request (in a TPKT) carrying an RDP Negotiation Request for TLS
and CredSSP. An RDP server answers with an X.224 Connection Confirm, usually with a
Negotiation Response (the security protocol it picked) or Failure (why it will not).

The product is a guess from what implementations fill in freely: Windows 8+ sets the
RESTRICTED_ADMIN/REDIRECTED_AUTHENTICATION response flags, which xrdp does not implement; old
xrdp releases answered with source reference 0, VirtualBox's VRDE with 0x3412. Modern xrdp
(0.9.21, captured) looks like older Windows (reference 0x1234, flags EXTENDED_CLIENT_DATA only),
so no product is named then.
"""

from __future__ import annotations

import struct

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register

TPKT_VERSION = 3
CONNECTION_CONFIRM = 0xD0
NEG_RESPONSE, NEG_FAILURE = 0x02, 0x03
PROTOCOLS = {0: "rdp", 1: "tls", 2: "credssp", 4: "rdstls", 8: "credssp-early-auth"}
FAILURES = {1: "SSL_REQUIRED_BY_SERVER", 2: "SSL_NOT_ALLOWED_BY_SERVER",
            3: "SSL_CERT_NOT_ON_SERVER", 4: "INCONSISTENT_FLAGS", 5: "HYBRID_REQUIRED_BY_SERVER",
            6: "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER"}
RESPONSE_FLAGS = {0x01: "EXTENDED_CLIENT_DATA", 0x02: "DYNVC_GFX", 0x08: "RESTRICTED_ADMIN",
                  0x10: "REDIRECTED_AUTHENTICATION"}
SOURCE_REFERENCES = {0x0000: "xrdp", 0x3412: "VirtualBox VRDE"}
WINDOWS_ONLY_FLAGS = {"RESTRICTED_ADMIN", "REDIRECTED_AUTHENTICATION"}


def product_hint(facts: dict) -> str | None:
    reference = int(facts["source_reference"], 16)
    if reference in SOURCE_REFERENCES:
        return SOURCE_REFERENCES[reference]
    if WINDOWS_ONLY_FLAGS & set(facts.get("flags", ())):
        return "Microsoft Terminal Services"
    return None


def build_connection_request(protocols: int = 0x03) -> bytes:
    negotiation = struct.pack("<BBHI", 0x01, 0x00, 8, protocols)
    x224 = bytes([6 + len(negotiation), 0xE0, 0, 0, 0, 0, 0]) + negotiation
    return struct.pack(">BBH", TPKT_VERSION, 0, 4 + len(x224)) + x224


def parse_confirm(data: bytes) -> dict | None:
    """Facts from a complete TPKT holding an X.224 Connection Confirm, None if it is not."""
    version, _reserved, size = struct.unpack(">BBH", data[:4])
    if version != TPKT_VERSION or not 11 <= size <= 64 or len(data) < size:
        return None
    length_indicator, code = data[4], data[5]
    if code & 0xF0 != CONNECTION_CONFIRM or length_indicator + 5 != size:
        return None
    source_reference = struct.unpack(">H", data[8:10])[0]
    facts: dict = {"source_reference": f"0x{source_reference:04x}"}
    negotiation = data[11:size]
    if len(negotiation) >= 8:
        kind, flags, neg_len, value = struct.unpack("<BBHI", negotiation[:8])
        if neg_len != 8:
            return None
        if kind == NEG_RESPONSE:
            facts["security"] = PROTOCOLS.get(value, str(value))
            facts["flags"] = [name for bit, name in RESPONSE_FLAGS.items() if flags & bit]
        elif kind == NEG_FAILURE:
            facts["failure"] = FAILURES.get(value, str(value))
        else:
            return None
    else:
        facts["security"] = "rdp (no negotiation: pre-RDP 5.2 server)"
    return facts


@register
class RdpProbe(Probe):
    name = "rdp"
    transport = "tcp"
    ports = frozenset({3389, 3388})
    services = frozenset({"ms-wbt-server", "rdp"})
    rarity = 45
    read_budget = 1024

    def start(self) -> Step:
        return Send(build_connection_request())

    def feed(self, data: bytes) -> Step:
        if data[:1] != b"\x03":
            return NoMatch("not a TPKT")
        if len(data) < 4:
            return Wait()
        size = struct.unpack(">H", data[2:4])[0]
        if len(data) < size and size <= 64:
            return Wait()
        facts = parse_confirm(data)
        if facts is None:
            return NoMatch("not an X.224 Connection Confirm")
        return Verdict("rdp", product_hint(facts), None, facts, 1.0,
                       escape_evidence(data[:size], 64))

    def finish(self, data: bytes) -> Step:
        step = self.feed(data) if data else NoMatch("no answer")
        return NoMatch("reply cut short") if isinstance(step, Wait) else step
