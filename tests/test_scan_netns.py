"""TCP scans of a target namespace against a known ground truth: open, closed, REJECT-ed in
four ways and DROP-ped ports, IPv4 and IPv6, with and without 50 ms delay and 1% loss; five
runs each must match exactly."""

from __future__ import annotations

import pytest

from support import netns
from support.scan_lab import Lab
from support.scan_netem import Netem

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

OPEN = [22, 80, 443, 8080, 40001, 65535]
REJECT = {81: "icmp-port-unreachable", 83: "tcp-reset", 84: "icmp-admin-prohibited",
          85: "icmp-host-unreachable", 86: "icmp-net-unreachable"}
DROP = [87, 88, 8081, *range(1000, 1011)]
SPEC = "1-1100,8080,8081,40001,65535"


def expected_states(v6: bool) -> dict[int, tuple[str, str]]:
    from portatlas.scan.ports import parse_port_spec

    truth = {p: ("closed", "conn-refused") for p in parse_port_spec(SPEC)}
    for p in OPEN:
        truth[p] = ("open", "syn-ack")
    reject_reason = {"icmp-port-unreachable": "port-unreach", "tcp-reset": "conn-refused",
                     "icmp-admin-prohibited": "admin-prohibited",
                     "icmp-host-unreachable": "host-unreach", "icmp-net-unreachable": "net-unreach"}
    for p, how in REJECT.items():
        state = "closed" if how == "tcp-reset" else "filtered"
        truth[p] = (state, reject_reason[how])
    for p in DROP:
        truth[p] = ("filtered", "no-response")
    return truth


def _rules() -> list[list[str]]:
    rules = []
    for port, how in REJECT.items():
        rules.append(["-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "REJECT",
                      "--reject-with", how])
    for port in DROP:
        rules.append(["-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"])
    return rules


@pytest.fixture(scope="module")
def lab():
    with Lab() as lab:
        lab.listen(OPEN + [8081])
        lab.firewall(_rules())
        yield lab


def _by_port(result: dict, address: str) -> dict[int, tuple[str, str]]:
    return {port: v for (addr, port, t), v in result["ports"].items() if addr == address}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ground_truth_five_runs(lab, family):
    address = lab.ip if family == "ipv4" else lab.ip6
    truth = expected_states(family == "ipv6")
    for run in range(5):
        got = _by_port(lab.scan(address, "-p", SPEC), address)
        diff = {p: (got.get(p), truth[p]) for p in truth if got.get(p) != truth[p]}
        assert not diff, f"run {run + 1}: {len(diff)} ports differ, e.g. {dict(list(diff.items())[:8])}"
        assert set(got) == set(truth)


def test_both_families_in_one_scan_and_host_status(lab):
    result = lab.scan(lab.ip, lab.ip6, "-p", "22,23,87")
    assert result["ports"][(lab.ip, 22, "tcp")] == ("open", "syn-ack")
    assert result["ports"][(lab.ip6, 22, "tcp")] == ("open", "syn-ack")
    assert result["ports"][(lab.ip6, 23, "tcp")] == ("closed", "conn-refused")
    assert result["ports"][(lab.ip, 87, "tcp")] == ("filtered", "no-response")
    assert [h["address"] for h in result["hosts"]] == [lab.ip, lab.ip6]
    assert all(h["status"] == "up" for h in result["hosts"])


def test_delay_and_loss_five_runs(lab):
    """50 ms one-way delay and 1% loss on everything the target sends (netem-equivalent)."""
    truth = expected_states(False)
    with Netem(lab.t, lab.t_if, delay=0.05, loss=0.01):
        for run in range(5):
            result = lab.scan(lab.ip, "-p", SPEC)
            got = _by_port(result, lab.ip)
            diff = {p: (got.get(p), truth[p]) for p in truth if got.get(p) != truth[p]}
            assert not diff, f"run {run + 1}: {dict(list(diff.items())[:8])}"
            timing = result["hosts"][0]["timing"]["tcp"]
            assert 40 <= timing["srtt_ms"] <= 400, timing  # 50 ms plus this busy machine
        syn_truth = {p: (s, "reset" if r == "conn-refused" else r) for p, (s, r) in truth.items()}
        for run in range(3):
            got = _by_port(lab.scan(lab.ip, "-p", SPEC, "--syn"), lab.ip)
            diff = {p: (got.get(p), syn_truth[p]) for p in syn_truth if got.get(p) != syn_truth[p]}
            assert not diff, f"SYN run {run + 1}: {dict(list(diff.items())[:8])}"


def test_registered_services_for_open_ports(lab):
    proc = lab.portatlas("scan", lab.ip, "-p", "22,80,40001", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    import json

    doc = json.loads(proc.stdout)
    ports = {p["port"]: p for p in doc["hosts"][0]["ports"]}
    assert [r["service"] for r in ports[22]["registered"]][:1] == ["ssh"]
    assert "http" in [r["service"] for r in ports[80]["registered"]]
    assert ports[40001]["registered"] == []  # nothing registered there


def test_check_command_exit_status_and_text(lab):
    proc = lab.portatlas("check", lab.ip, "22", "--no-identify")
    assert proc.returncode == 0, proc.stderr
    assert "22/tcp open" in proc.stdout and "ssh" in proc.stdout
    proc = lab.portatlas("check", lab.ip, "23", "--no-identify")
    assert proc.returncode == 1
    assert "23/tcp closed" in proc.stdout and "refused" in proc.stdout
    proc = lab.portatlas("check", lab.ip6, "87", "--no-identify", "--max-timeout", "0.3",
                         "--initial-timeout", "0.3")
    assert proc.returncode == 1
    assert "87/tcp filtered" in proc.stdout and "no answer" in proc.stdout


def test_check_json_schema(lab):
    import json

    proc = lab.portatlas("check", lab.ip, "80", "--no-identify", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "portatlas.scan/1" and doc["command"] == "check"
    (port,) = doc["hosts"][0]["ports"]
    assert port["port"] == 80 and port["state"] == "open" and port["rtt_ms"] >= 0


def test_scan_names_nothing_else(lab):
    """Only the named ports of the named host are probed: count SYNs at the target."""
    lab.t.run(["iptables", "-w", "-I", "INPUT", "1", "-p", "tcp", "--syn", "-j", "ACCEPT"])
    lab.t.run(["iptables", "-w", "-Z", "INPUT"])
    try:
        lab.scan(lab.ip, "-p", "100-149")
        out = lab.t.run(["iptables", "-w", "-L", "INPUT", "1", "-v", "-x", "-n"]).stdout.split()
        assert int(out[0]) == 50, out  # one SYN per port: all closed, no retries, no extras
    finally:
        lab.t.run(["iptables", "-w", "-D", "INPUT", "-p", "tcp", "--syn", "-j", "ACCEPT"])


def test_syn_scan_ground_truth_five_runs(lab):
    """The raw-socket SYN mode (root): same ground truth, closed ports say 'reset'."""
    truth = {p: (s, "reset" if r == "conn-refused" else r)
             for p, (s, r) in expected_states(False).items()}
    for run in range(5):
        got = _by_port(lab.scan(lab.ip, "-p", SPEC, "--syn"), lab.ip)
        diff = {p: (got.get(p), truth[p]) for p in truth if got.get(p) != truth[p]}
        assert not diff, f"run {run + 1}: {dict(list(diff.items())[:8])}"


def test_syn_scan_refuses_ipv6(lab):
    proc = lab.portatlas("scan", lab.ip6, "-p", "22", "--syn")
    assert proc.returncode == 2 and "IPv4 addresses only" in proc.stderr
