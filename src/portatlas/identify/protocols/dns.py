"""DNS over UDP and TCP: ask for version.bind (CHAOS TXT), the name servers answer with their
product and version when they are willing to.

Any DNS server answers that question somehow (the text, REFUSED, NOTIMP...), so the reply's
header (our query id, the response bit) and the echo of our question are what identify DNS;
the TXT string, when given, names the product (e.g. 'dnsmasq-2.90', '9.18.24-1-Debian').
"""

from __future__ import annotations

import re
import secrets
import struct

from ..base import (NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence,
                    register)
from ._wire import Bad, Reader, Short, text

QTYPE_TXT = 16
QCLASS_CH = 3
QUESTION_NAME = b"version.bind"
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
MAX_RECORDS = 16   # we asked one question: a reply with more records than this is not parsed
MAX_POINTERS = 16  # compression pointers followed per name (loops in hostile replies)

# version.bind texts -> (product, version); facts about what each server reports
_PRODUCTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^dnsmasq-(\S+)", re.I), "dnsmasq"),
    (re.compile(r"^unbound (\S+)", re.I), "Unbound"),
    (re.compile(r"^PowerDNS Recursor (\S+)", re.I), "PowerDNS Recursor"),
    (re.compile(r"^PowerDNS Authoritative Server (\S+)", re.I), "PowerDNS Authoritative Server"),
    (re.compile(r"^Knot DNS (\S+)", re.I), "Knot DNS"),
    (re.compile(r"^Knot Resolver (\S+)", re.I), "Knot Resolver"),
    (re.compile(r"^NSD (\S+)", re.I), "NSD"),
    (re.compile(r"^CoreDNS-(\S+)", re.I), "CoreDNS"),
    (re.compile(r"^Microsoft DNS (\S+)", re.I), "Microsoft DNS"),
    (re.compile(r"^(9\.\d+\.\d+)\S*"), "ISC BIND"),  # BIND answers its bare version number
]


def product_from_version_text(value: str) -> tuple[str | None, str | None]:
    for pattern, product in _PRODUCTS:
        found = pattern.match(value)
        if found:
            return product, found.group(1)
    return None, None


def encode_name(name: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in name.split(b".") if label) + b"\x00"


def build_query(query_id: int, name: bytes = QUESTION_NAME, qtype: int = QTYPE_TXT,
                qclass: int = QCLASS_CH) -> bytes:
    """A standard query, recursion not desired (the question is about the server itself)."""
    header = struct.pack(">HHHHHH", query_id, 0x0000, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack(">HH", qtype, qclass)


def read_name(message: bytes, reader: Reader) -> bytes:
    """A possibly compressed domain name, lower-cased; pointers are bounded."""
    labels: list[bytes] = []
    cursor = reader
    jumps = 0
    total = 0
    while True:
        size = cursor.u8()
        if size == 0:
            break
        if size & 0xC0 == 0xC0:
            target = ((size & 0x3F) << 8) | cursor.u8()
            jumps += 1
            if jumps > MAX_POINTERS or target >= len(message):
                raise Bad("bad compression pointer")
            cursor = Reader(message, target)
            continue
        if size & 0xC0:
            raise Bad("unknown label type")
        labels.append(cursor.take(size).lower())
        total += size + 1
        if total > 255:
            raise Bad("name too long")
    return b".".join(labels)


def parse_reply(message: bytes, query_id: int) -> dict | None:
    """Facts from a complete DNS message, or None when it is not a reply to our query."""
    reader = Reader(message)
    try:
        qid, flags, qdcount, ancount, nscount, arcount = struct.unpack(">HHHHHH", reader.take(12))
    except Short:
        return None
    if qid != query_id or not flags & 0x8000 or (flags >> 11) & 0xF != 0:
        return None  # not our id, not a response, or not a standard query
    facts: dict = {"rcode": RCODES.get(flags & 0xF, str(flags & 0xF)),
                   "authoritative": bool(flags & 0x0400),
                   "recursion_available": bool(flags & 0x0080),
                   "question_echoed": False, "txt": []}
    try:
        if qdcount >= 1:
            name = read_name(message, reader)
            qtype, qclass = reader.u16(), reader.u16()
            facts["question_echoed"] = (name == QUESTION_NAME and qtype == QTYPE_TXT
                                        and qclass == QCLASS_CH)
            for _ in range(min(qdcount - 1, MAX_RECORDS)):
                read_name(message, reader)
                reader.skip(4)
        for _ in range(min(ancount, MAX_RECORDS)):
            read_name(message, reader)
            rtype, _rclass, _ttl, rdlength = struct.unpack(">HHIH", reader.take(10))
            rdata = reader.sub(rdlength)
            if rtype == QTYPE_TXT:
                strings = []
                while rdata.left:
                    strings.append(text(rdata.take(rdata.u8()), 255))
                facts["txt"].append(" ".join(strings))
    except (Short, Bad):
        facts["malformed_records"] = True  # the header already told us it is DNS
    facts["counts"] = [qdcount, ancount, nscount, arcount]
    return facts


def verdict_from(facts: dict, evidence: bytes, transport: str) -> Verdict:
    extra: dict = {"transport": transport, "rcode": facts["rcode"],
                   "recursion_available": facts["recursion_available"]}
    product = version = None
    if facts["txt"]:
        extra["version_bind"] = facts["txt"][0]
        product, version = product_from_version_text(facts["txt"][0])
    confidence = 1.0 if facts["question_echoed"] else 0.8
    return Verdict("dns", product, version, extra, confidence, escape_evidence(evidence))


class _DnsProbe(Probe):
    services = frozenset({"domain", "dns", "mdns"})
    ports = frozenset({53, 5353, 5300, 8053, 853})
    rarity = 10
    read_budget = 4096

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.query_id = secrets.randbelow(0x10000)


@register
class DnsUdpProbe(_DnsProbe):
    """One datagram out, one back: the whole reply arrives at once."""

    name = "dns"
    transport = "udp"

    def start(self) -> Step:
        return Send(build_query(self.query_id))

    def feed(self, data: bytes) -> Step:
        facts = parse_reply(data, self.query_id)
        if facts is None:
            return NoMatch("not a DNS reply to our query")
        return verdict_from(facts, data, "udp")

    def finish(self, data: bytes) -> Step:
        return self.feed(data) if data else NoMatch("no answer")


@register
class DnsTcpProbe(_DnsProbe):
    """The same query with the two-byte length prefix of DNS over TCP (RFC 1035 4.2.2)."""

    name = "dns"
    transport = "tcp"
    rarity = 35  # on TCP, DNS is rarer than the common text protocols on an unknown port

    def start(self) -> Step:
        query = build_query(self.query_id)
        return Send(struct.pack(">H", len(query)) + query)

    def feed(self, data: bytes) -> Step:
        if len(data) < 2:
            return Wait()
        size = struct.unpack(">H", data[:2])[0]
        if size < 12:
            return NoMatch("length prefix too small for DNS")
        if len(data) < 2 + size:
            # a reply to version.bind is small; a huge prefix from a stranger is not DNS
            return Wait() if size <= self.read_budget else NoMatch("length prefix too large")
        facts = parse_reply(data[2:2 + size], self.query_id)
        if facts is None:
            return NoMatch("not a DNS reply to our query")
        return verdict_from(facts, data, "tcp")

    def finish(self, data: bytes) -> Step:
        step = self.feed(data)
        return NoMatch("reply cut short") if isinstance(step, Wait) else step

