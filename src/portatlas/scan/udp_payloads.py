"""Datagrams that make common UDP services answer.

A UDP service that receives garbage usually stays silent, which looks exactly like a
firewall dropping the probe; a well-formed request makes it reply, which proves the port
open. Each payload is the smallest harmless request of its protocol (a query, a status or
discovery request; never a write). Ports without one get an empty datagram, which still
draws an ICMP port unreachable from a closed port. Written from the protocol specifications.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_QID = 0x5041  # transaction id used where a protocol wants one ("PA")


def _dns_query(name: str, qtype: int, qclass: int = 1) -> bytes:
    header = struct.pack("!HHHHHH", _QID, 0x0100, 1, 0, 0, 0)  # recursion desired, 1 question
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    return header + labels + struct.pack("!HH", qtype, qclass)


def _ber(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def _snmp_get_sysdescr(community: bytes = b"public") -> bytes:
    oid = _ber(0x06, bytes([0x2B, 6, 1, 2, 1, 1, 1, 0]))          # 1.3.6.1.2.1.1.1.0 sysDescr
    varbind = _ber(0x30, oid + b"\x05\x00")                          # value NULL
    pdu = _ber(0xA0, _ber(0x02, struct.pack("!I", _QID)) + b"\x02\x01\x00\x02\x01\x00"
               + _ber(0x30, varbind))                                # GetRequest
    return _ber(0x30, b"\x02\x01\x01" + _ber(0x04, community) + pdu)  # version 2c


def _netbios_nbstat() -> bytes:
    # node status request for the wildcard name "*" (first-level encoded, 16 bytes)
    raw = b"*" + b"\x00" * 15
    encoded = bytes(c for b in raw for c in (0x41 + (b >> 4), 0x41 + (b & 0x0F)))
    return struct.pack("!HHHHHH", _QID, 0, 1, 0, 0, 0) + b"\x20" + encoded + b"\x00" + \
        struct.pack("!HH", 0x21, 1)


def _rpc_null(program: int, version: int) -> bytes:
    # ONC RPC call of procedure 0 (NULL) with AUTH_NULL credentials and verifier
    return struct.pack("!IIIIII", 0x50415041, 0, 2, program, version, 0) + b"\x00" * 16


def _memcached(command: bytes) -> bytes:
    # UDP frame header: request id, sequence 0, 1 datagram, reserved
    return struct.pack("!HHHH", _QID, 0, 1, 0) + command


def _quic_version_probe() -> bytes:
    # long header with a reserved version: servers answer with Version Negotiation.
    # Clients must pad Initial-sized datagrams to 1200 bytes, so servers ignore shorter ones.
    head = bytes([0xC3]) + struct.pack("!I", 0x1A2A3A4A) + b"\x08" + b"PAPROBE1" + b"\x08" + b"PAPROBE2"
    return head + b"\x00" * (1200 - len(head))


_SSDP = (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
         b"MX: 1\r\nST: ssdp:all\r\n\r\n")
_SIP = (b"OPTIONS sip:probe@portatlas.invalid SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP portatlas.invalid;branch=z9hG4bK-portatlas;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:scan@portatlas.invalid>;tag=pa1\r\n"
        b"To: <sip:probe@portatlas.invalid>\r\nCall-ID: portatlas-probe\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n")

class Payload(NamedTuple):
    protocol: str     # the service the datagram asks (a registry-style name)
    data: bytes


# port -> (protocol name, payload), made into Payload records below
_TABLE: dict[int, tuple[str, bytes]] = {
    7: ("echo", b"portatlas\r\n"),
    13: ("daytime", b"\r\n"),
    17: ("qotd", b"\r\n"),
    19: ("chargen", b"\r\n"),
    37: ("time", b"\r\n"),
    53: ("dns", _dns_query("", 2)),                                 # ". IN NS"
    111: ("rpcbind", _rpc_null(100000, 2)),
    123: ("ntp", bytes([0xE3, 0, 6, 0xEC]) + b"\x00" * 44),        # v4 client request
    137: ("netbios-ns", _netbios_nbstat()),
    161: ("snmp", _snmp_get_sysdescr()),
    177: ("xdmcp", struct.pack("!HHHB", 1, 2, 1, 0)),              # Query, no auth names
    443: ("quic", _quic_version_probe()),
    520: ("rip", struct.pack("!BBH", 1, 2, 0) + struct.pack("!HHIIII", 0, 0, 0, 0, 0, 16)),
    623: ("ipmi", bytes([0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x00, 0x00, 0x00])),
    1194: ("openvpn", bytes([0x38]) + b"PAPROBE!" + b"\x00" + b"\x00\x00\x00\x00"),
    1434: ("ms-sql-m", b"\x02"),
    1900: ("ssdp", _SSDP),
    2049: ("nfs", _rpc_null(100003, 3)),
    3478: ("stun", struct.pack("!HHI", 0x0001, 0, 0x2112A442) + b"portatlas-id"),
    5060: ("sip", _SIP),
    5351: ("nat-pmp", b"\x00\x00"),
    5353: ("mdns", _dns_query("_services._dns-sd._udp.local", 12)),
    5683: ("coap", bytes([0x40, 0x01]) + struct.pack("!H", _QID) + bytes([0xBB]) + b".well-known"
           + bytes([0x04]) + b"core"),
    10001: ("ubiquiti", b"\x01\x00\x00\x00"),
    11211: ("memcached", _memcached(b"version\r\n")),
}


PAYLOADS: dict[int, Payload] = {port: Payload(*entry) for port, entry in _TABLE.items()}


def payload_for(port: int) -> bytes:
    entry = PAYLOADS.get(port)
    return entry.data if entry else b""


def protocol_for(port: int) -> str | None:
    entry = PAYLOADS.get(port)
    return entry.protocol if entry else None
