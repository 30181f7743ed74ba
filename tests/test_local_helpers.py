"""Shared helpers of the tests of `portatlas local` (imported by the other test_local_* files):
starting real listeners inside a network namespace, and reading `ss` output into the same shape
as `portatlas local --json`. The tests at the bottom check the ss parser on ss's real output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support.netns import Netns, available

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "src/portatlas/local/schema.json").read_text())

needs_netns = pytest.mark.skipif(not available(), reason="needs root and ip netns")

# A listener process. argv[1] is a JSON spec:
#   {"sockets": [{"transport": "tcp"|"udp", "family": 4|6, "host": ..., "port": N,
#                 "v6only": 0|1, "device": "lo", "reuseport": true}],
#    "fork": true        -> a child process shares every socket (a forked server)
#    "connect": PORT     -> an established TCP connection to 127.0.0.1:PORT (both ends held)
#    "udp_connect": PORT -> a connected UDP socket towards 127.0.0.1:PORT
#    "ignore_term": true -> survive SIGTERM (needs SIGKILL)
#    "name": "sshd"      -> the process calls itself this (prctl PR_SET_NAME)}
# It prints {"pids": [...]} once everything is open, then sleeps until killed.
LISTENER = r"""
import json, os, signal, socket, sys, time
spec = json.loads(sys.argv[1])
held = []
for item in spec.get("sockets", []):
    family = socket.AF_INET6 if item["family"] == 6 else socket.AF_INET
    kind = socket.SOCK_STREAM if item["transport"] == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    if item.get("v6only") is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, item["v6only"])
    if item.get("reuseport"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if item.get("device"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, item["device"].encode())
    s.bind((item["host"], item["port"]))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    held.append(s)
if spec.get("connect"):
    client = socket.create_connection(("127.0.0.1", spec["connect"]))
    server = next(s for s in held if s.type == socket.SOCK_STREAM and s.getsockname()[1] == spec["connect"])
    accepted, _ = server.accept()
    held += [client, accepted]
if spec.get("udp_connect"):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("127.0.0.1", spec["udp_connect"]))
    held.append(u)
if spec.get("name"):
    import ctypes
    ctypes.CDLL(None).prctl(15, spec["name"].encode(), 0, 0, 0)
if spec.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = [os.getpid()]
if spec.get("fork"):
    child = os.fork()
    if child == 0:
        time.sleep(3600)
        os._exit(0)
    pids.append(child)
print(json.dumps({"pids": pids}), flush=True)
time.sleep(3600)
"""

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def start(ns: Netns, spec: dict, *, user: str | None = None) -> tuple[subprocess.Popen, list[int]]:
    """Start a listener process in the namespace (as `nobody` with user="nobody"); returns the
    process and the pids holding its sockets once they are all open."""
    prefix = AS_NOBODY if user == "nobody" else []
    proc = ns.popen(prefix + [sys.executable, "-c", LISTENER, json.dumps(spec)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"listener failed: {proc.stderr.read()}")
    return proc, json.loads(line)["pids"]


def sock(transport: str, family: int, host: str, port: int, **extra) -> dict:
    return {"transport": transport, "family": family, "host": host, "port": port, **extra}


def add_address(ns: Netns, n: int = 77) -> tuple[str, str]:
    """A second interface in the namespace holding 198.18.n.1/24 and 2001:db8:n::1/64 (a veth
    pair with both ends inside: the kernel here has no dummy driver)."""
    v4, v6 = f"198.18.{n}.1", f"2001:db8:{n}::1"
    for cmd in (["link", "add", "pa0", "type", "veth", "peer", "name", "pa1"],
                ["addr", "add", f"{v4}/24", "dev", "pa0"],
                ["addr", "add", f"{v6}/64", "dev", "pa0", "nodad"], ["link", "set", "pa0", "up"],
                ["link", "set", "pa1", "up"]):
        subprocess.run(["ip", "-n", ns.name, *cmd], check=True, capture_output=True)
    return v4, v6


# -- ss and portatlas in one shape ----------------------------------------------------------------
def ss_endpoint(text: str) -> str:
    """ss's local/peer column as is, except that a listener's peer ('0.0.0.0:*', '[::]:*',
    '*:*') becomes '*'."""
    return "*" if text.endswith(":*") else text


def parse_ss(output: str) -> Counter:
    """`ss -tu[la]pnH` output -> Counter of (transport, state, local, peer, frozenset of (pid, fd))."""
    import re

    found: Counter = Counter()
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        netid, state, local, peer = fields[0], fields[1], fields[4], fields[5]
        users = " ".join(fields[6:])
        holders = frozenset((int(p), int(f)) for p, f in re.findall(r"pid=(\d+),fd=(\d+)", users))
        found[(netid, state, local, ss_endpoint(peer), holders)] += 1
    return found


def pa_endpoint(s: dict) -> str:
    if s["stack"] == "dual-stack":
        host = "*"
    elif ":" in s["address"]:
        host = f"[{s['address']}]"
    else:
        host = s["address"]
    if s.get("interface"):
        host += f"%{s['interface']}"
    return f"{host}:{s['port']}"


def pa_peer(s: dict) -> str:
    if s["remote_address"] is None:
        return "*"
    host = f"[{s['remote_address']}]" if ":" in s["remote_address"] else s["remote_address"]
    return f"{host}:{s['remote_port']}"


def parse_pa(doc: dict) -> Counter:
    """`portatlas local --json` -> the same Counter shape as parse_ss."""
    found: Counter = Counter()
    for s in doc["sockets"]:
        holders = frozenset((p["pid"], p["fd"]) for p in s["processes"])
        found[(s["transport"], s["state"], pa_endpoint(s), pa_peer(s), holders)] += 1
    return found


def local_json(ns: Netns, *args: str, env: dict | None = None, user: str | None = None) -> dict:
    """Run `portatlas local --json ARGS` in the namespace and return the parsed document."""
    prefix = AS_NOBODY if user == "nobody" else []
    r = ns.run(prefix + [sys.executable, "-m", "portatlas", "local", "--json", *args],
               check=False, env=env)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


# -- the parser itself, on what ss really prints ---------------------------------------------------
SS_SAMPLE = """\
udp   UNCONN 0      0         0.0.0.0%lo:5007      0.0.0.0:*    users:(("python3",pid=14163,fd=9))
udp   UNCONN 0      0                  *:5005            *:*    users:(("python3",pid=14163,fd=7),("python3",pid=14170,fd=7))
udp   ESTAB  0      0          127.0.0.1:40224    127.0.0.1:5006 users:(("python3",pid=14163,fd=8))
tcp   LISTEN 0      128             [::]:5003         [::]:*
tcp   ESTAB  0      0          127.0.0.1:5002     127.0.0.1:48596
"""


def test_parse_ss_reads_interfaces_shared_sockets_and_missing_processes():
    found = parse_ss(SS_SAMPLE)
    assert found[("udp", "UNCONN", "0.0.0.0%lo:5007", "*", frozenset({(14163, 9)}))] == 1
    assert found[("udp", "UNCONN", "*:5005", "*", frozenset({(14163, 7), (14170, 7)}))] == 1
    assert found[("udp", "ESTAB", "127.0.0.1:40224", "127.0.0.1:5006", frozenset({(14163, 8)}))] == 1
    assert found[("tcp", "LISTEN", "[::]:5003", "*", frozenset())] == 1
    assert sum(found.values()) == 5


def test_pa_endpoint_writes_what_ss_writes():
    base = {"interface": None, "stack": "ipv4", "port": 22}
    assert pa_endpoint({**base, "address": "0.0.0.0"}) == "0.0.0.0:22"
    assert pa_endpoint({**base, "address": "::", "stack": "dual-stack"}) == "*:22"
    assert pa_endpoint({**base, "address": "::", "stack": "ipv6-only"}) == "[::]:22"
    assert pa_endpoint({**base, "address": "0.0.0.0", "interface": "lo"}) == "0.0.0.0%lo:22"
