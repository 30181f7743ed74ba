"""A two-namespace lab for exposure ground truth: a server namespace with a ruleset and
listeners, a client namespace joined to it by a veth pair, and a way to connect and see what
really happens.

Addresses (benchmarking range and documentation prefix only):
  server veth  198.18.140.1/24, 198.18.140.3/24, 2001:db8:140::1/64, 2001:db8:140::3/64
  client veth  198.18.140.2/24 (a host on the server's subnet), 2001:db8:140::2/64
               198.19.141.2/32, 2001:db8:141::2/128 (a host elsewhere, routed via the client)
The veth pair is created inside the namespaces, so no name appears in the root namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.netns import Netns

SERVER_IF = "pa14srv"
CLIENT_IF = "pa14cli"
S4, S4B, C4, FAR4 = "198.18.140.1", "198.18.140.3", "198.18.140.2", "198.19.141.2"
S6, S6B, C6, FAR6 = "2001:db8:140::1", "2001:db8:140::3", "2001:db8:140::2", "2001:db8:141::2"

# One process holding every listener: a TCP accept answers "id\n", a UDP datagram is
# answered with the id, so the client knows which socket it reached.
SERVER = r"""
import json, selectors, socket, sys
specs = json.loads(sys.argv[1])
sel = selectors.DefaultSelector()
for spec in specs:
    fam = socket.AF_INET6 if spec["family"] == "ipv6" else socket.AF_INET
    kind = socket.SOCK_STREAM if spec["transport"] == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if spec.get("v6only") else 0)
    s.bind((spec["address"], spec["port"]))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
    else:
        # answer from the address the datagram came to (a wildcard socket would otherwise
        # answer from the primary address, which a connected client ignores)
        s.setsockopt(socket.IPPROTO_IP, 8, 1)              # IP_PKTINFO
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, 49, 1)       # IPV6_RECVPKTINFO
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, (spec["id"], kind))
print("ready", flush=True)
while True:
    for key, _ in sel.select(30):
        ident, kind = key.data
        try:
            if kind == socket.SOCK_STREAM:
                conn, _peer = key.fileobj.accept()
                conn.setblocking(True)
                conn.settimeout(1)
                conn.sendall((ident + "\n").encode())
                conn.close()
            else:
                _data, anc, _flags, peer = key.fileobj.recvmsg(512, 256)
                back = [(lvl, 50 if (lvl, typ) == (socket.IPPROTO_IPV6, 50) else typ, data)
                        for lvl, typ, data in anc]
                key.fileobj.sendmsg([ident.encode()], back, 0, peer)
        except OSError:
            pass
"""

# Tries every connection at once (threads), each bounded by a timeout; prints JSON results:
# reached:<id> | refused | timeout | error:<errno name>.
CLIENT = r"""
import errno, json, socket, sys, threading
tasks = json.loads(sys.argv[1]); timeout = float(sys.argv[2])
results = {}
def one(t):
    fam = socket.AF_INET6 if ":" in t["dst"] else socket.AF_INET
    kind = socket.SOCK_STREAM if t["transport"] == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    s.settimeout(timeout)
    try:
        if t.get("src"):
            s.bind((t["src"], 0))
        s.connect((t["dst"], t["port"]))
        if kind == socket.SOCK_DGRAM:
            s.send(b"x")
        data = s.recv(512)
        results[t["key"]] = "reached:" + data.decode().strip()
    except socket.timeout:
        results[t["key"]] = "timeout"
    except ConnectionRefusedError:
        results[t["key"]] = "refused"
    except OSError as exc:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        results[t["key"]] = "refused" if name in ("EHOSTUNREACH", "ENETUNREACH", "EACCES",
                                                   "EPERM", "ECONNRESET") else "error:" + name
    finally:
        s.close()
threads = [threading.Thread(target=one, args=(t,)) for t in tasks]
for th in threads: th.start()
for th in threads: th.join(timeout + 5)
print(json.dumps(results))
"""

# Inside the server namespace: portatlas's answer for each (listener, connection).
JUDGE = r"""
import json, sys
from portatlas.exposure import read
from portatlas.exposure.assess import Assessor, Listener
specs, tasks = json.loads(sys.argv[1]), json.loads(sys.argv[2])
try:
    assessor = Assessor(read.read_ruleset(), read.read_machine())
except read.Unreadable as exc:
    print(json.dumps({"error": str(exc)})); sys.exit(0)
by_id = {s["id"]: s for s in specs}
out = {"connections": {}, "listeners": {}}
for s in specs:
    lis = Listener(s["transport"], s["family"], s["address"], s["port"], s.get("v6only", False))
    e = assessor.assess(lis)
    out["listeners"][s["id"]] = {"verdict": e.verdict, "reason": e.reason}
for t in tasks:
    s = by_id[t["listener"]]
    lis = Listener(s["transport"], s["family"], s["address"], s["port"], s.get("v6only", False))
    fam = "ipv6" if ":" in t["dst"] else "ipv4"
    r = assessor.connection(lis, fam, t["iif"], t["saddr"], t["dst"])
    out["connections"][t["key"]] = {"verdict": r["verdict"], "reason": r.get("reason", "")}
print(json.dumps(out))
"""

KINDS = [  # (kind name, family, address, v6only)
    ("v4-any", "ipv4", "0.0.0.0", None),
    ("v4-spec", "ipv4", S4, None),
    ("v4-lo", "ipv4", "127.0.0.1", None),
    ("v6-dual", "ipv6", "::", False),
    ("v6-only", "ipv6", "::", True),
    ("v6-spec", "ipv6", S6, None),
    ("v6-lo", "ipv6", "::1", None),
]


class Lab:
    def __init__(self) -> None:
        self.server = Netns("pa14s")
        self.client = Netns("pa14c")

    def __enter__(self) -> "Lab":
        self.server.__enter__()
        try:
            self.client.__enter__()
            s, c = self.server.name, self.client.name
            _ip("-n", s, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
                "netns", c)
            for a in (f"{S4}/24", f"{S4B}/24"):
                _ip("-n", s, "addr", "add", a, "dev", SERVER_IF)
            for a in (f"{S6}/64", f"{S6B}/64"):
                _ip("-n", s, "addr", "add", a, "dev", SERVER_IF, "nodad")
            _ip("-n", c, "addr", "add", f"{C4}/24", "dev", CLIENT_IF)
            _ip("-n", c, "addr", "add", f"{FAR4}/32", "dev", CLIENT_IF)
            _ip("-n", c, "addr", "add", f"{C6}/64", "dev", CLIENT_IF, "nodad")
            _ip("-n", c, "addr", "add", f"{FAR6}/128", "dev", CLIENT_IF, "nodad")
            _ip("-n", s, "link", "set", SERVER_IF, "up")
            _ip("-n", c, "link", "set", CLIENT_IF, "up")
            # rejections are ICMP errors, which the kernel rate-limits: off, so that every
            # rejected connection of a burst is told so (else it would look dropped)
            for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                        "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000"):
                self.server.run(["sysctl", "-q", "-w", key], check=False)
            _ip("-n", s, "route", "add", "198.19.141.0/24", "via", C4)
            _ip("-n", s, "-6", "route", "add", "2001:db8:141::/64", "via", C6)
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()
        self.server.close()

    # -- rulesets ---------------------------------------------------------------------------
    def nft(self, text: str) -> None:
        self.server.run(["nft", "flush", "ruleset"])
        if text.strip():
            self.server.run(["nft", "-f", "-"], input=text)

    def iptables(self, v4: str, v6: str = "", backend: str = "legacy") -> None:
        for tool, text in (("iptables", v4), ("ip6tables", v6)):
            if text.strip():
                self.server.run([f"{tool}-{backend}-restore"], input=text)

    def reset(self) -> None:
        self.server.run(["nft", "flush", "ruleset"])
        for tool in ("iptables", "ip6tables"):
            for table in ("filter", "nat", "raw", "mangle"):
                self.server.run([f"{tool}-legacy", "-t", table, "-F"], check=False)
                self.server.run([f"{tool}-legacy", "-t", table, "-X"], check=False)
                for chain in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"):
                    self.server.run([f"{tool}-legacy", "-t", table, "-P", chain, "ACCEPT"],
                                    check=False)

    # -- listeners and connections ----------------------------------------------------------
    def listen(self, specs: list[dict]) -> subprocess.Popen:
        proc = self.server.popen([sys.executable, "-c", SERVER, json.dumps(specs)],
                                 stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("listener process did not start")
        return proc

    def connect(self, tasks: list[dict], timeout: float = 1.0) -> dict[str, str]:
        results: dict[str, str] = {}
        for ns, where in ((self.client, "client"), (self.server, "server")):
            mine = [t for t in tasks if t["from"] == where]
            if not mine:
                continue
            r = ns.run([sys.executable, "-c", CLIENT, json.dumps(mine), str(timeout)],
                       timeout=timeout * 4 + 30)
            results.update(json.loads(r.stdout))
        return results

    def judge(self, specs: list[dict], tasks: list[dict]) -> dict:
        src = str(Path(__file__).resolve().parents[2] / "src")
        r = self.server.run([sys.executable, "-c", JUDGE, json.dumps(specs), json.dumps(tasks)],
                            env={"PYTHONPATH": src, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        return json.loads(r.stdout)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def listeners(base: int, transports=("tcp",), kinds=None) -> list[dict]:
    """One listener per kind and transport: port base + kind index (+ 50 for UDP)."""
    out = []
    for t_index, transport in enumerate(transports):
        for k_index, (kind, family, address, v6only) in enumerate(KINDS):
            if kinds and kind not in kinds:
                continue
            port = base + k_index + 50 * t_index
            out.append({"id": f"{transport}-{kind}-{port}", "kind": kind, "transport": transport,
                        "family": family, "address": address, "port": port,
                        "v6only": bool(v6only)})
    return out


def tasks_for(spec: dict) -> list[dict]:
    """Every connection worth trying to one listener: from the client's subnet address, from
    the far address, and from the server itself (over lo)."""
    out = []
    kind = spec["kind"]
    dests = {"v4-any": [S4, S4B], "v4-spec": [S4], "v6-dual": [S4, S6, S6B], "v6-only": [S6, S6B],
             "v6-spec": [S6]}.get(kind, [])
    ident = spec["id"]
    for dst in dests:
        six = ":" in dst
        for label, src in (("subnet", C6 if six else C4), ("far", FAR6 if six else FAR4)):
            out.append({"key": f"{ident}|{label}|{dst}", "listener": ident, "from": "client",
                        "src": src, "saddr": src, "dst": dst, "iif": SERVER_IF,
                        "transport": spec["transport"], "port": spec["port"]})
    # from the server itself: to loopback (wildcard and loopback listeners) or its own address
    local = []
    if kind in ("v4-any", "v4-lo") or kind == "v6-dual":
        local.append(("127.0.0.1", "127.0.0.1"))
    if kind in ("v6-dual", "v6-only", "v6-lo"):
        local.append(("::1", "::1"))
    if kind == "v4-spec":
        local.append((S4, S4))
    if kind == "v6-spec":
        local.append((S6, S6))
    for src, dst in local:
        out.append({"key": f"{ident}|local|{dst}", "listener": ident, "from": "server",
                    "src": src, "saddr": src, "dst": dst, "iif": None,
                    "transport": spec["transport"], "port": spec["port"]})
    return out


def truth(result: str, ident: str) -> str:
    """A connection's result as a portatlas connection verdict."""
    if result == f"reached:{ident}":
        return "accepted"
    if result.startswith("reached:"):
        return "diverted"
    if result == "refused":
        return "rejected"
    if result == "timeout":
        return "dropped"
    return result


def agrees(verdict: str, real: str, transport: str) -> bool:
    if verdict == real:
        return True
    # a packet redirected to a port nobody listens on is refused there: "diverted" it is
    if verdict == "diverted" and real in ("rejected", "dropped"):
        return True
    # UDP to a closed port without ICMP rate limits: refused; an accepted datagram that got no
    # answer would be a timeout, which the echo server never causes
    return False
