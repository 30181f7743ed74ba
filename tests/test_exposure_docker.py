"""Containers: a port published by Docker is reached through DNAT and FORWARD, not INPUT.

The well-known trap: INPUT says DROP (ufw-style), yet the published port is open to the world,
because Docker's DNAT sends the packet past INPUT. portatlas must say "exposed" (forwarded to
the container, named) and, once DOCKER-USER drops it, "local-only" (docker-proxy still answers
on loopback). Checked by connecting, twice:
  - with a real dockerd and container in the server namespace, when dockerd can run here;
  - always: Docker's own rules (iptables-nft), a real docker-proxy binary, and a namespace
    standing in for the container.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import docker_lab
from support import exposure_lab as lab
from support import netns
from support.netns import Netns

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available() or not shutil.which("iptables-nft-restore"),
                                 reason="needs root, ip netns and iptables")]

SRC = str(Path(__file__).resolve().parents[1] / "src")
HOST_PORT = 8080
CTR = f"{docker_lab.BRIDGE_NET}.2"
UFW_LIKE = ["-P INPUT DROP", "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A INPUT -p tcp --dport {HOST_PORT} -j DROP"]

JUDGE = r"""
import json, sys
from portatlas import exposure, local
snap = local.listeners(port=int(sys.argv[1]))
look = exposure.look()
found = exposure.for_snapshot(snap, look)
out = []
for s in snap.sockets:
    e = found.get(id(s))
    if e is not None:
        out.append({"address": s.address, "family": s.family, **e.to_dict()})
print(json.dumps({"sockets": out, "look": look.summary()}))
"""


def judge(L: lab.Lab, env: dict | None = None) -> list[dict]:
    r = L.server.run([sys.executable, "-c", JUDGE, str(HOST_PORT)],
                     env={"PYTHONPATH": SRC, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})})
    return json.loads(r.stdout)["sockets"]


def tries() -> list[dict]:
    base = {"transport": "tcp", "port": HOST_PORT, "listener": "ctr"}
    return [dict(base, key="subnet", **{"from": "client", "src": lab.C4, "dst": lab.S4}),
            dict(base, key="far", **{"from": "client", "src": lab.FAR4, "dst": lab.S4}),
            dict(base, key="local", **{"from": "server", "src": None, "dst": "127.0.0.1"})]


def ufw_like(L: lab.Lab) -> None:
    for rule in UFW_LIKE:
        L.server.run(["iptables-nft", *rule.split()])


def check(L: lab.Lab, *, name: str | None, env: dict | None = None) -> None:
    ufw_like(L)
    real = L.connect(tries(), timeout=2.0)
    assert real == {"subnet": "reached:ctr", "far": "reached:ctr", "local": "reached:ctr"}, real
    v4 = [s for s in judge(L, env) if s["family"] == "ipv4"]
    assert v4, "no IPv4 listener on the published port"
    for s in v4:
        assert s["verdict"] == "exposed", s
        assert s["forwarded_to"]["address"] == CTR and s["forwarded_to"]["port"] == 80, s
        if name:
            assert s["forwarded_to"]["container"]["name"] == name, s
            assert name in " ".join(s["close"])
        assert any("DOCKER-USER" in c for c in s["close"]), s
        assert any("INPUT rules" in n for n in s["notes"]), s
    # the fix Docker documents: drop in DOCKER-USER (INPUT does not see these packets)
    L.server.run(["iptables-nft", "-I", "DOCKER-USER", "-i", lab.SERVER_IF, "-j", "DROP"])
    real = L.connect(tries(), timeout=1.0)
    assert real == {"subnet": "timeout", "far": "timeout", "local": "reached:ctr"}, real
    for s in (s for s in judge(L, env) if s["family"] == "ipv4"):
        assert s["verdict"] == "local-only", s
        assert "DOCKER-USER" in s["reason"], s


def test_docker_rules_with_real_docker_proxy():
    """Docker's rules, a real docker-proxy (Debian docker.io), a namespace as the container."""
    proxy = shutil.which("docker-proxy") or "/usr/sbin/docker-proxy"
    if not Path(proxy).exists():
        pytest.skip("docker-proxy is not installed (Debian docker.io)")
    with lab.Lab() as L, Netns("pa14k") as box:
        _container_box(L, box)
        # dockerd hands docker-proxy a pipe as fd 3 to hear "ready" on: give it one
        L.server.popen(["sh", "-c", 'exec "$0" "$@" 3>/dev/null', proxy, "-proto", "tcp",
                        "-host-ip", "0.0.0.0", "-host-port", str(HOST_PORT), "-container-ip",
                        CTR, "-container-port", "80"])
        L.server.wait_for_tcp(HOST_PORT)
        check(L, name=None)


def _container_box(L: lab.Lab, box: Netns) -> None:
    """A namespace standing in for a container behind a bridge of the server, with a
    runtime's DNAT and FORWARD rules for HOST_PORT -> CTR:80 (Docker's, iptables-nft)."""
    s = L.server.name
    subprocess.run(["ip", "-n", s, "link", "add", "docker0", "type", "veth", "peer", "name",
                    "eth0", "netns", box.name], check=True)
    subprocess.run(["ip", "-n", s, "addr", "add", f"{docker_lab.BRIDGE_NET}.1/24", "dev",
                    "docker0"], check=True)
    subprocess.run(["ip", "-n", box.name, "addr", "add", f"{CTR}/24", "dev", "eth0"], check=True)
    for ns, dev in ((s, "docker0"), (box.name, "eth0")):
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    subprocess.run(["ip", "-n", box.name, "route", "add", "default", "via",
                    f"{docker_lab.BRIDGE_NET}.1"], check=True)
    L.server.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    L.server.run(["iptables-nft-restore"], input=docker_lab.docker_rules(HOST_PORT, CTR, 80))
    spec = [{"id": "ctr", "transport": "tcp", "family": "ipv4", "address": "0.0.0.0",
             "port": 80}]
    box.popen([sys.executable, "-c", lab.SERVER, json.dumps(spec)])
    box.wait_for_tcp(80)


def test_podman_port_reservation_stand_in():
    """Podman (netavark) publishes a port with DNAT too, but the host port is held by conmon,
    which only reserves it and relays nothing. A listener named conmon stands in for it: the
    world still reaches the container, and portatlas must say so (not "blocked"), with advice
    that fits Podman (no DOCKER-USER chain), and the advised rule must really close it."""
    with lab.Lab() as L, Netns("pa14p") as box:
        _container_box(L, box)
        spec = [{"id": "conmon", "transport": "tcp", "family": "ipv4", "address": "0.0.0.0",
                 "port": HOST_PORT}]
        # argv[0] "conmon" (what portatlas reads); PYTHONHOME because Python would look for
        # its library next to a binary of that name
        L.server.popen(["env", f"PYTHONHOME={sys.base_prefix}", "bash", "-c",
                        'exec -a conmon "$0" "$@"', sys._base_executable, "-c", lab.SERVER,
                        json.dumps(spec)])
        L.server.wait_for_tcp(HOST_PORT)
        ufw_like(L)
        real = L.connect(tries(), timeout=2.0)
        # from outside the DNAT wins; from this machine to 127.0.0.1 the reservation answers
        assert real == {"subnet": "reached:ctr", "far": "reached:ctr",
                        "local": "reached:conmon"}, real
        v4 = [s for s in judge(L) if s["family"] == "ipv4"]
        assert v4, "no IPv4 listener on the published port"
        for s in v4:
            assert s["verdict"] == "exposed", s
            assert s["forwarded_to"]["address"] == CTR and s["forwarded_to"]["port"] == 80, s
            assert not any("DOCKER-USER" in c for c in s["close"]), s
            assert any("podman run -p 127.0.0.1:8080:80" in c for c in s["close"]), s["close"]
            rule = next(c for c in s["close"] if c.startswith("iptables -t mangle"))
        L.server.run(rule.split())
        real = L.connect(tries(), timeout=1.0)
        assert real == {"subnet": "timeout", "far": "timeout", "local": "reached:conmon"}, real


@pytest.fixture()
def dockerd(tmp_path):
    why = docker_lab.docker_available()
    if why:
        pytest.skip(why)
    with lab.Lab() as L:
        d = docker_lab.Dockerd(L.server, tmp_path)
        try:
            d.start()
        except RuntimeError as exc:
            d.stop()
            pytest.skip(f"dockerd cannot run here: {exc}")
        try:
            yield L, d
        finally:
            d.stop()


def test_real_docker_container(dockerd):
    L, d = dockerd
    d.import_busybox()
    d.docker("run", "-d", "--name", "pa14web", "-p", f"{HOST_PORT}:80", docker_lab.IMAGE,
             *docker_lab.SERVE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if L.connect([{"key": "up", "from": "server", "src": None, "dst": CTR, "port": 80,
                       "transport": "tcp", "listener": "ctr"}], timeout=1.0)["up"] == "reached:ctr":
            break
        time.sleep(0.3)
    # portatlas finds the runtime's API through DOCKER_HOST, as the docker CLI does
    check(L, name="pa14web", env={"DOCKER_HOST": f"unix://{d.sock}"})
