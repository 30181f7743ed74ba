"""UDP scans against real services in a target namespace (dnsmasq, chronyd, snmpd, memcached
and a small responder), closed, DROP-ped and REJECT-ed ports, with and without the target's
ICMP rate limit."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from support import netns
from support.scan_lab import Lab

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

DAEMONS = ("dnsmasq", "chronyd", "snmpd", "memcached")
CLOSED = [54, 1000, 1001, 1002, 1003]
DROP = [1010, 1011]
PROHIBITED = 1020
SPEC = "53,123,161,11211,9999," + ",".join(map(str, CLOSED + DROP + [PROHIBITED]))


def _daemon(lab, tmp_path, name: str, ip: str) -> subprocess.Popen:
    if name == "dnsmasq":
        cmd = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--port=53",
               f"--listen-address={ip}", "--bind-interfaces", f"--pid-file={tmp_path}/dnsmasq.pid",
               "--user=root", "--conf-file=/dev/null"]
    elif name == "chronyd":
        conf = tmp_path / "chrony.conf"
        conf.write_text(f"allow all\nport 123\ncmdport 0\nlocal stratum 10\n"
                        f"driftfile {tmp_path}/chrony.drift\npidfile {tmp_path}/chrony.pid\n")
        cmd = ["chronyd", "-x", "-d", "-f", str(conf)]  # -x: never touch this machine's clock
    elif name == "snmpd":
        conf = tmp_path / "snmpd.conf"
        conf.write_text("rocommunity public\n")
        cmd = ["snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", f"{tmp_path}/snmpd.pid",
               f"udp:{ip}:161"]
    else:
        cmd = ["memcached", "-U", "11211", "-p", "0", "-l", ip, "-u", "root"]
    return lab.t.popen(cmd)


@pytest.fixture(scope="module")
def udp_lab(tmp_path_factory):
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.fail(f"Debian packages missing (see .ci/apt/scan.txt): {missing}")
    tmp = tmp_path_factory.mktemp("udp")
    with Lab() as lab:
        procs = [_daemon(lab, tmp, name, lab.ip) for name in DAEMONS]
        lab.udp_respond([9999])
        lab.firewall([["-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports",
                       ",".join(map(str, DROP)), "-j", "DROP"],
                      ["-A", "INPUT", "-p", "udp", "--dport", str(PROHIBITED), "-j", "REJECT",
                       "--reject-with", "icmp-admin-prohibited"]], v6=False)
        time.sleep(1.0)  # daemons bind their sockets
        for name, proc in zip(DAEMONS, procs):
            assert proc.poll() is None, f"{name} did not start in the target namespace"
        yield lab


def truth(ip: str) -> dict:
    t = {(ip, p, "udp"): ("open", "udp-response") for p in (53, 123, 161, 11211, 9999)}
    t.update({(ip, p, "udp"): ("closed", "port-unreach") for p in CLOSED})
    t.update({(ip, p, "udp"): ("open|filtered", "no-response") for p in DROP})
    t[(ip, PROHIBITED, "udp")] = ("filtered", "admin-prohibited")
    return t


def test_udp_services_ground_truth_five_runs(udp_lab):
    expected = truth(udp_lab.ip)
    for run in range(5):
        got = udp_lab.scan(udp_lab.ip, "--udp", "-p", SPEC)["ports"]
        assert got == expected, f"run {run + 1}: " + str(
            {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v})


def test_icmp_rate_limited_host_is_still_exact(udp_lab):
    """Linux's default: one ICMP error per second per peer after a burst of six. Silent
    ports are verified against a known-closed canary port until exact (nmap -sU -T4 leaves
    about a third of such ports open|filtered)."""
    closed = list(range(2000, 2016))
    udp_lab.t.run(["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=1000"])
    try:
        start = time.monotonic()
        got = udp_lab.scan(udp_lab.ip, "--udp", "-p", "53," + ",".join(map(str, closed + DROP)),
                           timeout=120)["ports"]
        elapsed = time.monotonic() - start
    finally:
        udp_lab.t.run(["sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0"])
    expected = {(udp_lab.ip, p, "udp"): ("closed", "port-unreach") for p in closed}
    expected[(udp_lab.ip, 53, "udp")] = ("open", "udp-response")
    expected.update({(udp_lab.ip, p, "udp"): ("open|filtered", "no-response") for p in DROP})
    assert got == expected
    assert elapsed < 60


def test_udp_check_command(udp_lab):
    proc = udp_lab.portatlas("check", udp_lab.ip, "53/udp", "--no-identify")
    assert proc.returncode == 0, proc.stderr
    assert "53/udp open" in proc.stdout and "domain" in proc.stdout
    proc = udp_lab.portatlas("check", udp_lab.ip, "54/udp", "--no-identify")
    assert proc.returncode == 1
    assert "54/udp closed" in proc.stdout and "ICMP port unreachable" in proc.stdout


def test_udp_over_ipv6(udp_lab):
    got = udp_lab.scan(udp_lab.ip6, "--udp", "-p", "9999,54")["ports"]
    assert got == {(udp_lab.ip6, 9999, "udp"): ("open", "udp-response"),
                   (udp_lab.ip6, 54, "udp"): ("closed", "port-unreach")}


def test_tcp_and_udp_in_one_scan(udp_lab):
    got = udp_lab.scan(udp_lab.ip, "--tcp", "--udp", "-p", "53,54")["ports"]
    assert got[(udp_lab.ip, 53, "udp")] == ("open", "udp-response")
    assert got[(udp_lab.ip, 53, "tcp")] == ("open", "syn-ack")  # dnsmasq serves TCP too
    assert got[(udp_lab.ip, 54, "tcp")] == ("closed", "conn-refused")
    assert got[(udp_lab.ip, 54, "udp")] == ("closed", "port-unreach")
