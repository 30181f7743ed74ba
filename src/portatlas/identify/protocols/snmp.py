"""SNMP over UDP: an SNMPv3 discovery request (needs no community), then an SNMPv2c
GetRequest for sysDescr.0 and sysObjectID.0 with the community 'public'.

The v3 discovery is answered by every v3-capable agent with a Report carrying its engine id,
whose first four bytes name the vendor by IANA enterprise number (8072 = Net-SNMP); the v2c
reply adds the system description. Either reply alone identifies SNMP.
"""

from __future__ import annotations

import secrets

from ..base import NoMatch, Probe, ProbeContext, Send, Step, Verdict, escape_evidence, register
from . import _ber as ber
from ._wire import Bad, Reader, Short, text

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
USM_UNKNOWN_ENGINE_IDS = "1.3.6.1.6.3.15.1.1.4.0"
GET_REQUEST, GET_RESPONSE, REPORT = 0xA0, 0xA2, 0xA8
# IANA private enterprise numbers of common SNMP agents (facts from the IANA registry)
ENTERPRISES = {
    9: "Cisco", 11: "Hewlett-Packard", 311: "Microsoft", 2011: "Huawei", 2636: "Juniper",
    3375: "F5", 4413: "Broadcom", 6876: "VMware", 8072: "Net-SNMP", 12356: "Fortinet",
    14988: "MikroTik", 25461: "Palo Alto Networks",
}
ENTERPRISE_PREFIX = "1.3.6.1.4.1."
VALUE_ERRORS = {0x80: "noSuchObject", 0x81: "noSuchInstance", 0x82: "endOfMibView"}


def build_v3_discovery(message_id: int, request_id: int) -> bytes:
    """msgFlags 'reportable', security model USM, empty engine id and user (RFC 3414 4)."""
    header = ber.sequence(ber.integer(message_id), ber.integer(65507), ber.octets(b"\x04"),
                          ber.integer(3))
    usm = ber.sequence(ber.octets(b""), ber.integer(0), ber.integer(0), ber.octets(b""),
                       ber.octets(b""), ber.octets(b""))
    pdu = ber.sequence(ber.integer(request_id), ber.integer(0), ber.integer(0), ber.sequence(),
                       tag=GET_REQUEST)
    scoped = ber.sequence(ber.octets(b""), ber.octets(b""), pdu)
    return ber.sequence(ber.integer(3), header, ber.octets(usm), scoped)


def build_v2c_get(request_id: int, community: bytes = b"public",
                  oids: tuple[str, ...] = (SYS_DESCR, SYS_OBJECT_ID)) -> bytes:
    bindings = ber.sequence(*(ber.sequence(ber.oid(o), ber.null()) for o in oids))
    pdu = ber.sequence(ber.integer(request_id), ber.integer(0), ber.integer(0), bindings,
                       tag=GET_REQUEST)
    return ber.sequence(ber.integer(1), ber.octets(community), pdu)


def _read_value(reader: Reader) -> str | int | None:
    tag, content = ber.read_tlv(reader)
    raw = content.take(content.left)
    if tag == ber.OCTET_STRING:
        return text(raw, 512)
    if tag == ber.OID:
        return ber.decode_oid(raw)
    if tag in (ber.INTEGER, 0x41, 0x42, 0x43, 0x46):  # Integer, Counter, Gauge, TimeTicks
        return ber.decode_integer(Reader(raw))
    if tag in VALUE_ERRORS:
        return None
    return raw.hex()[:64]


def parse_pdu(reader: Reader) -> tuple[int, int, int, dict[str, object]]:
    """A PDU: (its tag, request id, error status, {oid: value})."""
    tag, pdu = ber.read_tlv(reader)
    if tag not in (GET_RESPONSE, REPORT):
        raise Bad(f"unexpected PDU 0x{tag:02x}")
    request_id = ber.read_integer(pdu)
    error_status = ber.read_integer(pdu)
    ber.read_integer(pdu)  # error index
    bindings = ber.expect(pdu, ber.SEQUENCE)
    values: dict[str, object] = {}
    for _ in range(16):
        if not bindings.left:
            break
        binding = ber.expect(bindings, ber.SEQUENCE)
        name = ber.decode_oid(ber.read_octets(binding, ber.OID))
        values[name] = _read_value(binding)
    return tag, request_id, error_status, values


def parse_engine_id(engine: bytes) -> dict:
    facts: dict = {"engine_id": engine.hex()}
    if len(engine) >= 5 and engine[0] & 0x80:
        enterprise = int.from_bytes(engine[:4], "big") & 0x7FFFFFFF
        facts["enterprise"] = enterprise
        if enterprise in ENTERPRISES:
            facts["vendor"] = ENTERPRISES[enterprise]
    return facts


def parse_v3_report(data: bytes, message_id: int) -> dict | None:
    """Engine facts from a v3 Report answering our discovery, or None if it is not one."""
    try:
        message = ber.expect(Reader(data), ber.SEQUENCE)
        if ber.read_integer(message) != 3:
            return None
        header = ber.expect(message, ber.SEQUENCE)
        if ber.read_integer(header) != message_id:
            return None
        usm = Reader(ber.read_octets(message))
        params = ber.expect(usm, ber.SEQUENCE)
        facts = parse_engine_id(ber.read_octets(params))
        facts["engine_boots"] = ber.read_integer(params)
        facts["engine_time_s"] = ber.read_integer(params)
        # the scoped PDU is plain text when no privacy is used, which is our case
        scoped = ber.expect(message, ber.SEQUENCE)
        ber.read_octets(scoped)
        ber.read_octets(scoped)
        _tag, _rid, _err, values = parse_pdu(scoped)
        facts["report"] = sorted(values)
        return facts
    except (Short, Bad):
        return None


def parse_v2c_response(data: bytes, request_id: int) -> dict | None:
    try:
        message = ber.expect(Reader(data), ber.SEQUENCE)
        version = ber.read_integer(message)
        if version not in (0, 1):
            return None
        community = ber.read_octets(message)
        tag, rid, error_status, values = parse_pdu(message)
    except (Short, Bad):
        return None
    if tag != GET_RESPONSE or rid != request_id:
        return None
    facts: dict = {"snmp_version": "v1" if version == 0 else "v2c",
                   "community": text(community, 64), "error_status": error_status}
    if isinstance(values.get(SYS_DESCR), str):
        facts["sys_descr"] = values[SYS_DESCR]
    if isinstance(values.get(SYS_OBJECT_ID), str):
        facts["sys_object_id"] = values[SYS_OBJECT_ID]
    return facts


def vendor_from_object_id(object_id: str) -> str | None:
    if not object_id.startswith(ENTERPRISE_PREFIX):
        return None
    number = object_id[len(ENTERPRISE_PREFIX):].split(".")[0]
    return ENTERPRISES.get(int(number)) if number.isdigit() and len(number) < 10 else None


@register
class SnmpProbe(Probe):
    name = "snmp"
    transport = "udp"
    ports = frozenset({161, 162, 1161, 10161})
    services = frozenset({"snmp", "snmptrap", "snmp-tls"})
    rarity = 20
    read_budget = 8192

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.message_id = 1 + secrets.randbelow(0x7FFFFFFE)
        self.request_id = 1 + secrets.randbelow(0x7FFFFFFE)
        self.v3: dict | None = None
        self.v2c: dict | None = None
        self.sent_v2c = False
        self.evidence = b""

    def start(self) -> Step:
        return Send(build_v3_discovery(self.message_id, self.request_id))

    def feed(self, data: bytes) -> Step:
        if not self.sent_v2c:
            self.v3 = parse_v3_report(data, self.message_id)
            if self.v3 is None:
                return NoMatch("not an SNMPv3 report")
            self.evidence = data
            self.sent_v2c = True
            return Send(build_v2c_get(self.request_id))
        self.v2c = parse_v2c_response(data, self.request_id)
        if self.v2c is not None:
            self.evidence = data
        return self._verdict()

    def finish(self, data: bytes) -> Step:
        if data:
            step = self.feed(data)
            if not isinstance(step, Send):
                return step
        if self.v3 is None:
            # No v3 answer: a v1/v2c-only agent (or none). When the driver lets finish()
            # send, try the community request; otherwise this is a plain 'no answer'.
            if not self.sent_v2c:
                self.sent_v2c = True
                return Send(build_v2c_get(self.request_id))
            return NoMatch("no answer")
        return self._verdict()

    def _verdict(self) -> Verdict:
        extra: dict = {}
        product = None
        if self.v3:
            extra.update({k: v for k, v in self.v3.items() if k != "report"})
            extra["versions"] = ["v3"]
            product = self.v3.get("vendor")
        if self.v2c:
            extra.update(self.v2c)
            extra.setdefault("versions", []).append(self.v2c["snmp_version"])
            product = product or vendor_from_object_id(self.v2c.get("sys_object_id", ""))
        return Verdict("snmp", product, None, extra, 1.0, escape_evidence(self.evidence, 96))
