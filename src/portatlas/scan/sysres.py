"""Operating-system resources a scan leans on: file descriptors, ICMP error queues, a poller."""

from __future__ import annotations

import select
import selectors
import socket
import struct
import sys
from typing import NamedTuple

try:
    import resource
except ImportError:  # not on this platform
    resource = None  # type: ignore[assignment]

# Linux constants Python 3.11 does not export
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")

_ERRQUEUE_FLAGS = int(MSG_ERRQUEUE) | int(socket.MSG_DONTWAIT)  # plain int: enum `|` is slow
_RECVERR_LEVELS = ((int(socket.SOL_IP), IP_RECVERR), (SOL_IPV6, IPV6_RECVERR))

LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST: no TIME_WAIT pile-up on our side


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit); returns
    the soft limit now in force. Scans need one descriptor per outstanding probe."""
    if resource is None:
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else wanted


def enable_recverr(sock: socket.socket, family: int) -> bool:
    """Ask the kernel to queue ICMP errors with their type and code (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
        return True
    except OSError:
        return False


class IcmpError(NamedTuple):
    """One ICMP error the kernel queued on a socket (IP_RECVERR)."""

    origin: int               # SO_EE_ORIGIN_ICMP or SO_EE_ORIGIN_ICMP6
    icmp_type: int
    code: int
    dest: tuple | None        # the sockaddr of the datagram or SYN it answers
    offender: str | None      # who sent it: the target itself, a router on the way, or this
                              # machine for a failed ARP/ND; None when the kernel gave none

    @property
    def dest_port(self) -> int | None:
        return None if self.dest is None else self.dest[1]


_new = tuple.__new__


def read_icmp_error(sock: socket.socket) -> IcmpError | None:
    """The next queued ICMP error of `sock`, or None."""
    try:
        _, ancdata, _, addr = sock.recvmsg(0, 512, _ERRQUEUE_FLAGS)
    except OSError:  # BlockingIOError: nothing queued (the usual case)
        return None
    for level, kind, data in ancdata:
        if (level, kind) in _RECVERR_LEVELS \
                and len(data) >= _EXTENDED_ERR.size:
            _errno, origin, icmp_type, code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
            # tuple.__new__: half the cost of IcmpError(...), once per port of a REJECT sweep
            return _new(IcmpError, (origin, icmp_type, code, addr,
                                    _offender(data[_EXTENDED_ERR.size:])))
    return None


def _offender(raw: bytes) -> str | None:
    """SO_EE_OFFENDER: the sockaddr that follows struct sock_extended_err."""
    if len(raw) < 8:
        return None
    family = int.from_bytes(raw[:2], sys.byteorder)
    try:
        if family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, raw[4:8])
        if family == socket.AF_INET6 and len(raw) >= 24:
            return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    except (OSError, ValueError):
        return None
    return None


def grow_rcvbuf(sock: socket.socket, size: int) -> None:
    """A receive buffer of `size` bytes: beyond the system maximum as root (SO_RCVBUFFORCE),
    else as large as the system allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass


_SO_RCVBUFFORCE = 33
_SO_ATTACH_FILTER = 26


def only_to_port(sock: socket.socket, port: int, ip_header: bool = True) -> None:
    """A classic BPF filter: the raw TCP socket gets only segments to our source port `port`,
    so the kernel, not Python, drops everything else (other scans, other workers, the port
    probes of the same loop). `ip_header`: the socket's packets start with an IPv4 header."""
    import ctypes  # ~5 ms to import; raw sockets only (--syn, discovery as root)

    if ip_header:
        insns = [(0xB1, 0, 0, 0),      # ldxb 4*([0]&0xf)   x = IP header length
                 (0x48, 0, 0, 2)]      # ldh [x+2]          destination port
    else:
        insns = [(0x28, 0, 0, 2)]      # ldh [2]            destination port
    insns += [(0x15, 0, 1, port),      # jeq #port
              (0x06, 0, 0, 0xFFFF),    # ret #65535         keep
              (0x06, 0, 0, 0)]         # ret #0             drop
    code = b"".join(struct.pack("HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = struct.pack("HL", len(insns), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, prog)
    except OSError:
        pass  # no filter: Python checks the port anyway


class Poller:
    """Readiness for many sockets: epoll on Linux, the selectors module elsewhere.

    `arm(fd, write)` asks for one notification (one-shot), `poll(timeout)` returns ready fds.
    """

    def __init__(self) -> None:
        self._epoll = getattr(select, "epoll", None)
        self._known: set[int] = set()
        self._persistent: set[int] = set()
        if self._epoll is not None:
            self._ep = select.epoll()
            self._in = select.EPOLLIN | select.EPOLLONESHOT
            self._out = select.EPOLLOUT | select.EPOLLONESHOT
        else:
            self._sel = selectors.DefaultSelector()

    def arm(self, fd: int, write: bool = True) -> None:
        if self._epoll is not None:
            mask = self._out if write else self._in
            if fd in self._known:
                self._ep.modify(fd, mask)
            else:
                self._ep.register(fd, mask)
                self._known.add(fd)
        else:
            ev = selectors.EVENT_WRITE if write else selectors.EVENT_READ
            if fd in self._known:
                self._sel.modify(fd, ev)
            else:
                self._sel.register(fd, ev)
                self._known.add(fd)

    def persistent(self, fd: int) -> None:
        """Level-triggered read interest that stays (for a shared UDP socket)."""
        if self._epoll is not None:
            self._ep.register(fd, select.EPOLLIN | select.EPOLLERR)
        else:
            self._sel.register(fd, selectors.EVENT_READ)
        self._persistent.add(fd)

    def forget(self, fd: int) -> None:
        """Call just before closing a registered socket (its fd number will be reused).
        epoll drops a closed descriptor by itself, so only the bookkeeping changes there."""
        if fd in self._known:
            self._known.discard(fd)
            if self._epoll is None:
                try:
                    self._sel.unregister(fd)
                except (KeyError, ValueError):
                    pass

    def poll(self, timeout: float) -> list[int]:
        timeout = max(0.0, timeout)
        if self._epoll is not None:
            try:
                return [fd for fd, _ in self._ep.poll(timeout)]
            except InterruptedError:
                return []
        ready = self._sel.select(timeout)
        out = []
        for key, _ in ready:
            out.append(key.fd)
            if key.fd in self._known:  # emulate one-shot
                self._sel.unregister(key.fd)
                self._known.discard(key.fd)
        return out

    def close(self) -> None:
        if self._epoll is not None:
            self._ep.close()
        else:
            self._sel.close()
