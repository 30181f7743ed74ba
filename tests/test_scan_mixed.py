"""`-p` with transports: nmap's U:53,T:22,80 and portatlas's 53/udp, both transports in one run.

Parsing is unit-tested; a mixed scan runs against a target namespace (TCP via the TCP engine,
UDP via the UDP engine) and its results are checked in every output format.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from portatlas.errors import UsageError
from portatlas.scan.ports import has_transports, parse_transport_spec


# --- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,default,expected", [
    ("U:53,T:22,80", ["tcp"], {"udp": [53], "tcp": [22, 80]}),
    ("U:53,161,T:21-23", ["tcp"], {"udp": [53, 161], "tcp": [21, 22, 23]}),
    ("53/udp", ["tcp"], {"udp": [53]}),
    ("53/udp,22", ["tcp"], {"udp": [53], "tcp": [22]}),
    ("22,U:53", ["tcp", "udp"], {"tcp": [22], "udp": [22, 53]}),   # unqualified: both
    ("22,53/UDP", ["udp"], {"udp": [22, 53]}),
    ("u:53, t:80", ["tcp"], {"udp": [53], "tcp": [80]}),
    ("T:-3,U:65534-", ["tcp"], {"tcp": [1, 2, 3], "udp": [65534, 65535]}),
    ("U:53,53/tcp", ["tcp"], None),  # /tcp inside a U: run names two transports
])
def test_transport_specs(spec, default, expected):
    if expected is None:
        with pytest.raises(UsageError, match="two transports"):
            parse_transport_spec(spec, default)
    else:
        assert parse_transport_spec(spec, default) == expected


@pytest.mark.parametrize("spec,words", [
    ("U:", "names no port"), ("S:80", "not supported"), ("P:6", "not supported"),
    ("X:1", "unknown qualifier"), ("53/sctp", "not supported"), ("T:53/udp", "two transports"),
    ("U:0", "port 0"), ("U:70000", "out of range"), ("U:53,,T:1", "empty item"),
    ("/udp", "empty item"), ("U:abc", "not a port"),
])
def test_bad_transport_specs(spec, words):
    with pytest.raises(UsageError) as info:
        parse_transport_spec(spec, ["tcp"])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_which_specs_name_transports():
    assert has_transports("U:53") and has_transports("53/udp") and has_transports("22,T:80")
    assert not has_transports("22,80,1000-2000") and not has_transports("-") \
        and not has_transports("http,ssh")


def test_service_names_per_transport():
    looked_up = []

    def lookup(name, transport):
        looked_up.append((name, transport))
        return {("domain", "udp"): [53], ("ssh", "tcp"): [22]}.get((name, transport), [])

    assert parse_transport_spec("U:domain,T:ssh", ["tcp"], service_ports=lookup) == \
        {"udp": [53], "tcp": [22]}
    assert looked_up == [("domain", "udp"), ("ssh", "tcp")]
    with pytest.raises(UsageError, match="no registered port"):
        parse_transport_spec("U:ssh-not-a-service", ["tcp"], service_ports=lookup)


def test_cli_refuses_bad_mixed_specs_before_any_traffic():
    for spec in ("S:80", "U:", "53/quic"):
        proc = subprocess.run([sys.executable, "-m", "portatlas", "scan", "198.18.0.1", "-p", spec],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, NO_COLOR="1"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("portatlas: error: bad port spec")
        assert proc.stderr.count("\n") == 1 and not proc.stdout


# --- a mixed scan against a namespace -------------------------------------------------------
from support import netns  # noqa: E402

TCP_OPEN, TCP_CLOSED = [22, 80], [81]
UDP_OPEN, UDP_CLOSED = [53], [54]
SPEC = "U:53,54,T:22,80,81"


@pytest.fixture(scope="module")
def mixed_lab():
    if not netns.available():
        pytest.skip("needs root and ip netns")
    from support.scan_lab import LISTENER, UDP_RESPONDER, _wait_ready

    with netns.Netns("pa12bs") as s, netns.Netns("pa12bt") as t:
        # the veth pair is created inside the scanner's namespace, never in the root one
        subnet = 200 + os.getpid() % 50
        netns._ip("-n", s.name, "link", "add", "pa12b0", "type", "veth", "peer", "name",
                  "pa12b1", "netns", t.name)
        for ns, ifname, addr in ((s, "pa12b0", f"198.18.{subnet}.1"), (t, "pa12b1", f"198.18.{subnet}.2")):
            netns._ip("-n", ns.name, "addr", "add", f"{addr}/24", "dev", ifname)
            netns._ip("-n", ns.name, "link", "set", ifname, "up")
        t.run(["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0"])
        servers = [t.popen([sys.executable, "-c", LISTENER, ",".join(map(str, TCP_OPEN)), "", "300"],
                           stdout=subprocess.PIPE, text=True),
                   t.popen([sys.executable, "-c", UDP_RESPONDER, ",".join(map(str, UDP_OPEN))],
                           stdout=subprocess.PIPE, text=True)]
        for proc in servers:
            _wait_ready(proc)
        yield s, f"198.18.{subnet}.2"


def _scan(lab, *args: str) -> str:
    s, ip = lab
    proc = s.run([sys.executable, "-m", "portatlas", "scan", ip, "-p", SPEC, "--all",
                  "--no-progress", *args], check=False, timeout=120,
                 env=dict(os.environ, NO_COLOR="1"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _expected(ip: str) -> dict:
    truth = {(ip, p, "tcp"): "open" for p in TCP_OPEN}
    truth.update({(ip, p, "tcp"): "closed" for p in TCP_CLOSED})
    truth.update({(ip, p, "udp"): "open" for p in UDP_OPEN})
    truth.update({(ip, p, "udp"): "closed" for p in UDP_CLOSED})
    return truth


@pytest.mark.netns
def test_mixed_scan_in_every_format(mixed_lab):
    from support.scan_lab import nmap_states, parse_ndjson

    ip = mixed_lab[1]
    expected = _expected(ip)

    ndjson = parse_ndjson(_scan(mixed_lab, "--ndjson"))
    assert {k: v[0] for k, v in ndjson["ports"].items()} == expected

    report = json.loads(_scan(mixed_lab, "--json"))
    got = {(h["address"], p["port"], p["transport"]): p["state"]
           for h in report["hosts"] for p in h["ports"]}
    assert got == expected
    assert report["options"]["transports"] == ["tcp", "udp"]
    assert report["options"]["ports"] == {"tcp": "22,80-81", "udp": "53-54"}

    rows = list(csv.DictReader(io.StringIO(_scan(mixed_lab, "--csv"))))
    assert {(r["address"], int(r["port"]), r["transport"]): r["state"] for r in rows} == expected

    assert nmap_states(_scan(mixed_lab, "--xml")) == expected

    table = _scan(mixed_lab)
    for port, transport in ((22, "tcp"), (80, "tcp"), (53, "udp")):
        assert f"{port}/{transport}" in table
