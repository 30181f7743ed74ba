"""Where a target lies from here: this machine, a directly attached link, behind a router,
or nowhere (no route). Read from the kernel's routing tables in /proc at run time (of this
thread's network namespace), longest prefix first, lowest metric on ties.

Policy routing (ip rule) is not followed: the main table decides. A wrong guess costs only
the choice of discovery probes (ARP/ND on a link, ICMP and TCP elsewhere), never a port's
state: a target that does not answer ARP on a link it is not on is reported down with the
reason "no ARP reply", and -Pn scans it anyway.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from typing import NamedTuple

LOCAL, LINK, ROUTED, NO_ROUTE = "local", "link", "routed", "no-route"
_RTF_GATEWAY, _RTF_REJECT = 0x2, 0x200


def _proc_net(name: str) -> str:
    # /proc/net follows the thread group leader's namespace; thread-self follows ours
    for base in ("/proc/thread-self/net", "/proc/self/net", "/proc/net"):
        path = os.path.join(base, name)
        if os.path.exists(path):
            return path
    return os.path.join("/proc/net", name)


def _read(name: str) -> list[str]:
    try:
        with open(_proc_net(name), encoding="ascii", errors="replace") as f:
            return f.read(8 << 20).splitlines()
    except OSError:
        return []


@dataclass(frozen=True)
class Route:
    kind: str          # LOCAL, LINK, ROUTED or NO_ROUTE
    ifname: str | None
    # an IPv6 address that is its on-link prefix with every host bit zero: the Subnet-Router
    # anycast address (RFC 4291 2.6.1), whose holders delay their neighbour advertisements
    subnet_anycast: bool = False


class _Entry(NamedTuple):
    """One main-table route, v4 or v6 (network and mask as integers)."""

    prefix_len: int
    net: int
    mask: int
    metric: int
    ifname: str
    gateway: bool
    reject: bool


class RouteTable:
    """IPv4 and IPv6 main-table routes and this machine's own addresses, read once."""

    def __init__(self) -> None:
        self.v4: list[_Entry] = []
        for line in _read("route")[1:]:
            f = line.split()
            if len(f) < 8:
                continue
            try:
                dest = int.from_bytes(bytes.fromhex(f[1]), "little")
                gateway = int(f[2], 16)
                flags = int(f[3], 16)
                metric = int(f[6])
                mask = int.from_bytes(bytes.fromhex(f[7]), "little")
            except ValueError:
                continue
            if flags & _RTF_REJECT:
                continue
            plen = bin(mask).count("1")
            self.v4.append(_Entry(plen, dest & mask, mask, metric, f[0], bool(gateway), False))
        self.v6: list[_Entry] = []
        for line in _read("ipv6_route"):
            f = line.split()
            if len(f) < 10:
                continue
            try:
                dest = int(f[0], 16)
                plen = int(f[1], 16)
                nexthop = int(f[4], 16)
                metric = int(f[5], 16)
                flags = int(f[8], 16)
            except ValueError:
                continue
            mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1) if plen else 0
            self.v6.append(_Entry(plen, dest & mask, mask, metric, f[9],
                                  bool(nexthop) or bool(flags & _RTF_GATEWAY),
                                  bool(flags & _RTF_REJECT)))
        for table in (self.v4, self.v6):
            table.sort(key=lambda r: (-r.prefix_len, r.metric))  # longest prefix, then metric
        self.local4 = _local_v4()
        self.local6 = _local_v6()

    def lookup(self, address: str, family: int, scope_id: int = 0) -> Route:
        if family == socket.AF_INET6:
            ip6 = ipaddress.IPv6Address(address)
            if ip6.is_loopback or address in self.local6:
                return Route(LOCAL, "lo")
            if ip6.is_link_local:
                name = _ifname(scope_id)
                return Route(LINK, name) if name else Route(NO_ROUTE, None)
            value = int(ip6)
            return self._match(self.v6, value, anycast=True)
        ip4 = ipaddress.IPv4Address(address)
        if ip4.is_loopback or address in self.local4:
            return Route(LOCAL, "lo")
        return self._match(self.v4, int(ip4))

    @staticmethod
    def _match(table: list[_Entry], value: int, anycast: bool = False) -> Route:
        for r in table:
            if value & r.mask == r.net:
                if r.reject:
                    return Route(NO_ROUTE, None)
                if r.ifname == "lo":
                    return Route(LOCAL, "lo")
                if r.gateway:
                    return Route(ROUTED, r.ifname)
                return Route(LINK, r.ifname, anycast and value == r.net and r.prefix_len < 128)
        return Route(NO_ROUTE, None)


def _ifname(index: int) -> str | None:
    try:
        return socket.if_indextoname(index) if index else None
    except OSError:
        return None


def _local_v4() -> set[str]:
    """This machine's IPv4 addresses: the 'host LOCAL' leaves of /proc/net/fib_trie."""
    out: set[str] = set()
    last = None
    for line in _read("fib_trie"):
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last:
            out.add(last)
    return out


def _local_v6() -> set[str]:
    out: set[str] = set()
    for line in _read("if_inet6"):
        f = line.split()
        if f:
            try:
                out.add(str(ipaddress.IPv6Address(int(f[0], 16))))
            except ValueError:
                continue
    return out


_OWN: set[str] = set()
_OWN_READ = float("-inf")
OWN_MAX_AGE = 10.0  # seconds: a long-running process (web, cluster worker) sees new addresses


def own_addresses() -> set[str]:
    """This machine's addresses, v4 and v6 (read again when older than OWN_MAX_AGE)."""
    global _OWN, _OWN_READ
    now = time.monotonic()
    if now - _OWN_READ > OWN_MAX_AGE:
        _OWN, _OWN_READ = _local_v4() | _local_v6(), now
    return _OWN


def from_this_machine(offender: str | None) -> bool:
    """An ICMP error sent by this machine itself (or by nobody named): our own ARP/ND for
    the target failed, nothing on the way said anything."""
    return offender is None or offender in own_addresses()


def source_address(address: str, family: int, scope_id: int = 0) -> str | None:
    """The address this machine would send from to reach `address` (no packet is sent)."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.connect((address, 9, 0, scope_id) if family == socket.AF_INET6 else (address, 9))
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
