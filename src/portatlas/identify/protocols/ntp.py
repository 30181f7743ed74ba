"""NTP over UDP: a mode 3 (client) request; a server answers mode 4 and echoes our transmit
timestamp as its origin timestamp, which is what identifies it.

The product is not in a mode 4 reply. When the reply does not already point at chrony, a
mode 6 (control) READVAR request follows: ntpd and NTPsec answer it (unless configured with
'noquery') with `version="ntpd ntpsec-1.2.2"`-like text; chrony never answers mode 6 but
serves its local clock with the reference id 127.127.1.1, which ntpd (refid 'LOCL') and NTPsec
(no local driver) do not use.
"""

from __future__ import annotations

import re
import secrets
import struct

from ..base import NoMatch, Probe, ProbeContext, Send, Step, Verdict, escape_evidence, register
from ._wire import text

MODE_CLIENT, MODE_SERVER, MODE_CONTROL = 3, 4, 6
CHRONY_LOCAL_REFID = bytes([127, 127, 1, 1])
OPCODE_READVAR = 2
LEAP = {0: "none", 1: "+1s", 2: "-1s", 3: "unsynchronized"}

_VERSION_VAR = re.compile(r'version="([^"]{1,200})"')
_NTPSEC = re.compile(r"ntpsec-(\S+)", re.I)
_NTPD = re.compile(r"ntpd (\d[\w.]*)")


def build_client_request(transmit: bytes) -> bytes:
    """48-byte NTPv4 client packet; only the transmit timestamp is set (RFC 5905 7.3)."""
    return bytes([(0 << 6) | (4 << 3) | MODE_CLIENT]) + bytes(39) + transmit


def build_readvar(sequence: int) -> bytes:
    """Mode 6 READVAR of the system variables (association 0), NTP version 2 like ntpq."""
    return struct.pack(">BBHHHHH", (2 << 3) | MODE_CONTROL, OPCODE_READVAR, sequence, 0, 0, 0, 0)


def refid_text(stratum: int, refid: bytes) -> str:
    """Stratum 0/1 reference ids are four ASCII characters (kiss codes, clock names);
    above that they are the IPv4 address (or an IPv6 hash) of the upstream server."""
    if stratum <= 1:
        return text(refid.rstrip(b"\x00"), 4)
    return ".".join(str(b) for b in refid)


def parse_server_reply(data: bytes, transmit: bytes) -> dict | None:
    if len(data) < 48:
        return None
    first, stratum, poll, precision = struct.unpack(">BBbb", data[:4])
    mode, version, leap = first & 7, (first >> 3) & 7, first >> 6
    if mode != MODE_SERVER or not 1 <= version <= 4:
        return None
    root_delay, root_dispersion = struct.unpack(">II", data[4:12])
    refid = data[12:16]
    facts = {
        "ntp_version": version, "stratum": stratum, "leap": LEAP[leap],
        "refid": refid_text(stratum, refid), "poll": poll, "precision": precision,
        "root_delay_s": round(root_delay / 65536, 6),
        "root_dispersion_s": round(root_dispersion / 65536, 6),
        "origin_echoed": data[24:32] == transmit,
    }
    if stratum == 0 and refid.isalpha():
        facts["kiss_code"] = refid.decode("ascii")  # RATE, DENY, RSTR, INIT...
    facts["_raw_refid"] = refid
    return facts


def parse_control_reply(data: bytes, sequence: int) -> dict | None:
    """System variables from a mode 6 response to our READVAR (first fragment only)."""
    if len(data) < 12:
        return None
    first, op, seq, _status, _assoc, _offset, count = struct.unpack(">BBHHHHH", data[:12])
    if first & 7 != MODE_CONTROL or not op & 0x80 or op & 0x1F != OPCODE_READVAR or seq != sequence:
        return None
    if op & 0x40:
        return {"error": True}
    body = text(data[12:12 + min(count, 2048)].replace(b"\r\n", b" "), 2048)
    facts: dict = {"error": False}
    found = _VERSION_VAR.search(body)
    if found:
        facts["version_text"] = found.group(1)
    system = re.search(r'system="([^"]{1,100})"', body)
    if system:
        facts["system"] = system.group(1)
    return facts


def product_from_version_text(value: str) -> tuple[str | None, str | None]:
    found = _NTPSEC.search(value)
    if found:
        return "NTPsec", found.group(1)
    found = _NTPD.search(value)
    if found:
        return "ntpd", found.group(1)
    return None, None


@register
class NtpProbe(Probe):
    name = "ntp"
    transport = "udp"
    ports = frozenset({123})
    services = frozenset({"ntp"})
    rarity = 20
    read_budget = 4096

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.transmit = secrets.token_bytes(8)
        self.sequence = 1 + secrets.randbelow(0xFFFE)
        self.server: dict | None = None
        self.server_bytes = b""

    def start(self) -> Step:
        return Send(build_client_request(self.transmit))

    def feed(self, data: bytes) -> Step:
        if self.server is None:
            facts = parse_server_reply(data, self.transmit)
            if facts is None:
                return NoMatch("not an NTP server reply")
            self.server, self.server_bytes = facts, data
            if facts["_raw_refid"] == CHRONY_LOCAL_REFID:
                return self._verdict(None)  # chrony: it would not answer mode 6 anyway
            return Send(build_readvar(self.sequence))
        control = parse_control_reply(data, self.sequence)
        return self._verdict(control)

    def finish(self, data: bytes) -> Step:
        if self.server is None:
            return self.feed(data) if data else NoMatch("no answer")
        # the mode 6 question went unanswered (chrony, or ntpd with 'noquery')
        return self._verdict(parse_control_reply(data, self.sequence) if data else None)

    def _verdict(self, control: dict | None) -> Verdict:
        assert self.server is not None
        extra = {k: v for k, v in self.server.items() if not k.startswith("_")}
        product = version = None
        if control and control.get("version_text"):
            extra["version_text"] = control["version_text"]
            product, version = product_from_version_text(control["version_text"])
            if control.get("system"):
                extra["system"] = control["system"]
        elif self.server["_raw_refid"] == CHRONY_LOCAL_REFID:
            product = "chrony"
            extra["product_from"] = "reference id 127.127.1.1 (chrony's local clock)"
        if control is not None:
            extra["mode6"] = "error" if control.get("error") else "answered"
        confidence = 1.0 if self.server["origin_echoed"] else 0.7
        return Verdict("ntp", product, version, extra, confidence,
                       escape_evidence(self.server_bytes, 64))
