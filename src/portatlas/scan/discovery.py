"""Host discovery: which of the named addresses are up, found in the scan's own event loop.

Public API (an engine stage; library users, the CLI and a cluster worker running one shard
all use the same calls):

    opts = DiscoveryOptions()                     # enabled=False is -Pn: every host is up
    stage = Discovery(hosts, opts, timing)        # hosts: [portatlas.scan.targets.Host]
    # driven by any event loop: watch stage.fileno() for reading, then
    stage.on_readable(now); stage.step(now)       # step() sends what is due, expires waits
    for index, status in stage.settled(): ...     # HostStatus per host, as soon as known
    stage.next_wakeup(now), stage.done, stage.close()
    discover(hosts, opts, timing) -> [HostStatus] # the stage in a loop of its own (-sn)

The TCP connect engine runs the stage inside its loop (scan/tcp.py): a host's ports are
probed as soon as it is known to be up, and a host found down is never probed. Other
engines (raw SYN, UDP) get the hosts that `discover()` found up. `host_indices` lets a
caller that scans a shard keep the indices of the whole target list.

How a host is asked (nmap's default probes, all hosts at once):
  * with raw sockets (root or CAP_NET_RAW), target on a directly attached Ethernet link:
    ARP request (IPv4) or neighbour solicitation (IPv6); a reply gives the MAC address;
  * with raw sockets, target behind a router: ICMP echo and timestamp (IPv6: echo), TCP SYN
    to 443 and TCP ACK to 80; any reply, reset or SYN-ACK means up;
  * without raw sockets: TCP connect() to 80 and 443; an accept or a reset means up;
  * a target that is this machine is up at once; one without a route is down.
An ICMP unreachable about our probe sent by the target itself (its firewall's REJECT) means
up: the host answered. One sent by a router (or by this machine after a failed ARP/ND)
means down, as does silence after every try. See docs/scan.md ("Host discovery").
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from portatlas.scan import discovery_packets as P
from portatlas.scan.engine import error_reason, icmp_reason
from portatlas.scan.hoststatus import DOWN, UNKNOWN, UP, HostStatus, assumed_up, describe  # noqa: F401
from portatlas.scan.neighbours import neighbour_table
from portatlas.scan.oui import vendor_of
from portatlas.scan.results import REASONS
from portatlas.scan.routes import LINK, LOCAL, NO_ROUTE, RouteTable, from_this_machine, \
    source_address
from portatlas.scan.sysres import LINGER_RESET, enable_recverr, grow_rcvbuf, only_to_port, \
    read_icmp_error
from portatlas.scan.timing import HostTiming, RateLimiter, TimingOptions

# Waits after each ARP/ND try on a link (seconds). A wired neighbour answers in well under a
# millisecond, even when busy (the kernel replies from its receive path); a wireless one in
# power save within a beacon interval or three (100-300 ms), which the later, longer waits
# cover. Three tries forgive two lost frames. A dead on-link host is settled after their
# sum, 0.75 s; when replies are slow, every wait grows to ten times the slowest seen.
LINK_WAITS = (0.15, 0.25, 0.35)
# A Subnet-Router anycast address is answered after a random delay of up to
# MAX_ANYCAST_DELAY_TIME, 1 s (RFC 4861 7.2.7; Linux: up to its proxy_delay, 0.8 s): the last
# wait for one reaches past it, or a router holding it would be missed now and then.
ANYCAST_LAST_WAIT = 1.1
ROUTED_TRIES = 2           # echo/timestamp/SYN/ACK or connect rounds for a routed host
MIN_ROUTED_WAIT = 0.3      # floor of the wait for a routed answer (scheduler jitter)
MAX_ACTIVE_RAW = 4096      # hosts being asked at once with raw probes
SEND_BURST = 512           # probes sent per step before answers are read again

ARP_TRIES = len(LINK_WAITS)
_IPV6_CHECKSUM = 7
_ICMP6_FILTER = 1
_ICMP_FILTER = 1
_SOL_RAW = 255


@dataclass
class DiscoveryOptions:
    """enabled=False is -Pn (every target up, reason "user-set"). raw=None uses raw sockets
    when this process may open them (root, CAP_NET_RAW) and TCP connects otherwise."""

    enabled: bool = True
    raw: bool | None = None
    tcp_ports: tuple[int, int] = (80, 443)
    link_waits: tuple[float, ...] = LINK_WAITS
    routed_tries: int = ROUTED_TRIES
    min_routed_wait: float = MIN_ROUTED_WAIT

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "raw": self.raw, "tcp_ports": list(self.tcp_ports)}


class _ArpSocket(NamedTuple):
    """The AF_PACKET socket that asks on one interface, with what an ARP request says of us."""

    sock: socket.socket
    mac: bytes
    src: bytes       # our IPv4 address on the link (zeros when it has none)


# per-host bookkeeping ----------------------------------------------------------------------
class _Target:
    __slots__ = ("index", "host", "kind", "ifname", "packed", "tries", "deadline", "sent",
                 "settled", "socks", "via", "anycast")

    def __init__(self, index: int, host, kind: str, ifname: str | None, via: str) -> None:
        self.index = index
        self.host = host
        self.kind = kind          # LINK, ROUTED, LOCAL, NO_ROUTE
        self.ifname = ifname
        self.via = via            # "arp", "nd", "raw" or "connect"
        self.packed = socket.inet_pton(host.family, host.address)
        self.tries = 0
        self.deadline = 0.0
        self.sent = 0.0
        self.settled = False
        self.socks: list = []     # connect mode: [(socket, port)]
        self.anycast = False      # a Subnet-Router anycast address (ND answers come late)


def can_use_raw() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return True
    except OSError:
        return False


class Discovery:
    """The discovery stage for `hosts` (see the module docstring for the protocol)."""

    def __init__(self, hosts: list, opts: DiscoveryOptions | None = None,
                 timing: TimingOptions | None = None, *,
                 host_indices: list[int] | None = None) -> None:
        self.opts = opts or DiscoveryOptions()
        base = timing or TimingOptions()
        # one estimator for the whole stage: discovery answers are few per host
        self.topts = TimingOptions(initial_timeout=base.initial_timeout,
                                   min_timeout=max(self.opts.min_routed_wait, base.min_timeout),
                                   max_timeout=max(base.max_timeout, self.opts.min_routed_wait),
                                   max_concurrency=base.max_concurrency)
        self.timing = HostTiming(self.topts)
        self.rate = RateLimiter(base.rate, time.monotonic()) if base.rate else None
        self.max_active = MAX_ACTIVE_RAW
        self.raw = self.opts.raw if self.opts.raw is not None else can_use_raw()
        if not self.raw:
            # two sockets per host being asked; leave room for the port probes
            self.max_active = max(8, base.max_concurrency // 4)
        self.out: list[tuple[int, HostStatus]] = []
        self.ep = select.epoll()
        self.socks: dict[int, tuple[str, Any]] = {}   # fd -> (kind, socket or (socket, target, port))
        self.arp_socks: dict[str, _ArpSocket] = {}  # interface name -> its socket
        self.macs: dict[str, bytes] = {}
        self.icmp4 = self.icmp6 = self.tcp4 = self.tcp6 = None
        self.reserve: list[socket.socket] = []
        self.sport = 0
        self.ident = int.from_bytes(os.urandom(2), "big") or 1
        self.seq = 0
        self.by_addr: dict[tuple[int, bytes], _Target] = {}
        self.queue: list[_Target] = []     # not asked yet (reversed: pop() takes the next)
        self.waiting: list[_Target] = []   # asked, waiting for an answer or the deadline
        self.unsettled = 0
        self.slowest_link = 0.0   # the slowest ARP/ND reply so far (seconds)
        self.asking = 0           # hosts asked at least once and not settled
        self._next = 0.0          # earliest deadline among self.waiting
        self.notes: list[str] = []
        self.src_cache: dict[tuple[int, str], bytes | None] = {}
        self._plan(hosts, host_indices)

    # planning ------------------------------------------------------------------------------
    def _plan(self, hosts: list, host_indices: list[int] | None) -> None:
        routes = RouteTable()
        targets = []
        for i, host in enumerate(hosts):
            index = host_indices[i] if host_indices else i
            route = routes.lookup(host.address, host.family, host.scope_id)
            via = "connect"
            if route.kind == LINK and self.raw and self._ethernet(route.ifname):
                via = "arp" if host.family == socket.AF_INET else "nd"
            elif self.raw:
                via = "raw"
            t = _Target(index, host, route.kind, route.ifname, via)
            t.anycast = route.subnet_anycast
            if route.kind == LOCAL:
                self._settle(t, HostStatus(UP, "localhost-response", "local"))
                continue
            if route.kind == NO_ROUTE:
                self._settle(t, HostStatus(DOWN, "no-route", "none"))
                continue
            targets.append(t)
            self.by_addr[(host.family, t.packed)] = t
            self.unsettled += 1
        self.queue = targets[::-1]

    def _ethernet(self, ifname: str | None) -> bool:
        """Our MAC on `ifname` when it is an Ethernet-like link (ARP/ND make sense)."""
        if not ifname:
            return False
        if ifname in self.macs:
            return bool(self.macs[ifname])
        mac = b""
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(P.ETH_P_ARP))
            try:
                s.bind((ifname, P.ETH_P_ARP))
                _, _, _, hatype, addr = s.getsockname()
                if hatype == 1 and len(addr) == 6 and addr != b"\0" * 6:
                    mac = addr
            finally:
                s.close()
        except (OSError, AttributeError):
            mac = b""
        self.macs[ifname] = mac
        return bool(mac)

    # the event-loop protocol ----------------------------------------------------------------
    def fileno(self) -> int:
        return self.ep.fileno()

    @property
    def done(self) -> bool:
        return self.unsettled == 0 and not self.out

    def settled(self) -> list[tuple[int, HostStatus]]:
        out, self.out = self.out, []
        return out

    def next_wakeup(self, now: float) -> float:
        if self.unsettled == 0:
            return 3600.0
        wait = 0.25
        if self.queue and self.asking < self.max_active:
            wait = 0.0 if self.rate is None else min(wait, self.rate.wait_time())
        if self.waiting:
            wait = min(wait, max(0.0, self._next - now))
        return wait

    def step(self, now: float) -> None:
        """Send what is due (new hosts, retries) and settle hosts whose last wait passed."""
        if self.unsettled == 0:
            return
        sent = 0
        if self.waiting and now >= self._next:
            # a last look before giving up on anyone: answers may be waiting unread (this
            # process was not scheduled, or the loop was busy with port probes)
            self.on_readable(now)
            if self.unsettled == 0:
                return
            still = []
            retry = []
            for t in self.waiting:
                if t.settled:
                    continue
                if t.deadline > now:
                    still.append(t)
                elif t.tries < self._tries(t):
                    retry.append(t)
                else:
                    self._close_target(t)
                    self._settle(t, HostStatus(DOWN, "no-response", _down_method(t)))
            self.waiting = still
            self._next = min((t.deadline for t in still), default=now + 3600)
            for t in retry:
                if not self._send(t, now):
                    self.queue.append(t)  # rate limit: asked again later
                    continue
                sent += 1
        while self.queue and self.asking < self.max_active and sent < SEND_BURST:
            t = self.queue.pop()
            if t.settled:
                continue
            if not self._send(t, now):
                self.queue.append(t)
                break
            sent += 1
        if self.unsettled == 0:
            self._close_sockets()

    def on_readable(self, now: float) -> None:
        for fd, events in self.ep.poll(0):
            entry = self.socks.get(fd)
            if entry is None:
                continue
            kind, obj = entry
            if kind == "arp":
                self._read_arp(obj, now)
            elif kind == "icmp4":
                self._read_icmp4(obj, now)
            elif kind == "icmp6":
                self._read_icmp6(obj, now)
            elif kind in ("tcp4", "tcp6"):
                self._read_tcp(obj, kind == "tcp6", now)
            elif kind == "connect":
                self._connected(obj, now)
        if self.unsettled == 0:
            self._close_sockets()

    def close(self) -> None:
        for t in self.waiting:
            self._close_target(t)
        self._close_sockets()
        try:
            self.ep.close()
        except OSError:
            pass

    # sending -------------------------------------------------------------------------------
    def _tries(self, t: _Target) -> int:
        return len(self.opts.link_waits) if t.via in ("arp", "nd") else max(1, self.opts.routed_tries)

    def _wait(self, t: _Target) -> float:
        if t.via in ("arp", "nd"):
            waits = self.opts.link_waits
            wait = max(waits[min(t.tries - 1, len(waits) - 1)], min(1.0, 10 * self.slowest_link))
            if t.anycast and t.tries >= len(waits):
                wait = max(wait, ANYCAST_LAST_WAIT)
            return wait
        return self.timing.timeout

    def _send(self, t: _Target, now: float) -> bool:
        packets = {"arp": 1, "nd": 1, "raw": 4 if t.host.family == socket.AF_INET else 3,
                   "connect": len(self.opts.tcp_ports)}[t.via]
        if self.rate is not None:
            for _ in range(packets):
                if not self.rate.take(now):
                    return False
        try:
            if t.via == "arp":
                self._send_arp(t)
            elif t.via == "nd":
                self._send_nd(t)
            elif t.via == "raw":
                self._send_raw(t)
            else:
                self._send_connect(t, now)
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EAGAIN, errno.EMFILE, errno.ENFILE):
                return False
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                self._close_target(t)
                self._settle(t, HostStatus(DOWN, "no-route", "none"))
                return True
            if exc.errno in (errno.EPERM, errno.EACCES):
                # raw probes refused (a local firewall, a missing capability): fall back
                if t.via != "connect":
                    t.via = "connect"
                    return self._send(t, now)
            raise
        if t.tries == 0:
            self.asking += 1
        t.tries += 1
        t.sent = time.monotonic()  # a burst of sends takes a while: each its own start
        t.deadline = now + self._wait(t)
        if not self.waiting or t.deadline < self._next:
            self._next = t.deadline
        self.waiting.append(t)
        return True

    def _register(self, sock: socket.socket, kind: str, obj: Any = None) -> None:
        sock.setblocking(False)
        self.socks[sock.fileno()] = (kind, obj if obj is not None else sock)
        self.ep.register(sock.fileno(), select.EPOLLIN)

    def _source(self, t: _Target) -> bytes | None:
        key = (t.host.family, t.ifname or "")
        if key not in self.src_cache:
            src = source_address(t.host.address, t.host.family, t.host.scope_id)
            self.src_cache[key] = socket.inet_pton(t.host.family, src) if src else None
        return self.src_cache[key]

    def _send_arp(self, t: _Target) -> None:
        entry = self.arp_socks.get(t.ifname)
        if entry is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(P.ETH_P_ARP))
            s.bind((t.ifname, P.ETH_P_ARP))
            grow_rcvbuf(s, 4 << 20)
            src = self._source(t) or b"\0\0\0\0"
            entry = _ArpSocket(s, self.macs[t.ifname], src)
            self.arp_socks[t.ifname] = entry
            self._register(s, "arp")
        entry.sock.sendto(P.arp_request(entry.mac, entry.src, t.packed),
                          (t.ifname, P.ETH_P_ARP, 0, 0, P.BROADCAST_MAC))

    def _icmp6_sock(self) -> socket.socket:
        if self.icmp6 is None:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            grow_rcvbuf(s, 4 << 20)
            # pass only what discovery reads: advertisements, echo replies, errors
            block = bytearray(b"\xff" * 32)
            for kind in (P.ND_ADVERT, P.ICMP6_ECHO_REPLY, P.ICMP6_UNREACH, 3):
                block[kind >> 3] &= ~(1 << (kind & 7)) & 0xFF
            try:
                s.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, _icmp6_filter(block))
            except OSError:
                pass
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 64)
            self.icmp6 = s
            self._register(s, "icmp6")
        return self.icmp6

    def _send_nd(self, t: _Target) -> None:
        s = self._icmp6_sock()
        index = socket.if_nametoindex(t.ifname)
        s.sendto(P.neighbor_solicit(t.packed, self.macs[t.ifname]),
                 (socket.inet_ntop(socket.AF_INET6, P.solicited_node(t.packed)), 0, 0, index))

    def _reserve_port(self) -> None:
        if self.sport:
            return
        # a bound, never-listening socket keeps the port ours; the kernel resets the SYN-ACKs
        for family in (socket.AF_INET6, socket.AF_INET):
            try:
                r = socket.socket(family, socket.SOCK_STREAM)
                if family == socket.AF_INET6:
                    r.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                r.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
                self.reserve.append(r)
                self.sport = r.getsockname()[1]
                return
            except OSError:
                continue

    def _send_raw(self, t: _Target) -> None:
        self._reserve_port()
        self.seq = (self.seq + 1) & 0xFFFF
        seq32 = int.from_bytes(os.urandom(4), "big")
        if t.host.family == socket.AF_INET:
            if self.icmp4 is None:
                self.icmp4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                grow_rcvbuf(self.icmp4, 4 << 20)
                keep = (P.ICMP_ECHO_REPLY, P.ICMP_TIMESTAMP_REPLY, P.ICMP_UNREACH, P.ICMP_TIME_EXCEEDED)
                mask = 0xFFFFFFFF
                for kind in keep:
                    mask &= ~(1 << kind)
                try:
                    self.icmp4.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", mask))
                except OSError:
                    pass
                self._register(self.icmp4, "icmp4")
                self.tcp4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
                grow_rcvbuf(self.tcp4, 4 << 20)
                only_to_port(self.tcp4, self.sport, ip_header=True)
                self._register(self.tcp4, "tcp4")
            dest = (t.host.address, 0)
            src = self._source(t)
            self.icmp4.sendto(P.icmp_echo(self.ident, self.seq), dest)
            self.icmp4.sendto(P.icmp_timestamp(self.ident, self.seq,
                                               int(time.time() % 86400 * 1000)), dest)
            if src is not None:
                self.tcp4.sendto(P.tcp_probe(self.sport, 443, seq32, 0, P.TCP_SYN, src, t.packed), dest)
                self.tcp4.sendto(P.tcp_probe(self.sport, 80, seq32, seq32 ^ 0x5A5A5A5A, P.TCP_ACK,
                                             src, t.packed), dest)
            return
        s = self._icmp6_sock()
        if self.tcp6 is None:
            self.tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP)
            self.tcp6.setsockopt(socket.IPPROTO_IPV6, _IPV6_CHECKSUM, 16)
            grow_rcvbuf(self.tcp6, 4 << 20)
            only_to_port(self.tcp6, self.sport, ip_header=False)
            self._register(self.tcp6, "tcp6")
        dest = (t.host.address, 0, 0, t.host.scope_id)
        s.sendto(P.icmp_echo(self.ident, self.seq, v6=True), dest)
        self.tcp6.sendto(P.tcp_probe(self.sport, 443, seq32, 0, P.TCP_SYN), dest)
        self.tcp6.sendto(P.tcp_probe(self.sport, 80, seq32, seq32 ^ 0x5A5A5A5A, P.TCP_ACK), dest)

    def _send_connect(self, t: _Target, now: float) -> None:
        self._close_target(t)
        for port in self.opts.tcp_ports:
            s = socket.socket(t.host.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            enable_recverr(s, t.host.family)
            r = s.connect_ex(t.host.sockaddr(port))
            t.socks.append((s, port))
            if r == errno.EINPROGRESS:
                self.socks[s.fileno()] = ("connect", (s, t, port))
                self.ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
            else:
                self._connect_result(t, s, port, r, now)
                if t.settled:
                    return

    # answers -------------------------------------------------------------------------------
    def _up(self, t: _Target | None, reason: str, method: str, now: float,
            mac: bytes | str | None = None) -> None:
        if t is None or t.settled:
            return
        rtt = now - t.sent if t.sent else None
        if rtt is not None and t.tries == 1:
            if t.via in ("arp", "nd"):
                self.slowest_link = max(self.slowest_link, rtt)
            else:
                self.timing.sample(rtt)
        if isinstance(mac, bytes):
            mac = P.format_mac(mac)
        # the vendor (a 50,000-line file) and, without raw sockets, the MAC from the ARP
        # table are looked up once at the end (annotate()), never in the scan's loop
        self._close_target(t)
        self._settle(t, HostStatus(UP, reason, method, mac, None, rtt))

    def _down(self, t: _Target | None, reason: str, method: str, by: str | None) -> None:
        if t is None or t.settled:
            return
        self._close_target(t)
        self._settle(t, HostStatus(DOWN, reason, method, by=by))

    def _settle(self, t: _Target, status: HostStatus) -> None:
        if not t.settled:
            t.settled = True
            if (t.host.family, t.packed) in self.by_addr:
                self.unsettled -= 1
                if t.tries:
                    self.asking -= 1
            self.out.append((t.index, status))

    def _read_arp(self, s: socket.socket, now: float) -> None:
        for _ in range(4096):
            try:
                data = s.recv(64)
            except OSError:
                return
            got = P.parse_arp_reply(data)
            if got is not None:
                t = self.by_addr.get((socket.AF_INET, got.address))
                if t is not None and t.via == "arp":
                    self._up(t, "arp-response", "arp", now, got.mac)

    def _read_icmp4(self, s: socket.socket, now: float) -> None:
        for _ in range(4096):
            try:
                pkt = s.recv(576)
            except OSError:
                return
            got = P.parse_icmp4(pkt, self.ident)
            if got is None:
                got = P.parse_icmp4(pkt, self.sport)  # an error quoting our TCP probe
                if got is None or got.kind != "error":
                    continue
            t = self.by_addr.get((socket.AF_INET, got.address))
            if got.kind == "reply":
                echo = got.icmp_type == P.ICMP_ECHO_REPLY
                self._up(t, "echo-reply" if echo else "timestamp-reply",
                         "icmp-echo" if echo else "icmp-timestamp", now)
            else:
                self._icmp_error(t, socket.inet_ntop(socket.AF_INET, pkt[12:16]), got.icmp_type,
                                 got.code, False, now)

    def _read_icmp6(self, s: socket.socket, now: float) -> None:
        for _ in range(4096):
            try:
                data, addr = s.recvfrom(1280)
            except OSError:
                return
            if data[:1] == bytes([P.ND_ADVERT]):
                advert = P.parse_neighbor_advert(data)
                if advert is not None:
                    t = self.by_addr.get((socket.AF_INET6, advert.address))
                    if t is not None and t.via == "nd":
                        self._up(t, "nd-response", "nd", now, advert.mac)
                continue
            got = P.parse_icmp6(data, self.ident)
            if got is None:
                got = P.parse_icmp6(data, self.sport)
                if got is None or got.kind != "error":
                    continue
            sender = addr[0].split("%")[0]
            if got.kind == "reply":
                t = self.by_addr.get((socket.AF_INET6, socket.inet_pton(socket.AF_INET6, sender)))
                self._up(t, "echo-reply", "icmp-echo", now)
            else:
                t = self.by_addr.get((socket.AF_INET6, got.address))
                self._icmp_error(t, sender, got.icmp_type, got.code, True, now)

    def _icmp_error(self, t: _Target | None, sender: str, icmp_type: int, code: int, v6: bool,
                    now: float) -> None:
        if t is None or t.settled:
            return
        _, reason = icmp_reason(icmp_type, code, v6)
        name = REASONS[reason]
        if sender == t.host.address:
            self._up(t, name, "icmp+tcp", now)   # the host itself answered
        elif name in ("host-unreach", "net-unreach", "admin-prohibited", "time-exceeded"):
            self._down(t, name, "icmp+tcp", sender)

    def _read_tcp(self, s: socket.socket, v6: bool, now: float) -> None:
        for _ in range(4096):
            try:
                pkt, addr = s.recvfrom(128)
            except OSError:
                return
            if v6:
                src = socket.inet_pton(socket.AF_INET6, addr[0].split("%")[0])
                seg = pkt
            else:
                ip = P.strip_ipv4(pkt)
                if ip is None:
                    continue
                src, seg = ip.source, ip.payload
            ans = P.parse_tcp_answer(seg, self.sport)
            if ans is None:
                continue
            port, flags = ans.port, ans.flags
            t = self.by_addr.get((socket.AF_INET6 if v6 else socket.AF_INET, src))
            if port not in (80, 443) or t is None:
                continue
            if flags & P.TCP_SYN and flags & P.TCP_ACK:
                self._up(t, "syn-ack", f"tcp-syn-{port}", now)
            elif flags & P.TCP_RST:
                self._up(t, "reset", "tcp-syn-443" if port == 443 else "tcp-ack-80", now)

    def _connected(self, obj: tuple, now: float) -> None:
        s, t, port = obj
        if t.settled:
            return
        r = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if r == 0 and not _connected_for_real(s):
            # woken early (a soft ICMP error is queued while the handshake goes on)
            r = errno.EHOSTUNREACH if _peek_icmp(s) else errno.EINPROGRESS
        if r == errno.EINPROGRESS:
            self.ep.modify(s.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
            return
        self._connect_result(t, s, port, r, now)

    def _connect_result(self, t: _Target, s: socket.socket, port: int, r: int, now: float) -> None:
        method = f"tcp-connect-{port}"
        if r in (0, errno.EISCONN, errno.ECONNRESET):
            self._up(t, "syn-ack", method, now)
        elif r == errno.ECONNREFUSED:
            icmp = read_icmp_error(s)
            if icmp is None or icmp.offender == t.host.address:
                self._up(t, "conn-refused" if icmp is None else "port-unreach", method, now)
            else:
                self._close_one(t, s)
        elif r in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM,
                   errno.ENONET, errno.EHOSTDOWN, errno.ENOPROTOOPT):
            icmp = read_icmp_error(s)
            by = icmp.offender if icmp is not None else None
            v6 = t.host.family == socket.AF_INET6
            if by is not None and by == t.host.address:
                _, reason = error_reason(icmp, v6)
                self._up(t, REASONS[reason], method, now)
                return
            if r in (errno.EACCES, errno.EPERM):
                self._close_one(t, s)   # our own firewall: says nothing about the host
                return
            reason = "net-unreach" if r == errno.ENETUNREACH else "host-unreach"
            if icmp is not None:
                _, code = error_reason(icmp, v6)
                reason = REASONS[code]
            local = from_this_machine(by)
            if local and t.kind == LINK:
                # the kernel's own ARP/ND failed: nobody has the address on the link
                self._down(t, "no-response", "arp" if t.host.family == socket.AF_INET else "nd", None)
            else:
                self._down(t, reason, "tcp-connect", by)
        else:
            self._close_one(t, s)

    # sockets -------------------------------------------------------------------------------
    def _close_one(self, t: _Target, s: socket.socket) -> None:
        self._forget(s)
        t.socks = [(x, p) for x, p in t.socks if x is not s]

    def _close_target(self, t: _Target) -> None:
        for s, _ in t.socks:
            self._forget(s)
        t.socks = []

    def _forget(self, s: socket.socket) -> None:
        fd = s.fileno()
        if fd >= 0 and fd in self.socks:
            del self.socks[fd]
            try:
                self.ep.unregister(fd)
            except OSError:
                pass
        s.close()

    def _close_sockets(self) -> None:
        for s in [self.icmp4, self.icmp6, self.tcp4, self.tcp6,
                  *(e.sock for e in self.arp_socks.values()), *self.reserve]:
            if s is not None:
                self._forget(s)
        self.icmp4 = self.icmp6 = self.tcp4 = self.tcp6 = None
        self.arp_socks = {}
        self.reserve = []


def _down_method(t: _Target) -> str:
    return {"arp": "arp", "nd": "nd", "raw": "icmp+tcp"}.get(t.via, "tcp-connect")


def _connected_for_real(s: socket.socket) -> bool:
    try:
        s.getpeername()
        return True
    except OSError:
        return False


def _peek_icmp(s: socket.socket) -> bool:
    try:
        s.recvmsg(0, 512, socket.MSG_ERRQUEUE | socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return True
    except OSError:
        return False


def _icmp6_filter(block: bytearray) -> bytes:
    """struct icmp6_filter: eight 32-bit words, bit (type & 31) of word (type >> 5) set =
    blocked, in host byte order."""
    words = []
    for w in range(8):
        value = 0
        for bit in range(32):
            kind = w * 32 + bit
            if block[kind >> 3] >> (kind & 7) & 1:
                value |= 1 << bit
        words.append(value)
    return struct.pack("8I", *words)


# a loop of its own -------------------------------------------------------------------------
def discover(hosts: list, opts: DiscoveryOptions | None = None,
             timing: TimingOptions | None = None, *, deadline: float | None = None,
             on_status=None) -> list[HostStatus]:
    """Run the stage alone (ping-only scans, engines that take a list of live hosts).
    Returns one HostStatus per host, in order; `on_status(index, status)` hears each as it
    is settled. Ctrl-C propagates (the caller keeps what it heard)."""
    opts = opts or DiscoveryOptions()
    if not opts.enabled:
        return [assumed_up() for _ in hosts]
    result: list[HostStatus | None] = [None] * len(hosts)
    stage = Discovery(hosts, opts, timing)
    poll = select.poll()
    poll.register(stage.fileno(), select.POLLIN)
    try:
        while True:
            now = time.monotonic()
            stage.step(now)
            for index, status in stage.settled():
                result[index] = status
                if on_status is not None:
                    on_status(index, status)
            if stage.done:
                break
            if deadline is not None and now > deadline:
                break
            if poll.poll(stage.next_wakeup(time.monotonic()) * 1000):
                stage.on_readable(time.monotonic())
    finally:
        stage.close()
    out = [r or HostStatus(UNKNOWN, "unscanned", "none") for r in result]
    annotate(hosts, out)
    return out


def annotate(hosts: list, statuses: list[HostStatus | None]) -> None:
    """Fill in what discovery leaves for later: the MAC of a host found up by TCP connects
    (the kernel's neighbour table lists hosts on a link only, under their own address) and
    the vendor of every MAC."""
    table = None
    for host, st in zip(hosts, statuses):
        if st is None or st.state != UP:
            continue
        if st.mac is None and st.method.startswith("tcp-connect"):
            if table is None:
                table = neighbour_table()
            st.mac = table.get(host.address)
        if st.mac and st.vendor is None:
            st.vendor = vendor_of(st.mac)


def live(statuses: Iterable[HostStatus]) -> list[int]:
    return [i for i, s in enumerate(statuses) if s.state == UP]
