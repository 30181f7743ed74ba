"""What the evaluator needs to know about this machine besides its ruleset: interfaces, their
addresses and subnets, routes (where a DNATed packet goes out) and the forwarding switches.
Built from `ip -j addr` / `ip -j route` output (parse functions here, no I/O) or by hand in tests.
"""

from __future__ import annotations

import json
from typing import Any

from portatlas.exposure import addr


class Interface:
    __slots__ = ("name", "up", "loopback", "addresses")

    def __init__(self, name: str, *, up: bool = True, loopback: bool = False,
                 addresses: list[tuple[str, str, int]] | None = None) -> None:
        self.name = name
        self.up = up
        self.loopback = loopback
        # (family, address text, prefix length)
        self.addresses = addresses or []

    def subnets(self, family: str) -> addr.IntervalSet:
        pairs = []
        for fam, text, plen in self.addresses:
            if fam == family:
                pairs.extend(addr.parse_net(f"{text}/{plen}")[1])
        return addr.normalise(pairs)

    def __repr__(self) -> str:
        return f"Interface({self.name}, {self.addresses})"


class Machine:
    """Interfaces, routes and forwarding settings of one network namespace."""

    def __init__(self, interfaces: list[Interface], *, routes: list[tuple[str, str, str]] | None = None,
                 forwarding: dict[str, bool] | None = None, route_localnet: bool = False) -> None:
        self.interfaces = interfaces
        # (family, destination prefix text or "default", device); None: not known, every
        # interface is taken to lead everywhere
        self.routes = routes
        self.forwarding = forwarding if forwarding is not None else {"ipv4": False, "ipv6": False}
        self.route_localnet = route_localnet
        self._local: dict[str, addr.IntervalSet] = {}
        self._net_cache: dict[tuple[str, str], tuple] = {}

    def by_name(self, name: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None

    def external(self) -> list[Interface]:
        """Interfaces packets from other machines can arrive on."""
        return [i for i in self.interfaces if not i.loopback and i.up]

    def local_addresses(self, family: str) -> addr.IntervalSet:
        """Every address of this machine (127.0.0.0/8 and ::1 included)."""
        found = self._local.get(family)
        if found is None:
            pairs = [(addr.to_int(t), addr.to_int(t)) for i in self.interfaces
                     for f, t, _p in i.addresses if f == family]
            if family == "ipv4":
                pairs.append((addr.to_int("127.0.0.0"), addr.to_int("127.255.255.255")))
            else:
                pairs.append((1, 1))
            found = self._local[family] = addr.normalise(pairs)
        return found

    def is_local(self, family: str, value: int) -> bool:
        return addr.contains(self.local_addresses(family), value)

    def all_subnets(self, family: str) -> addr.IntervalSet:
        pairs = []
        for iface in self.interfaces:
            if not iface.loopback:
                pairs.extend(iface.subnets(family))
        return addr.normalise(pairs)

    def route(self, family: str, value: int) -> str | None:
        """The device a packet to this address leaves by: the longest matching route, then the
        connected subnets; None when there is no route."""
        best: tuple[int, str] | None = None
        for fam, dst, dev in self.routes or ():
            if fam != family:
                continue
            if dst == "default":
                plen, iv = 0, addr.full(family)
            else:
                _f, iv = addr.parse_net(dst)
                plen = int(dst.split("/", 1)[1]) if "/" in dst else (32 if family == "ipv4" else 128)
            if addr.contains(iv, value) and (best is None or plen > best[0]):
                best = (plen, dev)
        if best is not None:
            return best[1]
        for iface in self.external():
            if addr.contains(iface.subnets(family), value):
                return iface.name
        return None

    def routed_from(self, family: str, device: str) -> "addr.IntervalSet":
        """Sources this machine can answer through device: the destinations of its routes
        there (everything for a default route)."""
        if self.routes is None:
            return addr.full(family)
        pairs = []
        for fam, dst, dev in self.routes:
            if fam != family or dev != device:
                continue
            if dst == "default":
                return addr.full(family)
            pairs.extend(addr.parse_net(dst)[1])
        return addr.normalise(pairs)

    def to_dict(self) -> dict[str, Any]:
        return {"interfaces": [{"name": i.name, "up": i.up, "loopback": i.loopback,
                                "addresses": [f"{t}/{p}" for _f, t, p in i.addresses]}
                               for i in self.interfaces],
                "forwarding": self.forwarding, "route_localnet": self.route_localnet}


def parse_ip_addr(data: bytes | str) -> list[Interface]:
    """`ip -j addr show` -> interfaces."""
    items = json.loads(data)
    out = []
    for item in items:
        flags = item.get("flags") or []
        addrs = []
        for a in item.get("addr_info") or ():
            fam = {"inet": "ipv4", "inet6": "ipv6"}.get(a.get("family"))
            if fam and a.get("local"):
                addrs.append((fam, a["local"], int(a.get("prefixlen", 32 if fam == "ipv4" else 128))))
        out.append(Interface(item.get("ifname", "?"), up="UP" in flags,
                             loopback="LOOPBACK" in flags or item.get("link_type") == "loopback",
                             addresses=addrs))
    return out


def parse_ip_route(data: bytes | str, family: str) -> list[tuple[str, str, str]]:
    """`ip -j [-6] route show` (main table) -> (family, destination, device)."""
    items = json.loads(data)
    out = []
    for item in items:
        dev = item.get("dev")
        dst = item.get("dst")
        if not dev or not dst or item.get("type", "unicast") != "unicast":
            continue
        out.append((family, dst, dev))
    return out
