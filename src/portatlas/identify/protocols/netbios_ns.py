"""NetBIOS name service over UDP: a node status (NBSTAT) query for the wildcard name '*'.
Windows and Samba's nmbd answer with their name table (host name, workgroup, services) and,
from Windows, the adapter's MAC address; Samba reports 00:00:00:00:00:00 there, which is how
it is told apart.
"""

from __future__ import annotations

import secrets
import struct

from ..base import NoMatch, Probe, ProbeContext, Send, Step, Verdict, escape_evidence, register
from ._wire import Bad, Reader, Short, text

NBSTAT, CLASS_IN = 0x21, 1
SUFFIXES = {0x00: "workstation", 0x03: "messenger", 0x20: "file server", 0x1B: "domain master",
            0x1C: "domain controllers", 0x1D: "master browser", 0x1E: "browser election"}
MAX_NAMES = 64


def encode_netbios_name(name: bytes, suffix: int = 0) -> bytes:
    """First-level encoding (RFC 1001 14.1): 16 bytes, each nibble as a letter 'A'..'P'."""
    raw = name.ljust(15, b"\x00" if name == b"*" else b" ")[:15] + bytes([suffix])
    encoded = bytearray()
    for byte in raw:
        encoded += bytes([0x41 + (byte >> 4), 0x41 + (byte & 0x0F)])
    return b"\x20" + bytes(encoded) + b"\x00"


def build_nbstat_query(transaction_id: int) -> bytes:
    header = struct.pack(">HHHHHH", transaction_id, 0x0000, 1, 0, 0, 0)
    return header + encode_netbios_name(b"*") + struct.pack(">HH", NBSTAT, CLASS_IN)


def _skip_name(reader: Reader) -> None:
    size = reader.u8()
    if size & 0xC0 == 0xC0:
        reader.skip(1)
        return
    if size != 0x20:
        raise Bad("not a NetBIOS encoded name")
    reader.skip(32)
    if reader.u8() != 0:
        raise Bad("scope names are not expected here")


def parse_nbstat_reply(data: bytes, transaction_id: int) -> dict | None:
    try:
        reader = Reader(data)
        tid, flags, qdcount, ancount, _ns, _ar = struct.unpack(">HHHHHH", reader.take(12))
        if tid != transaction_id or not flags & 0x8000 or ancount < 1:
            return None
        for _ in range(min(qdcount, 1)):
            _skip_name(reader)
            reader.skip(4)
        _skip_name(reader)
        rtype, rclass, _ttl, rdlength = struct.unpack(">HHIH", reader.take(10))
        if rtype != NBSTAT or rclass != CLASS_IN:
            return None
        rdata = reader.sub(rdlength)
        count = rdata.u8()
        names = []
        for _ in range(min(count, MAX_NAMES)):
            raw = rdata.take(15)
            suffix = rdata.u8()
            name_flags = rdata.u16()
            names.append({"name": text(raw.rstrip(b" \x00"), 15), "suffix": suffix,
                          "group": bool(name_flags & 0x8000)})
        mac = rdata.take(6) if rdata.left >= 6 else None
    except (Short, Bad):
        return None
    facts: dict = {"names": [f"{n['name']}<{n['suffix']:02x}>{' group' if n['group'] else ''}"
                             for n in names]}
    for entry in names:
        if entry["suffix"] == 0x00 and not entry["group"] and "host_name" not in facts:
            facts["host_name"] = entry["name"]
        if entry["suffix"] == 0x00 and entry["group"] and "workgroup" not in facts:
            facts["workgroup"] = entry["name"]
        if entry["suffix"] == 0x20:
            facts["file_server"] = True
    if mac is not None:
        facts["mac"] = ":".join(f"{b:02x}" for b in mac)
    return facts


@register
class NetbiosNsProbe(Probe):
    name = "netbios-ns"
    transport = "udp"
    ports = frozenset({137})
    services = frozenset({"netbios-ns"})
    rarity = 50
    read_budget = 4096

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.transaction_id = secrets.randbelow(0x10000)

    def start(self) -> Step:
        return Send(build_nbstat_query(self.transaction_id))

    def feed(self, data: bytes) -> Step:
        facts = parse_nbstat_reply(data, self.transaction_id)
        if facts is None:
            return NoMatch("not a node status reply")
        product = "Samba nmbd" if facts.get("mac") == "00:00:00:00:00:00" else None
        return Verdict("netbios-ns", product, None, facts, 1.0, escape_evidence(data, 96))

    def finish(self, data: bytes) -> Step:
        return self.feed(data) if data else NoMatch("no answer")
