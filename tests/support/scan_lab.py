"""A two-namespace lab for scan tests and benchmarks: a scanner host and a target host joined
by a veth pair (support.netns.link), with helpers to open, close, REJECT and DROP ports on
the target and to read a scan's answer as {(port, transport): (state, reason)}.

Everything stays inside the namespaces: addresses are 198.18.N.0/24 and 2001:db8:N::/64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from support.netns import Netns, link

# A TCP listener on many ports, v4 and v6 (dual-stack socket), optionally greeting each
# connection with a banner. Bounded: it exits after `lifetime` seconds.
LISTENER = r"""
import selectors, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",") if p]
banner = sys.argv[2].encode().decode("unicode_escape").encode("latin-1") if len(sys.argv) > 2 else b""
lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else 600
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(512); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
end = time.monotonic() + lifetime
while time.monotonic() < end:
    for key, _ in sel.select(0.5):
        try:
            c, _ = key.fileobj.accept()
        except OSError:
            continue
        try:
            if banner:
                c.send(banner)
        except OSError:
            pass
        c.close()
"""

# A UDP responder that answers every datagram (an echo with a prefix), v4 and v6.
UDP_RESPONDER = r"""
import selectors, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",") if p]
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
end = time.monotonic() + 600
while time.monotonic() < end:
    for key, _ in sel.select(0.5):
        try:
            data, addr = key.fileobj.recvfrom(4096)
            key.fileobj.sendto(b"pong:" + data[:32], addr)
        except OSError:
            pass
"""

REPO = Path(__file__).resolve().parents[2]


class Lab:
    """Scanner namespace `s`, target namespace `t`; target address `ip` / `ip6`."""

    _subnets = iter(range(40, 250))

    def __init__(self) -> None:
        self.s = Netns("pas")
        self.t = Netns("pat")
        self.subnet = (next(self._subnets) + os.getpid()) % 200 + 20

    def __enter__(self) -> "Lab":
        self.s.__enter__()
        self.t.__enter__()
        _, self.ip = link(self.s, self.t, subnet=self.subnet)
        self.ip6 = f"2001:db8:{self.subnet}::2"
        self.scanner_ip = f"198.18.{self.subnet}.1"
        self.t_if = f"pa{os.getpid() % 10000}b{self.subnet}"
        self.s_if = f"pa{os.getpid() % 10000}a{self.subnet}"
        # no ICMP rate limit on the target unless a test wants it (see test_scan_udp)
        self.t.run(["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0"])
        self.t.run(["sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0"])
        return self

    def __exit__(self, *exc) -> None:
        self.t.close()
        self.s.close()

    # target set-up ------------------------------------------------------------------------
    def _start(self, code: str, args: list[str]) -> subprocess.Popen:
        proc = self.t.popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
        _wait_ready(proc)
        return proc

    def listen(self, ports, banner: str = "", lifetime: float = 600) -> subprocess.Popen:
        return self._start(LISTENER, [",".join(map(str, ports)), banner, str(lifetime)])

    def udp_respond(self, ports) -> subprocess.Popen:
        return self._start(UDP_RESPONDER, [",".join(map(str, ports))])

    def firewall(self, rules: list[list[str]], v6: bool = True) -> None:
        """iptables (and ip6tables) rules in the target, e.g. ["-A", "INPUT", ...]."""
        for rule in rules:
            self.t.run(["iptables", "-w", *rule])
            if v6:
                self.t.run(["ip6tables", "-w", *[_v6(x) for x in rule]])

    # scanning -----------------------------------------------------------------------------
    def portatlas(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(os.environ, NO_COLOR="1")
        return self.s.run([sys.executable, "-m", "portatlas", *args], check=False,
                          timeout=timeout, env=env)

    def scan(self, *args: str, timeout: float = 300) -> dict:
        """Run `portatlas scan ... --ndjson --all` in the scanner; returns
        {"ports": {(address, port, transport): (state, reason)}, "hosts": [...], "summary": {...}}."""
        proc = self.portatlas("scan", *args, "--ndjson", "--no-progress", timeout=timeout)
        if proc.returncode not in (0,):
            raise AssertionError(f"scan failed ({proc.returncode}): {proc.stderr}")
        return parse_ndjson(proc.stdout)


def parse_ndjson(text: str) -> dict:
    ports, hosts, summary = {}, [], None
    for line in text.splitlines():
        d = json.loads(line)
        if d["type"] == "port":
            ports[(d["address"], d["port"], d["transport"])] = (d["state"], d["reason"])
        elif d["type"] == "host":
            hosts.append(d)
        elif d["type"] == "summary":
            summary = d
    return {"ports": ports, "hosts": hosts, "summary": summary}


def _v6(arg: str) -> str:
    return {"icmp-port-unreachable": "icmp6-port-unreachable",
            "icmp-host-unreachable": "icmp6-addr-unreachable",
            "icmp-net-unreachable": "icmp6-no-route",
            "icmp-admin-prohibited": "icmp6-adm-prohibited"}.get(arg, arg)


def _wait_ready(proc: subprocess.Popen, timeout: float = 10) -> None:
    import select

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            if line.strip() == "ready":
                return
            if not line:
                break
    raise RuntimeError("a test server in the target namespace did not start")


def nmap_states(xml_text: str) -> dict:
    """{(address, port, transport): state} from nmap -oX output (listed and extraports)."""
    import xml.etree.ElementTree as ET

    from portatlas.scan.ports import parse_port_spec

    out = {}
    root = ET.fromstring(xml_text)
    for host in root.iter("host"):
        addr = host.find("address").get("addr")
        ports = host.find("ports")
        if ports is None:
            continue
        for extra in ports.iter("extraports"):
            for reason in extra.iter("extrareasons"):
                spec = reason.get("ports")
                if spec:
                    for p in parse_port_spec(spec):
                        out[(addr, p, reason.get("proto") or "tcp")] = extra.get("state")
        for port in ports.iter("port"):
            out[(addr, int(port.get("portid")), port.get("protocol"))] = port.find("state").get("state")
    return out
