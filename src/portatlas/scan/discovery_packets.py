"""The packets of host discovery, built and parsed without sockets (sans-I/O).

ARP (RFC 826) is built as the payload of a cooked AF_PACKET socket (no Ethernet header);
neighbour solicitation/advertisement (RFC 4861), ICMP echo and timestamp (RFC 792) and
ICMPv6 echo (RFC 4443) as ICMP messages; TCP probes as bare TCP headers (the kernel adds the
IP header). Parsers take the bytes a socket returned and give a small named record or None;
they never raise on short or hostile input.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6

ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP_TIMESTAMP, ICMP_TIMESTAMP_REPLY = 13, 14
ICMP6_UNREACH, ICMP6_ECHO, ICMP6_ECHO_REPLY = 1, 128, 129
ND_SOLICIT, ND_ADVERT = 135, 136

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10

_ARP = struct.Struct("!HHBBH6s4s6s4s")
_TCP = struct.Struct("!HHIIBBHHH")


class Neighbour(NamedTuple):
    """An ARP reply or a neighbour advertisement: who has the address, at which MAC."""

    address: bytes            # packed IPv4 or IPv6 address
    mac: bytes | None         # None when an advertisement left out its link-layer address


class IcmpMessage(NamedTuple):
    """An ICMP reply to our echo/timestamp, or an ICMP error quoting one of our probes."""

    kind: str                 # "reply" or "error"
    address: bytes | None     # reply: the sender (IPv4; None for IPv6, see parse_icmp6);
                              # error: the destination of the quoted packet
    icmp_type: int
    code: int


class TcpAnswer(NamedTuple):
    port: int                 # the remote port that answered
    flags: int


class IPv4Packet(NamedTuple):
    source: bytes
    payload: bytes


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# ARP --------------------------------------------------------------------------------------
def arp_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """Who has target_ip? Tell src_ip (an Ethernet/IPv4 ARP request body)."""
    return _ARP.pack(1, ETH_P_IP, 6, 4, 1, src_mac, src_ip, b"\0" * 6, target_ip)


def parse_arp_reply(data: bytes) -> Neighbour | None:
    """(sender IPv4 address, sender MAC) of an ARP reply, else None. Requests are ignored:
    a gratuitous request proves nothing about the hosts we asked for."""
    if len(data) < _ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, _tpa = _ARP.unpack_from(data)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4 or op != 2:
        return None
    return Neighbour(spa, sha)


# IPv6 neighbour discovery -----------------------------------------------------------------
def solicited_node(target: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the multicast group a neighbour solicitation for `target` goes to."""
    return bytes.fromhex("ff02" + "00" * 9 + "01ff") + target[13:16]


def neighbor_solicit(target: bytes, src_mac: bytes) -> bytes:
    """An ICMPv6 neighbour solicitation (the kernel fills in the checksum) with our
    link-layer address, so the target can answer without soliciting us first."""
    return struct.pack("!BBHI", ND_SOLICIT, 0, 0, 0) + target + b"\x01\x01" + src_mac


def parse_neighbor_advert(data: bytes) -> Neighbour | None:
    """(target address, its link-layer address or None) of a neighbour advertisement."""
    if len(data) < 24 or data[0] != ND_ADVERT or data[1] != 0:
        return None
    target = data[8:24]
    mac = None
    i = 24
    while i + 2 <= len(data):
        kind, length = data[i], data[i + 1] * 8
        if length == 0 or i + length > len(data):
            break
        if kind == 2 and length >= 8:
            mac = data[i + 2:i + 8]
        i += length
    return Neighbour(target, mac)


# ICMP -------------------------------------------------------------------------------------
def icmp_echo(ident: int, seq: int, v6: bool = False) -> bytes:
    payload = b"portatlas-ping\0\0"
    if v6:  # the kernel computes ICMPv6 checksums on raw sockets
        return struct.pack("!BBHHH", ICMP6_ECHO, 0, 0, ident, seq) + payload
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    csum = checksum(head + payload)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, csum, ident, seq) + payload


def icmp_timestamp(ident: int, seq: int, originate_ms: int) -> bytes:
    body = struct.pack("!III", originate_ms & 0xFFFFFFFF, 0, 0)
    csum = checksum(struct.pack("!BBHHH", ICMP_TIMESTAMP, 0, 0, ident, seq) + body)
    return struct.pack("!BBHHH", ICMP_TIMESTAMP, 0, csum, ident, seq) + body


def parse_icmp4(packet: bytes, ident: int) -> IcmpMessage | None:
    """A packet from a raw IPv4 ICMP socket (IP header included): a "reply" (address: the
    sender, code 0) for our echo or timestamp reply; an "error" (address: the destination of
    the quoted packet) for an ICMP error about a packet we sent (echo, timestamp, or TCP from
    `ident` as source port); None for anything else."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8:
        return None
    icmp_type, code = packet[ihl], packet[ihl + 1]
    if icmp_type in (ICMP_ECHO_REPLY, ICMP_TIMESTAMP_REPLY):
        (got,) = struct.unpack_from("!H", packet, ihl + 4)
        if got != ident:
            return None
        return IcmpMessage("reply", packet[12:16], icmp_type, 0)
    if icmp_type in (ICMP_UNREACH, ICMP_TIME_EXCEEDED):
        inner = ihl + 8
        if len(packet) < inner + 20:
            return None
        inner_ihl = (packet[inner] & 0x0F) * 4
        proto = packet[inner + 9]
        quoted = inner + inner_ihl
        if len(packet) < quoted + 8:
            return None
        if proto == socket.IPPROTO_ICMP:
            (got,) = struct.unpack_from("!H", packet, quoted + 4)
        elif proto == socket.IPPROTO_TCP:
            (got,) = struct.unpack_from("!H", packet, quoted)
        else:
            return None
        if got != ident:
            return None
        return IcmpMessage("error", packet[inner + 16:inner + 20], icmp_type, code)
    return None


def parse_icmp6(data: bytes, ident: int) -> IcmpMessage | None:
    """A message from a raw ICMPv6 socket (no IP header): a "reply" (address None: the sender
    is recvfrom's address) for our echo reply; an "error" (address: the quoted destination)
    for an ICMPv6 error about our echo or TCP probe. Advertisements are
    parse_neighbor_advert's. None for anything else."""
    if len(data) < 8:
        return None
    icmp_type, code = data[0], data[1]
    if icmp_type == ICMP6_ECHO_REPLY:
        (got,) = struct.unpack_from("!H", data, 4)
        return IcmpMessage("reply", None, icmp_type, 0) if got == ident else None
    if icmp_type in (ICMP6_UNREACH, 3):
        inner = 8
        if len(data) < inner + 40 + 8:
            return None
        nxt = data[inner + 6]
        quoted = inner + 40
        if nxt == socket.IPPROTO_ICMPV6:
            (got,) = struct.unpack_from("!H", data, quoted + 4)
        elif nxt == socket.IPPROTO_TCP:
            (got,) = struct.unpack_from("!H", data, quoted)
        else:
            return None
        if got != ident:
            return None
        return IcmpMessage("error", data[inner + 24:inner + 40], icmp_type, code)
    return None


# TCP --------------------------------------------------------------------------------------
def tcp_probe(sport: int, dport: int, seq: int, ack: int, flags: int,
              src: bytes | None = None, dst: bytes | None = None) -> bytes:
    """A bare TCP header (no options). With IPv4 `src` and `dst` the checksum is filled in;
    without them it is left zero for the kernel (IPV6_CHECKSUM on an IPv6 raw socket)."""
    head = _TCP.pack(sport, dport, seq, ack, 5 << 4, flags, 1024, 0, 0)
    if src is None or dst is None:
        return head
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(head))
    csum = checksum(pseudo + head)
    return _TCP.pack(sport, dport, seq, ack, 5 << 4, flags, 1024, csum, 0)


def parse_tcp_answer(segment: bytes, sport: int) -> TcpAnswer | None:
    """(remote port, flags) of a TCP segment to our source port (a bare TCP header: strip
    the IPv4 header before calling), else None."""
    if len(segment) < 14:
        return None
    src_port, dst_port = struct.unpack_from("!HH", segment)
    if dst_port != sport:
        return None
    return TcpAnswer(src_port, segment[13])


def strip_ipv4(packet: bytes) -> IPv4Packet | None:
    """(source address, payload) of an IPv4 packet from a raw socket."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    return IPv4Packet(packet[12:16], packet[ihl:])
