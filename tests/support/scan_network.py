"""A network to discover, for host-discovery tests and the network benchmark.

Three namespaces, veth pairs created inside them (nothing in the root namespace):

    scanner S ──link── T (target link + router) ──link── B (behind the router)

IPv4, 1,024 addresses (K = `base`):
  * 198.18.K.0/24 on the S–T link: S is .1, T is .2 plus address aliases (live on-link hosts);
    the other addresses are nobody's (no ARP reply);
  * 198.18.K+1.0/24 on the T–B link (routed from S via T): B is .2 plus aliases; for the
    other addresses T's ARP fails and T answers with ICMP host unreachable (or nothing,
    when its ICMP rate limit is spent);
  * 198.18.K+2.0/23 routed by T to B; B holds a few aliases and blackholes the rest
    (silence).
IPv6, 640 addresses: 2001:db8:K::/120 on the S–T link, 2001:db8:K:1::/121 on the T–B link,
2001:db8:K:2::/120 blackholed behind B. Addresses are only ever 198.18.0.0/15 and
2001:db8::/32. Firewall rules in T and B give some live hosts DROP and REJECT behaviour.

`truth(path, family)` is the set of addresses that discovery must report up for the raw
(root) or connect (unprivileged) path: a host whose every discovery probe is dropped cannot
be told from a dead one, except on a link as root, where ARP/ND still answer.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from support.netns import Netns

LISTEN = r"""
import socket, sys, time
socks = []
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port))); s.listen(128); s.setblocking(False)
    socks.append(s)
print("ready", flush=True)
end = time.monotonic() + 900
while time.monotonic() < end:
    time.sleep(0.2)
    for s in socks:
        try:
            while True:
                s.accept()[0].close()
        except OSError:
            pass
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    address: str
    kind: str                  # "link", "routed-arp" (T–B link), "routed" (behind B)
    ports: list[int] = field(default_factory=list)   # listening TCP ports
    rule: str = ""             # "", "reset", "port-unreach", "admin-prohibited", "drop-80-icmp",
                               # "drop-probes" (80, 443 and ICMP echo/timestamp dropped)


class Network:
    def __init__(self, base: int = 160, live_onlink: int | None = None,
                 plan: str = "test") -> None:
        self.base = base
        self.s = Netns("pa13s")
        self.t = Netns("pa13t")
        self.b = Netns("pa13b")
        self.hosts: list[Host] = []
        self.live_onlink = live_onlink
        self.plan = plan          # "test" (rules of every kind) or "bench22" (2% live, /22)
        self._procs: list[subprocess.Popen] = []

    # address plan ----------------------------------------------------------------------
    def v4(self, block: int, host: int) -> str:
        k = self.base + block + host // 256
        return f"198.18.{k}.{host % 256}"

    def v6(self, block: int, host: int) -> str:
        import ipaddress

        return str(ipaddress.IPv6Address(f"2001:db8:{self.base}:{block}::{host:x}"))

    @property
    def targets_v4(self) -> list[str]:
        k = self.base
        return [f"198.18.{k}.0/24", f"198.18.{k + 1}.0/24", f"198.18.{k + 2}.0/23"]

    @property
    def targets_v6(self) -> list[str]:
        k = self.base
        return [f"2001:db8:{k}:0::/120", f"2001:db8:{k}:1::/121", f"2001:db8:{k}:2::/120"]

    # set-up --------------------------------------------------------------------------
    def __enter__(self) -> "Network":
        for ns in (self.s, self.t, self.b):
            ns.__enter__()
        k = self.base
        s, t, b = self.s.name, self.t.name, self.b.name
        _ip("-n", s, "link", "add", "pa13s0", "type", "veth", "peer", "name", "pa13t0", "netns", t)
        _ip("-n", t, "link", "add", "pa13t1", "type", "veth", "peer", "name", "pa13b0", "netns", b)
        for ns, ifname in ((s, "pa13s0"), (t, "pa13t0"), (t, "pa13t1"), (b, "pa13b0")):
            for key in ("accept_dad=0", "dad_transmits=0"):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                                f"net.ipv6.conf.{ifname}.{key}"], capture_output=True)
        _ip("-n", s, "addr", "add", f"198.18.{k}.1/24", "dev", "pa13s0")
        _ip("-n", s, "addr", "add", f"2001:db8:{k}:0::1/120", "dev", "pa13s0", "nodad")
        _ip("-n", t, "addr", "add", f"198.18.{k}.2/24", "dev", "pa13t0")
        _ip("-n", t, "addr", "add", f"2001:db8:{k}:0::2/120", "dev", "pa13t0", "nodad")
        _ip("-n", t, "addr", "add", f"198.18.{k + 1}.1/24", "dev", "pa13t1")
        _ip("-n", t, "addr", "add", f"2001:db8:{k}:1::1/121", "dev", "pa13t1", "nodad")
        _ip("-n", b, "addr", "add", f"198.18.{k + 1}.2/24", "dev", "pa13b0")
        _ip("-n", b, "addr", "add", f"2001:db8:{k}:1::2/121", "dev", "pa13b0", "nodad")
        for ns, ifname in ((s, "pa13s0"), (t, "pa13t0"), (t, "pa13t1"), (b, "pa13b0")):
            _ip("-n", ns, "link", "set", ifname, "up")
        # The truth below counts a host that answers only with ICMP errors (port-unreach,
        # admin-prohibited) as up; T and B also send a host-unreachable for every absent
        # address behind them, and the kernel's ICMP rate limits (per destination, and the
        # global burst) would then drop some of those errors, making such a host look down
        # in one run and up in the next. No limits in this lab (per namespace settings).
        for ns in (self.t, self.b):
            for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_ratemask=0",
                        "net.ipv6.icmp.ratelimit=0"):
                ns.run(["sysctl", "-q", "-w", key], check=False)
        self.t.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        self.t.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"])
        _ip("-n", s, "route", "add", f"198.18.{k + 1}.0/24", "via", f"198.18.{k}.2")
        _ip("-n", s, "route", "add", f"198.18.{k + 2}.0/23", "via", f"198.18.{k}.2")
        _ip("-n", s, "-6", "route", "add", f"2001:db8:{k}:1::/121", "via", f"2001:db8:{k}:0::2")
        _ip("-n", s, "-6", "route", "add", f"2001:db8:{k}:2::/120", "via", f"2001:db8:{k}:0::2")
        _ip("-n", t, "route", "add", f"198.18.{k + 2}.0/23", "via", f"198.18.{k + 1}.2")
        _ip("-n", t, "-6", "route", "add", f"2001:db8:{k}:2::/120", "via", f"2001:db8:{k}:1::2")
        _ip("-n", b, "route", "add", "default", "via", f"198.18.{k + 1}.1")
        _ip("-n", b, "-6", "route", "add", "default", "via", f"2001:db8:{k}:1::1")
        _ip("-n", b, "route", "add", "blackhole", f"198.18.{k + 2}.0/23")
        _ip("-n", b, "-6", "route", "add", "blackhole", f"2001:db8:{k}:2::/120")
        self._plan()
        self._build()
        return self

    def __exit__(self, *exc) -> None:
        for ns in (self.b, self.t, self.s):
            ns.close()

    def _plan(self) -> None:
        H = self.hosts
        if self.live_onlink is not None:
            # the benchmark's /24: `live_onlink` hosts on the link (T itself and aliases)
            H.append(Host(self.v4(0, 2), "link", [22, 80]))
            for i in range(1, self.live_onlink):
                H.append(Host(self.v4(0, 10 + i * 7), "link", [22, 443] if i % 2 else [80]))
            return
        if self.plan == "bench22":
            # 20 live of 1,024 (with the scanner and the router, 22: about 2%)
            top = [[22], [80, 443], [22, 3306], [8080], [443], [25, 80]]
            H.append(Host(self.v4(0, 2), "link", [22, 80]))
            for i in range(7):
                H.append(Host(self.v4(0, 20 + 31 * i), "link", top[i % len(top)]))
            H.append(Host(self.v4(1, 2), "routed-arp", [22]))
            for i in range(5):
                H.append(Host(self.v4(1, 40 + 37 * i), "routed-arp", top[(i + 2) % len(top)]))
            for i in range(6):
                H.append(Host(self.v4(2, 17 + 83 * i), "routed", top[(i + 4) % len(top)]))
            return
        for fam in ("v4", "v6"):
            at = self.v4 if fam == "v4" else self.v6
            H += [Host(at(0, 2), "link", [22]),
                  Host(at(0, 10), "link", [22, 8080]),
                  Host(at(0, 11), "link", [], "reset"),
                  Host(at(0, 12), "link", [], "port-unreach"),
                  Host(at(0, 13), "link", [443], "drop-80-icmp"),
                  Host(at(0, 14), "link", [], "drop-probes"),
                  Host(at(1, 2), "routed-arp", [80]),
                  Host(at(1, 10), "routed-arp", [], "drop-80-icmp"),
                  Host(at(2, 5), "routed", [22]),
                  Host(at(2, 6), "routed", [], "admin-prohibited"),
                  Host(at(2, 200), "routed", [443]),
                  Host(at(2, 201), "routed", [], "drop-probes")]

    def _build(self) -> None:
        listen: dict[str, list[str]] = {"t": [], "b": []}
        for h in self.hosts:
            ns = self.t if h.kind == "link" else self.b
            side = "t" if h.kind == "link" else "b"
            v6 = ":" in h.address
            dev = "pa13t0" if side == "t" else ("pa13b0" if h.kind == "routed-arp" else "lo")
            own = {self.v4(0, 2), self.v6(0, 2), self.v4(1, 2), self.v6(1, 2)}
            if h.address not in own:
                plen = ("/120" if side == "t" else "/121" if h.kind == "routed-arp" else "/128") \
                    if v6 else ("/24" if h.kind != "routed" else "/32")
                args = ["-n", ns.name] + (["-6"] if v6 else []) + ["addr", "add", h.address + plen,
                                                                   "dev", dev]
                if v6:
                    args.append("nodad")
                _ip(*args)
            for port in h.ports:
                listen[side].append(f"{h.address}:{port}")
            self._rules(ns, h, v6)
        for side, specs in listen.items():
            if specs:
                ns = self.t if side == "t" else self.b
                proc = ns.popen([sys.executable, "-c", LISTEN, *specs], stdout=subprocess.PIPE,
                                text=True)
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("listener did not start")

    @staticmethod
    def _rules(ns: Netns, h: Host, v6: bool) -> None:
        tool = "ip6tables" if v6 else "iptables"
        icmp = ["-p", "ipv6-icmp", "--icmpv6-type", "echo-request"] if v6 else \
            ["-p", "icmp", "--icmp-type", "echo-request"]
        base = [tool, "-w", "-A", "INPUT", "-d", h.address]
        rules = []
        if h.rule == "reset":
            rules.append(base + ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
        elif h.rule == "port-unreach":
            rules.append(base + ["-p", "tcp", "-j", "REJECT", "--reject-with",
                                 "icmp6-port-unreachable" if v6 else "icmp-port-unreachable"])
            rules.append(base + icmp + ["-j", "DROP"])
        elif h.rule == "admin-prohibited":
            rules.append(base + ["-p", "tcp", "-j", "REJECT", "--reject-with",
                                 "icmp6-adm-prohibited" if v6 else "icmp-admin-prohibited"])
            rules.append(base + icmp + ["-j", "DROP"])
        elif h.rule in ("drop-80-icmp", "drop-probes"):
            rules.append(base + ["-p", "tcp", "--dport", "80", "-j", "DROP"])
            rules.append(base + icmp + ["-j", "DROP"])
            if not v6:
                rules.append(base + ["-p", "icmp", "--icmp-type", "timestamp-request", "-j", "DROP"])
            if h.rule == "drop-probes":
                rules.append(base + ["-p", "tcp", "--dport", "443", "-j", "DROP"])
        for rule in rules:
            ns.run(rule)

    # ground truth ----------------------------------------------------------------------
    def truth(self, path: str, family: str) -> set[str]:
        """Addresses discovery must find up: path "raw" (root) or "connect" (unprivileged)."""
        out = set()
        for h in self.hosts:
            if (":" in h.address) != (family == "v6"):
                continue
            if h.rule == "drop-probes" and not (path == "raw" and h.kind == "link"):
                continue
            out.add(h.address)
        if family == "v4":
            out.add(self.v4(0, 1))          # the scanner itself
            out.add(self.v4(1, 1))          # T's address on the far link (a router is a host)
        else:
            out.add(self.v6(0, 1))
            out.add(self.v6(1, 1))
            if path == "raw":
                # T forwards, so it holds the subnet-router anycast address of its link
                # (RFC 4291 2.6.1) and answers neighbour solicitations for it
                out.add(self.v6(0, 0))
        return out

    def mac_of_t(self) -> str:
        out = self.t.run(["cat", "/sys/class/net/pa13t0/address"]).stdout.strip()
        return out.lower()
