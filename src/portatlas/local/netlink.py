"""Linux fast path: the kernel's socket tables over netlink (sock_diag), the way `ss` reads them.

Why netlink rather than /proc/net/{tcp,udp}{,6}: it needs no privileges, answers for the network
namespace this process runs in, tells IPv6-only sockets from dual-stack ones (/proc/net cannot),
reports the device a socket is bound to, and filters in the kernel: states (only listeners) and,
through inet_diag bytecode, a port or port range. `portatlas 57` thus learns "is anything listening
on 57?" in a fraction of a millisecond, however many sockets the machine has. It is also faster
than parsing /proc/net text at scale (see benchmarks/bench_local.py and docs/local.md).

This module imports only `_socket` and `struct`: it sits on the path of every port lookup, and the
`socket` wrapper module costs about a millisecond of enum set-up.
"""

from __future__ import annotations

import struct
import sys

import _socket
import os

from portatlas.local.model import Socket

AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
PROTOCOLS = {"tcp": 6, "udp": 17}
FAMILIES = {"ipv4": AF_INET, "ipv6": AF_INET6}
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3
INET_DIAG_BC_S_EQ = 11
INET_DIAG_SKV6ONLY = 11

# Kernel socket states (include/net/tcp_states.h) named as ss names them. UDP uses CLOSE for
# an unconnected socket and ESTABLISHED for a connected one.
STATE_NAMES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
               6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
               11: "CLOSING", 12: "SYN-RECV"}
TCP_LISTEN = 10
TCP_CLOSE = 7
# What `ss -l` asks for (listening TCP, unconnected UDP) and what `ss -a` asks for (states 1-11).
LISTENING_MASK = (1 << TCP_LISTEN) | (1 << TCP_CLOSE)
ALL_MASK = 0xFFF

_HDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI48x")
_ATTR = struct.Struct("=HH")
_OP = struct.Struct("=BBH")
# inet_diag_msg: family, state, timer, retrans; sockid (ports big-endian, addresses, interface,
# cookie); expires, rqueue, wqueue, uid, inode.
_MSG = struct.Struct("=BBxxHH16s16sI8x12xII")
_MSG_SIZE = 72
_SWAP_PORTS = sys.byteorder == "little"
_RECV_SIZE = 1 << 16


def _bytecode(lo: int, hi: int) -> bytes:
    """inet_diag bytecode accepting local ports lo..hi. Each test op is followed by an op whose
    `no` field carries the port; `yes` steps to the next test, `no` jumps past the end (reject)."""
    if lo == hi:
        return _OP.pack(INET_DIAG_BC_S_EQ, 8, 12) + _OP.pack(0, 0, lo)
    return (_OP.pack(INET_DIAG_BC_S_GE, 8, 20) + _OP.pack(0, 0, lo)
            + _OP.pack(INET_DIAG_BC_S_LE, 8, 12) + _OP.pack(0, 0, hi))


def _request(family: int, protocol: int, states: int, seq: int,
             ports: tuple[int, int] | None) -> bytes:
    body = _REQ.pack(family, protocol, 0, 0, states)
    if ports is not None:
        code = _bytecode(*ports)
        body += _ATTR.pack(4 + len(code), INET_DIAG_REQ_BYTECODE) + code
    return _HDR.pack(16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def open_socket():
    """A sock_diag netlink socket (OSError where the kernel or a sandbox does not allow one)."""
    return _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)


def dump(transports: tuple[str, ...] = ("tcp", "udp"), families: tuple[str, ...] = ("ipv4", "ipv6"),
         *, everything: bool = False, ports: tuple[int, int] | None = None,
         nl=None) -> list[Socket]:
    """The sockets of this network namespace: listening TCP and unconnected UDP (what ss -l
    shows), or with everything=True every state (what ss -a shows). ports=(lo, hi) keeps only
    sockets whose local port is in that range."""
    own = nl is None
    if own:
        nl = open_socket()
    try:
        out: list[Socket] = []
        seq = 0
        for transport in transports:
            for family in families:
                seq += 1
                nl.send(_request(FAMILIES[family], PROTOCOLS[transport],
                                 ALL_MASK if everything else LISTENING_MASK, seq, ports))
                _receive(nl, seq, transport, family, out)
        return out
    finally:
        if own:
            nl.close()


def _receive(nl, seq: int, transport: str, family: str, out: list[Socket]) -> None:
    buf = bytearray(_RECV_SIZE)
    view = memoryview(buf)
    unpack_hdr = _HDR.unpack_from
    unpack_msg = _MSG.unpack_from
    unpack_attr = _ATTR.unpack_from
    ntop = _socket.inet_ntop
    af = FAMILIES[family]
    addr_len = 4 if af == AF_INET else 16
    is_v6 = af == AF_INET6
    names: dict[bytes, str] = {}
    interfaces: dict[int, str | None] = {}
    states = STATE_NAMES
    swap = _SWAP_PORTS
    append = out.append
    while True:
        n = nl.recv_into(buf)
        off = 0
        while off + 16 <= n:
            length, mtype, _flags, mseq, _pid = unpack_hdr(buf, off)
            if length < 16:
                return
            if mseq != seq:
                off += (length + 3) & ~3
                continue
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                errno = -struct.unpack_from("=i", buf, off + 16)[0]
                if errno:
                    raise OSError(errno, f"sock_diag {transport}/{family}: {_strerror(errno)}")
                return
            if mtype == SOCK_DIAG_BY_FAMILY and length >= 16 + _MSG_SIZE:
                (_fam, state, sport, dport, src, dst, ifindex, uid,
                 inode) = unpack_msg(buf, off + 16)
                if swap:
                    sport = ((sport & 0xFF) << 8) | (sport >> 8)
                    dport = ((dport & 0xFF) << 8) | (dport >> 8)
                raw = src[:addr_len]
                local = names.get(raw)
                if local is None:
                    local = names[raw] = ntop(af, raw)
                if dport == 0 and (state == TCP_LISTEN or state == TCP_CLOSE):
                    remote = dport = None  # a listener has no peer
                else:
                    raw = dst[:addr_len]
                    remote = names.get(raw)
                    if remote is None:
                        remote = names[raw] = ntop(af, raw)
                v6only = None
                if is_v6:
                    pos, end = off + 16 + _MSG_SIZE, off + length
                    while pos + 4 <= end:
                        alen, atype = unpack_attr(buf, pos)
                        if alen < 4:
                            break
                        if atype == INET_DIAG_SKV6ONLY:
                            v6only = view[pos + 4] != 0
                            break
                        pos += (alen + 3) & ~3
                interface = None
                if ifindex:
                    interface = interfaces.get(ifindex, "")
                    if interface == "":
                        interface = interfaces[ifindex] = _ifname(ifindex)
                # positional: this runs once per socket, 10,000 times on a busy server
                append(Socket(transport, family, local, sport, states.get(state) or str(state),
                              remote, dport, interface, v6only, inode, uid))
            off += (length + 3) & ~3
        if n == 0:
            return


def _ifname(index: int) -> str:
    try:
        return _socket.if_indextoname(index)
    except OSError:
        return str(index)  # the device went away since; the index still tells them apart


def _strerror(errno: int) -> str:
    return os.strerror(errno)
