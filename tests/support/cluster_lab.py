"""A Dask cluster in network namespaces, for the cluster tests and benchmark.

    hub      the `dask scheduler` on 198.18.59.1:8786 (an address on the hub's loopback,
             routed from the others), one veth to every other namespace but the target
    client   where `portatlas scan --cluster tcp://198.18.60.1:8786` runs
    wN       one `dask worker` each (--nthreads 1, no nanny: the PID is the worker), with its
             own veth to the target and its own route to the target block
    target   listeners on every address of 198.19.100.0/24 (an AnyIP `local` route on lo)

    hub-client 198.18.60.0/24 (hub .1, client .2); hub-wN 198.18.(61+N).0/24 (hub .1, wN .2);
    wN-target  198.19.(61+N).0/24 (wN .1, target .2); 2001:db8:1:(61+N)::/64 likewise, with the
    IPv6 target block 2001:db8:100::/120.

The hub forwards nothing: workers reach the scheduler, the client reaches the scheduler, and
only workers reach the targets. A worker made with route=False has no route to the targets.
Every veth is created inside its namespaces (no interface in the root namespace), and every
process is stopped by PID when the lab closes (Netns.close).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from support.netns import Netns, _ip
from support.scan_lab import LISTENER, _wait_ready

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TARGET_NET = "198.19.100"
TARGET_NET6 = "2001:db8:100::"
SCHEDULER_PORT = 8786
SCHEDULER_IP = "198.18.59.1"  # on the hub's own loopback, routed from the client and workers


def veth(a: Netns, a_if: str, b: Netns, b_if: str, a_addr: str, b_addr: str,
         a6: str | None = None, b6: str | None = None) -> None:
    """A veth pair made in namespace a with its peer moved straight to b."""
    _ip("-n", a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
    for ns, ifname, addr, addr6 in ((a, a_if, a_addr, a6), (b, b_if, b_addr, b6)):
        _ip("-n", ns.name, "addr", "add", addr, "dev", ifname)
        if addr6:
            _ip("-n", ns.name, "addr", "add", addr6, "dev", ifname, "nodad")
        _ip("-n", ns.name, "link", "set", ifname, "up")


# UDP_RESPONDER of scan_lab, one socket per (address, port); bounded by its lifetime
UDP_BOUND = r"""
import selectors, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
sel = selectors.DefaultSelector()
for address in sys.argv[2].split(","):
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, port)); s.setblocking(False)
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


class Worker:
    def __init__(self, ns: Netns, n: int, proc: subprocess.Popen, route: bool) -> None:
        self.ns, self.n, self.proc, self.route = ns, n, proc, route
        self.address = f"tcp://198.18.{61 + n}.2"

    @property
    def pid(self) -> int:
        return self.proc.pid


class ClusterLab:
    def __init__(self, workers: int = 3, env: dict | None = None) -> None:
        self.n_workers = workers
        self.env = dict(os.environ, NO_COLOR="1", **(env or {}))
        self.hub = Netns("pa13c-hub")
        self.client = Netns("pa13c-cli")
        self.target = Netns("pa13c-tgt")
        self.workers: list[Worker] = []
        self._next = 0
        self.scheduler: subprocess.Popen | None = None
        self.address = f"tcp://{SCHEDULER_IP}:{SCHEDULER_PORT}"

    # --- building ---------------------------------------------------------------------------
    def __enter__(self) -> "ClusterLab":
        for ns in (self.hub, self.client, self.target):
            ns.__enter__()
        try:
            veth(self.hub, "hc0", self.client, "ch0", "198.18.60.1/24", "198.18.60.2/24")
            self.hub.run(["ip", "addr", "add", f"{SCHEDULER_IP}/32", "dev", "lo"])
            self.client.run(["ip", "route", "add", SCHEDULER_IP, "via", "198.18.60.1"])
            self.target.run(["ip", "route", "add", "local", f"{TARGET_NET}.0/24", "dev", "lo"])
            self.target.run(["ip", "-6", "route", "add", "local", f"{TARGET_NET6}/120", "dev",
                             "lo"])
            for key in ("net.ipv4.icmp_ratelimit", "net.ipv6.icmp.ratelimit"):
                self.target.run(["sysctl", "-q", "-w", f"{key}=0"])
            self.start_scheduler()
            for _ in range(self.n_workers):
                self.add_worker()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for w in self.workers:
            w.ns.close()
        for ns in (self.client, self.hub, self.target):
            ns.close()

    def start_scheduler(self) -> None:
        self.scheduler = self.hub.popen(
            [str(BIN / "dask"), "scheduler", "--host", SCHEDULER_IP, "--port", str(SCHEDULER_PORT),
             "--no-dashboard", "--no-show"], stderr=subprocess.PIPE, text=True, env=self.env)
        _wait_line(self.scheduler, "Scheduler at", 60)

    def add_worker(self, route: bool = True, env: dict | None = None,
                   egress_pps: int | None = None) -> Worker:
        """Start one more `dask worker` in a namespace of its own; wait until it registered."""
        n = self._next
        self._next += 1
        ns = Netns(f"pa13c-w{n}")
        ns.__enter__()
        veth(self.hub, f"hw{n}", ns, f"wh{n}", f"198.18.{61 + n}.1/24", f"198.18.{61 + n}.2/24")
        ns.run(["ip", "route", "add", SCHEDULER_IP, "via", f"198.18.{61 + n}.1"])
        if route:
            veth(ns, f"wt{n}", self.target, f"tw{n}", f"198.19.{61 + n}.1/24",
                 f"198.19.{61 + n}.2/24", f"2001:db8:1:{61 + n}::1/64",
                 f"2001:db8:1:{61 + n}::2/64")
            ns.run(["ip", "route", "add", f"{TARGET_NET}.0/24", "via", f"198.19.{61 + n}.2"])
            ns.run(["ip", "-6", "route", "add", f"{TARGET_NET6}/120", "via",
                    f"2001:db8:1:{61 + n}::2"])
        if egress_pps:
            limit_egress(ns, egress_pps)
        proc = ns.popen([str(BIN / "dask"), "worker", self.address,
                         "--nthreads", "1", "--no-nanny", "--host", f"198.18.{61 + n}.2",
                         "--no-dashboard", "--name", f"w{n}", "--death-timeout", "60"],
                        stderr=subprocess.PIPE, text=True, env=dict(self.env, **(env or {})))
        worker = Worker(ns, n, proc, route)
        self.workers.append(worker)
        _wait_line(proc, "Registered to", 60)
        return worker

    def stop_worker(self, worker: Worker) -> None:
        """Kill one worker by PID (SIGKILL: a machine lost, no goodbye) and drop its namespace."""
        try:
            os.kill(worker.pid, 9)
        except ProcessLookupError:
            pass
        worker.proc.wait(timeout=10)
        worker.ns.close()
        self.workers.remove(worker)

    # --- the target --------------------------------------------------------------------------
    def listen(self, ports, banner: str = "") -> subprocess.Popen:
        proc = self.target.popen([sys.executable, "-c", LISTENER, ",".join(map(str, ports)),
                                  banner, "600"], stdout=subprocess.PIPE, text=True)
        _wait_ready(proc)
        return proc

    def udp_respond(self, ports, addresses: list[str]) -> subprocess.Popen:
        """A UDP responder bound to each address (a wildcard socket would answer from the
        target's veth address, not the AnyIP one asked)."""
        proc = self.target.popen([sys.executable, "-c", UDP_BOUND, ",".join(map(str, ports)),
                                  ",".join(addresses)], stdout=subprocess.PIPE, text=True)
        _wait_ready(proc)
        return proc

    def firewall(self, *rules: list[str]) -> None:
        for rule in rules:
            self.target.run(["iptables", "-w", *rule])

    # --- running portatlas -------------------------------------------------------------------
    def portatlas_in(self, ns: Netns, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return ns.run([sys.executable, "-m", "portatlas", *args], check=False, timeout=timeout,
                      env=self.env)

    def cluster_scan(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.portatlas_in(self.client, "scan", *args, "--cluster", self.address,
                                 timeout=timeout)

    def popen_client(self, *args: str) -> subprocess.Popen:
        return self.client.popen([sys.executable, "-m", "portatlas", *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=self.env, start_new_session=True)


def comparable(report: dict) -> list:
    """A --json report without what differs between any two runs (times, RTTs, the command
    line, the cluster's own description), hosts sorted. For a host found up, which discovery
    probe answered first (ICMP echo or SYN to 443, microseconds apart) is a race even between
    two one-machine runs: only that it is up, and its MAC, are compared."""
    hosts = []
    for h in report["hosts"]:
        h = dict(h)
        h.pop("timing", None)
        if h.get("discovery"):
            h["discovery"] = {k: v for k, v in h["discovery"].items() if k != "rtt_ms"}
            if h["discovery"].get("state") == "up":
                for key in ("reason", "method"):
                    h["discovery"].pop(key, None)
                h.pop("status_reason", None)
        h["ports"] = sorted((_port(p) for p in h["ports"]),
                            key=lambda p: (p["transport"], p["port"]))
        h["extraports"] = sorted(h["extraports"], key=lambda e: (e["transport"], e["state"]))
        hosts.append(h)
    return sorted(hosts, key=lambda h: (h["family"], h["address"]))


def differences(a: dict, b: dict, limit: int = 5) -> list[str]:
    """The first few differences between two reports, as comparable() sees them."""
    out = []
    ha = {(h["family"], h["address"]): h for h in comparable(a)}
    hb = {(h["family"], h["address"]): h for h in comparable(b)}
    for key in sorted(set(ha) | set(hb)):
        x, y = ha.get(key), hb.get(key)
        if x is None or y is None:
            out.append(f"{key}: only in {'second' if x is None else 'first'}")
            continue
        for field in sorted(set(x) | set(y)):
            if x.get(field) != y.get(field):
                if field == "ports":
                    px = {(p["port"], p["transport"]): p for p in x["ports"]}
                    py = {(p["port"], p["transport"]): p for p in y["ports"]}
                    for pk in sorted(set(px) | set(py)):
                        if px.get(pk) != py.get(pk):
                            out.append(f"{key} port {pk}: {px.get(pk)} != {py.get(pk)}")
                            break
                else:
                    out.append(f"{key} {field}: {x.get(field)} != {y.get(field)}")
        if len(out) >= limit:
            break
    return out[:limit]


def _port(p: dict) -> dict:
    p = {k: v for k, v in p.items() if k != "rtt_ms"}
    if p.get("service"):
        p["service"] = {k: v for k, v in p["service"].items() if k != "elapsed"}
    return p


def limit_egress(ns: Netns, pps: int) -> None:
    """At most `pps` TCP SYNs per second leave this namespace (an iptables hashlimit rule:
    what a rate cap on one machine's egress link does to a scan)."""
    ns.run(["iptables", "-w", "-A", "OUTPUT", "-p", "tcp", "--syn", "-m", "hashlimit",
            "--hashlimit-above", f"{pps}/sec", "--hashlimit-burst", str(max(1, pps // 20)),
            "--hashlimit-name", "pa13c-egress", "-j", "DROP"])


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float) -> None:
    """Wait until a line of the process's stderr contains `needle` (Dask logs to stderr).
    A thread reads every line (so the process never blocks on a full pipe, and no line
    waits unseen in a buffer)."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in iter(proc.stderr.readline, ""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    end = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if needle in line:
            # keep draining in the background
            threading.Thread(target=_drain, args=(lines,), daemon=True).start()
            return
    raise RuntimeError(f"dask process did not say {needle!r}: {''.join(seen[-10:])}")


def _drain(lines) -> None:
    while lines.get() is not None:
        pass
