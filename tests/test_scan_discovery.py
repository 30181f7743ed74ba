"""Host discovery (issue 13): on a network of 1,024 IPv4 and 640 IPv6 addresses built in
namespaces — address aliases on a link, a routed block behind a router namespace, live hosts
with listeners, DROP and REJECT rules, the rest dead — discovery's live set equals the
ground truth, as root (ARP/ND, ICMP, raw TCP) and as `nobody` (TCP connects), IPv4 and
IPv6; scanning then covers exactly the live hosts and dead ones are one line / one record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile

import pytest

from support.netns import available

needs_netns = pytest.mark.skipif(not available(), reason="needs root and ip netns")
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


# -- the packets, without sockets ----------------------------------------------------------------
def test_arp_request_and_reply():
    from portatlas.scan import discovery_packets as P

    mac, ip, target = bytes.fromhex("020000000001"), socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.9")
    req = P.arp_request(mac, ip, target)
    assert len(req) == 28 and req[6:8] == b"\x00\x01" and req[24:28] == target
    reply = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, bytes.fromhex("0a0b0c0d0e0f"),
                        target, mac, ip)
    assert P.parse_arp_reply(reply) == P.Neighbour(address=target, mac=bytes.fromhex("0a0b0c0d0e0f"))
    assert P.parse_arp_reply(req) is None            # a request proves nothing
    for n in range(len(reply)):
        assert P.parse_arp_reply(reply[:n]) is None   # short input: None, never an exception


def test_neighbour_solicitation_and_advertisement():
    from portatlas.scan import discovery_packets as P

    target = socket.inet_pton(socket.AF_INET6, "2001:db8::1:2:3")
    assert socket.inet_ntop(socket.AF_INET6, P.solicited_node(target)) == "ff02::1:ff02:3"
    ns = P.neighbor_solicit(target, b"\x02" * 6)
    assert ns[0] == 135 and ns[8:24] == target and ns[24:26] == b"\x01\x01"
    na = bytes([136, 0, 0, 0, 0x60, 0, 0, 0]) + target + b"\x02\x01" + bytes.fromhex("0a0b0c0d0e0f")
    assert P.parse_neighbor_advert(na) == (target, bytes.fromhex("0a0b0c0d0e0f"))
    assert P.parse_neighbor_advert(na[:24]) == P.Neighbour(address=target, mac=None)
    assert P.parse_neighbor_advert(na[:23]) is None
    # a zero-length option must not loop forever
    assert P.parse_neighbor_advert(na[:24] + b"\x02\x00" + b"\0" * 6) == (target, None)


def test_checksums_match_rfc1071():
    from portatlas.scan import discovery_packets as P

    echo = P.icmp_echo(0x1234, 7)
    assert P.checksum(echo) == 0                     # a correct checksum sums to zero
    assert P.checksum(P.icmp_timestamp(1, 2, 123456)) == 0
    src, dst = socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2")
    seg = P.tcp_probe(40000, 443, 99, 0, P.TCP_SYN, src, dst)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    assert P.checksum(pseudo + seg) == 0
    assert P.parse_tcp_answer(P.tcp_probe(443, 40000, 1, 100, P.TCP_SYN | P.TCP_ACK), 40000) \
        == P.TcpAnswer(port=443, flags=0x12)
    assert P.parse_tcp_answer(b"\0" * 13, 40000) is None


def test_icmp_error_quoting_our_probe_is_matched():
    from portatlas.scan import discovery_packets as P

    ip = bytes([0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0]) + socket.inet_aton("198.18.1.1") \
        + socket.inet_aton("198.18.0.1")
    quoted_ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0]) + socket.inet_aton("198.18.0.1") \
        + socket.inet_aton("198.18.1.9")
    pkt = ip + bytes([3, 1, 0, 0, 0, 0, 0, 0]) + quoted_ip + P.icmp_echo(77, 1)[:8]
    assert P.parse_icmp4(pkt, 77) == P.IcmpMessage(kind="error", address=socket.inet_aton("198.18.1.9"),
                                                   icmp_type=3, code=1)
    assert P.parse_icmp4(pkt, 78) is None            # somebody else's ping
    reply = ip[:20] + bytes([0, 0, 0, 0]) + struct.pack("!HH", 77, 1)
    assert P.parse_icmp4(reply, 77) == ("reply", socket.inet_aton("198.18.1.1"), 0, 0)


def test_vendor_lookup_reads_both_formats(tmp_path):
    from portatlas.scan.oui import VendorTable

    nmap = tmp_path / "nmap-mac-prefixes"
    nmap.write_text("# comment\n00000C Cisco\n0050C2A Some Block Vendor\n")
    ieee = tmp_path / "oui.txt"
    ieee.write_text("00-00-0C   (hex)\t\tCisco Systems, Inc\n00000C     (base 16)\t\tCisco Systems, Inc\n")
    t = VendorTable((str(nmap),))
    assert t.vendor("00:00:0c:12:34:56") == "Cisco"
    assert t.vendor("00:50:c2:a1:00:00") == "Some Block Vendor"   # 28-bit block wins
    assert t.vendor("02:00:00:00:00:01") is None
    assert VendorTable((str(ieee),)).vendor("00-00-0C-00-00-01") == "Cisco Systems, Inc"
    assert VendorTable((str(tmp_path / "missing"),)).vendor("00:00:0c:00:00:00") is None


def test_failed_neighbour_announcements_are_parsed():
    from portatlas.scan.neighbours import parse_failed

    def message(family: int, state: int, address: str) -> bytes:
        raw = socket.inet_pton(family, address)
        attr = struct.pack("=HH", 4 + len(raw), 1) + raw
        body = struct.pack("=BBHiHBB", family, 0, 0, 3, state, 0, 1) + attr
        return struct.pack("=IHHII", 16 + len(body), 28, 0, 0, 0) + body

    data = (message(socket.AF_INET, 0x20, "198.18.0.9") + message(socket.AF_INET, 0x02, "198.18.0.2")
            + message(socket.AF_INET6, 0x20, "2001:db8::9"))
    assert parse_failed(data) == ["198.18.0.9", "2001:db8::9"]   # REACHABLE (0x02) is not a failure
    for n in range(len(data)):
        parse_failed(data[:n])                                     # truncated: no exception
    assert parse_failed(struct.pack("=IHHII", 0, 28, 0, 0, 0)) == []   # zero length: no loop


def test_neighbour_dump_is_parsed():
    from portatlas.scan.neighbours import parse_entries

    def entry(family: int, state: int, address: str, mac: bytes | None) -> bytes:
        raw = socket.inet_pton(family, address)
        attrs = struct.pack("=HH", 4 + len(raw), 1) + raw
        if mac is not None:
            attrs += struct.pack("=HH", 10, 2) + mac + b"\0\0"
        body = struct.pack("=BBHiHBB", family, 0, 0, 2, state, 0, 1) + attrs
        return struct.pack("=IHHII", 16 + len(body), 28, 2, 1, 0) + body

    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4
    data = (entry(socket.AF_INET, 0x02, "198.18.0.2", bytes.fromhex("0a0b0c0d0e0f"))
            + entry(socket.AF_INET, 0x20, "198.18.0.3", None)            # failed: no MAC
            + entry(socket.AF_INET6, 0x04, "2001:db8::2", bytes.fromhex("0a0b0c0d0e10")) + done)
    assert parse_entries(data) == ({"198.18.0.2": "0a:0b:0c:0d:0e:0f",
                                    "2001:db8::2": "0a:0b:0c:0d:0e:10"}, True)
    for n in range(len(data)):
        parse_entries(data[:n])


def test_ping_only_refuses_port_options(capsys):
    from portatlas.cli import main

    for extra in (["-p", "22"], ["--top", "10"], ["--udp"], ["--identify"]):
        assert main(["scan", "198.18.0.1", "-sn", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("portatlas: error: --ping-only")
    assert main(["scan", "198.18.0.1", "-sn", "-Pn"]) == 2


# -- the network ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net():
    if not available():
        pytest.skip("needs root and ip netns")
    from support.scan_network import Network

    with Network(base=160) as n:
        yield n


def _run(net, args, user=None, env=None, timeout=120):
    prefix = AS_NOBODY if user == "nobody" else []
    full = dict(os.environ, NO_COLOR="1", **(env or {}))
    return net.s.run(prefix + [sys.executable, "-m", "portatlas", *args], check=False,
                     timeout=timeout, env=full)


def _ping_json(net, targets, user=None, env=None):
    r = _run(net, ["scan", *targets, "-sn", "--json"], user, env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_netns
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_root_discovery_equals_truth(net, family):
    targets = net.targets_v4 if family == "v4" else net.targets_v6
    doc = _ping_json(net, targets)
    assert doc["options"]["discovery"] == {"mode": "ping-only", "probes": "raw"}
    n = 1024 if family == "v4" else 640
    assert doc["summary"]["hosts"] == n
    up = {h["address"] for h in doc["hosts"] if h["status"] == "up"}
    assert up == net.truth("raw", family)
    assert doc["summary"]["hosts_up"] + doc["summary"]["hosts_down"] == n
    by = {h["address"]: h for h in doc["hosts"]}
    mac = net.mac_of_t()
    for h in net.hosts:
        if (":" in h.address) != (family == "v6"):
            continue
        d = by[h.address]["discovery"]
        if h.kind == "link":
            # on the link: ARP/ND answered, even for the host that drops every probe
            assert d["method"] == ("arp" if family == "v4" else "nd"), d
            assert d["mac"] == mac and by[h.address]["status_reason"] in ("arp-response", "nd-response")
        elif h.rule != "drop-probes":
            assert d["method"].startswith(("icmp", "tcp-")), d
    dead_link = by[net.v4(0, 99) if family == "v4" else net.v6(0, 0x99)]
    assert dead_link["status"] == "down" and dead_link["status_reason"] == "no-response"
    assert dead_link["discovery"]["method"] in ("arp", "nd")
    assert dead_link["ports"] == [] and dead_link["counts"] == {}
    # the REJECT with admin-prohibited came from the host itself: up, with that reason
    assert by[net.v4(2, 6) if family == "v4" else net.v6(2, 6)]["status"] == "up"


@needs_netns
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_unprivileged_discovery_equals_truth(net, family, readable_db):
    targets = net.targets_v4 if family == "v4" else net.targets_v6
    doc = _ping_json(net, targets, user="nobody", env={"PORTATLAS_DB": readable_db})
    assert doc["options"]["discovery"] == {"mode": "ping-only", "probes": "connect"}
    up = {h["address"] for h in doc["hosts"] if h["status"] == "up"}
    assert up == net.truth("connect", family)
    by = {h["address"]: h for h in doc["hosts"]}
    for h in net.hosts:
        if (":" in h.address) != (family == "v6") or h.address not in up:
            continue
        d = by[h.address]["discovery"]
        assert d["method"] in ("tcp-connect-80", "tcp-connect-443"), d
    # the host's own ICMP port unreachable (REJECT) means up; a reset too
    assert by[net.v4(0, 12) if family == "v4" else net.v6(0, 12)]["status_reason"] == "port-unreach"
    assert by[net.v4(0, 11) if family == "v4" else net.v6(0, 11)]["status_reason"] == "conn-refused"
    # the kernel's neighbour table (an rtnetlink dump) gives the MAC of a host on the link
    assert by[net.v4(0, 10) if family == "v4" else net.v6(0, 10)]["discovery"]["mac"] == net.mac_of_t()
    assert by[net.v4(2, 5) if family == "v4" else net.v6(2, 5)]["discovery"]["mac"] is None


@needs_netns
def test_unprivileged_scan_covers_the_live_hosts(net, readable_db):
    r = _run(net, ["scan", *net.targets_v4, "-p", "22,443,8080", "--json", "--no-progress"],
             user="nobody", env={"PORTATLAS_DB": readable_db})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    truth = net.truth("connect", "v4")
    assert {h["address"] for h in doc["hosts"] if h["status"] == "up"} == truth
    open_ports = {(h["address"], p["port"]) for h in doc["hosts"] for p in h["ports"]
                  if p["state"] == "open"}
    assert open_ports == {(h.address, p) for h in net.hosts if h.address in truth
                          for p in h.ports if p in (22, 443, 8080)}


@needs_netns
def test_scan_covers_exactly_the_live_hosts(net):
    r = _run(net, ["scan", *net.targets_v4, "-p", "22,80,443,8080", "--json", "--no-progress"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    truth = net.truth("raw", "v4")
    open_ports = {(h["address"], p["port"]) for h in doc["hosts"] for p in h["ports"]
                  if p["state"] == "open"}
    expected = {(h.address, p) for h in net.hosts if ":" not in h.address for p in h.ports}
    assert open_ports == expected
    for h in doc["hosts"]:
        if h["address"] in truth:
            assert h["status"] == "up" and sum(h["counts"].values()) == 4, h
        else:
            assert h["status"] == "down" and h["counts"] == {} and not h["ports"], h


@needs_netns
def test_down_hosts_in_every_format(net):
    targets = [f"198.18.{net.base}.0/24"]
    table = _run(net, ["scan", *targets, "-p", "22,443", "--no-progress"]).stdout
    live = len(net.truth("raw", "v4") & {net.v4(0, i) for i in range(256)})
    assert f"{256 - live} hosts down: no ARP reply" in table
    assert "no port to list" not in table
    assert table.count("  up · ") == live         # the scanner itself is "up · this machine"

    xml = _run(net, ["scan", *targets, "-p", "22,443", "--xml"]).stdout
    assert xml.count('<status state="down" reason="no-response" reason_ttl="0"/>') == 256 - live
    assert f'<hosts up="{live}" down="{256 - live}" total="256"/>' in xml
    assert 'addrtype="mac"' in xml
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(xml)
    try:
        check = subprocess.run(["xmllint", "--noout", "--dtdvalid", "/usr/share/nmap/nmap.dtd", f.name],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr[:2000]
    finally:
        os.unlink(f.name)

    rows = list(csv.DictReader(io.StringIO(_run(net, ["scan", *targets, "-p", "22,443", "--csv"]).stdout)))
    down = [row for row in rows if row["state"] == "down"]
    assert len(down) == 256 - live and all(row["port"] == "" and row["reason"] == "no-response"
                                           for row in down)

    nd = _run(net, ["scan", *targets, "-p", "22,443", "--ndjson", "--no-progress"]).stdout
    hosts = [json.loads(x) for x in nd.splitlines() if '"type":"host"' in x]
    assert sum(1 for h in hosts if h["status"] == "down") == 256 - live
    ports = [json.loads(x) for x in nd.splitlines() if '"type":"port"' in x]
    assert {p["address"] for p in ports} <= net.truth("raw", "v4")


@needs_netns
def test_open_lists_only_hosts_with_open_ports(net):
    doc = json.loads(_run(net, ["scan", *net.targets_v4, "-p", "22,8080", "--open", "--json",
                                "--no-progress"]).stdout)
    listed = {h["address"] for h in doc["hosts"]}
    assert listed == {h.address for h in net.hosts if ":" not in h.address and {22, 8080} & set(h.ports)}
    assert all(p["state"] == "open" for h in doc["hosts"] for p in h["ports"])
    assert doc["summary"]["hosts"] == 1024   # the summary still counts every host


@needs_netns
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_no_ping_settles_dead_link_hosts_at_the_first_failure(net, family):
    """-Pn: every address is probed; a dead on-link address is settled by its first failed
    ARP/ND and its queued probes are dropped (the scan says down, not 'filtered' x ports)."""
    block = f"198.18.{net.base}.0/26" if family == "v4" else f"2001:db8:{net.base}:0::/122"
    r = _run(net, ["scan", block, "-Pn", "-p", "1-300", "--json", "--no-progress"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["options"]["discovery"]["mode"] == "off"
    truth = net.truth("raw", family)
    for h in doc["hosts"]:
        if h["address"] in truth:
            assert h["status"] in ("up", "unknown") and h["discovery"]["reason"] in ("user-set",), h
            assert sum(h["counts"].values()) == 300
        else:
            assert h["status"] == "down", h
            assert h["discovery"]["method"] == ("arp" if family == "v4" else "nd")
            assert h["ports"] == []


@needs_netns
def test_live_hosts_are_scanned_while_discovery_goes_on(net):
    """One event loop: the ports of a host that answered ARP are probed (and answered)
    before discovery has given up on the dead addresses beside it."""
    code = f"""
import json
from portatlas.scan.discovery import Discovery, DiscoveryOptions
from portatlas.scan.targets import parse_targets
from portatlas.scan.tcp import TcpConnectEngine
from portatlas.scan.timing import TimingOptions
hosts = parse_targets(["{net.v4(0, 10)}", "{net.v4(0, 99)}", "{net.v4(0, 98)}"])
events = []
def emit(batch, bulk):
    for b in batch:
        events.append(["port", b[0], b[1]])
    for k, ports in bulk.items():
        events.extend(["port", k[0], p] for p in ports)
opts = TimingOptions()
stage = Discovery(hosts, DiscoveryOptions(), opts)
engine = TcpConnectEngine(hosts, [[22, 23]] * 3, opts, emit, discovery=stage, flush_interval=0.0,
                          on_host=lambda i, st: events.append(["host", i, st.state]))
engine.run()
print(json.dumps(events))
"""
    events = json.loads(net.s.run([sys.executable, "-c", code]).stdout)
    assert ["host", 0, "up"] in events and ["host", 1, "down"] in events and ["host", 2, "down"] in events
    first_port = min(i for i, e in enumerate(events) if e[0] == "port")
    assert first_port < events.index(["host", 1, "down"])
    assert sorted(e[2] for e in events if e[0] == "port") == [22, 23]   # only the live host
    assert all(e[1] == 0 for e in events if e[0] == "port")
