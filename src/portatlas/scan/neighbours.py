"""Failed ARP/ND resolutions, as the kernel announces them (rtnetlink RTM_NEWNEIGH with
NUD_FAILED on the RTNLGRP_NEIGH group; no privileges needed).

A connect() to a dead address on a link does not fail when the kernel gives up resolving it
(about 3 s): the SYN is silently dropped, and the ICMP error the kernel sends itself is
rate-limited and reaches only sockets still open. The neighbour table's own announcement
reaches us always, once per failed resolution, so the scan can settle such a host at the
first failure (scan/tcp.py, -Pn scans).
"""

from __future__ import annotations

import socket
import struct

RTMGRP_NEIGH = 0x4
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
NLMSG_DONE = 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NUD_FAILED = 0x20
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # reachable, stale, delay, probe, noarp, permanent
NDA_DST, NDA_LLADDR = 1, 2
_NLMSG = struct.Struct("=IHHII")
_NDMSG = struct.Struct("=BBHiHBB")
_RTA = struct.Struct("=HH")


def parse_failed(data: bytes) -> list[str]:
    """Addresses whose resolution failed, from one netlink datagram (sans-I/O)."""
    out = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            break
        body = off + _NLMSG.size
        if kind == RTM_NEWNEIGH and length >= _NLMSG.size + _NDMSG.size:
            family, _, _, _ifindex, state, _fl, _type = _NDMSG.unpack_from(data, body)
            if state & NUD_FAILED and family in (socket.AF_INET, socket.AF_INET6):
                a = body + _NDMSG.size
                while a + _RTA.size <= off + length:
                    alen, atype = _RTA.unpack_from(data, a)
                    if alen < _RTA.size:
                        break
                    if atype == NDA_DST:
                        raw = data[a + 4:a + alen]
                        if len(raw) in (4, 16):
                            out.append(socket.inet_ntop(family, raw))
                        break
                    a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return out


class NeighbourWatch:
    """A netlink socket subscribed to neighbour events; `failed()` drains it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  socket.NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, RTMGRP_NEIGH))
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def failed(self) -> list[str]:
        out = []
        for _ in range(1024):
            try:
                data = self.sock.recv(65536)
            except OSError:  # drained (or overrun: later failures are announced again)
                break
            out.extend(parse_failed(data))
        return out

    def close(self) -> None:
        self.sock.close()


def parse_entries(data: bytes) -> tuple[dict[str, str], bool]:
    """({address: MAC} of the valid entries in one datagram of a neighbour dump, done?)."""
    out: dict[str, str] = {}
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            break
        if kind == NLMSG_DONE:
            return out, True
        body = off + _NLMSG.size
        if kind == RTM_NEWNEIGH and length >= _NLMSG.size + _NDMSG.size:
            family, _, _, _ifindex, state, _fl, _type = _NDMSG.unpack_from(data, body)
            dst = mac = None
            a = body + _NDMSG.size
            while a + _RTA.size <= off + length:
                alen, atype = _RTA.unpack_from(data, a)
                if alen < _RTA.size:
                    break
                value = data[a + 4:a + alen]
                if atype == NDA_DST and len(value) in (4, 16):
                    dst = socket.inet_ntop(family, value)
                elif atype == NDA_LLADDR and len(value) == 6:
                    mac = ":".join(f"{b:02x}" for b in value)
                a += (alen + 3) & ~3
            if dst and mac and state & NUD_VALID and mac != "00:00:00:00:00:00":
                out[dst] = mac
        off += (length + 3) & ~3
    return out, False


def neighbour_table() -> dict[str, str]:
    """Address -> MAC of the kernel's valid neighbour entries, IPv4 and IPv6 (an rtnetlink
    dump: no privileges needed). How a scan without raw sockets learns the MAC of a live
    host on its link. Empty when netlink is unavailable."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return {}
    out: dict[str, str] = {}
    try:
        s.settimeout(2.0)
        body = _NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0)
        s.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
               + body)
        for _ in range(4096):  # bounded: a dump ends with NLMSG_DONE
            entries, done = parse_entries(s.recv(1 << 16))
            out.update(entries)
            if done:
                break
    except OSError:
        pass
    finally:
        s.close()
    return out
