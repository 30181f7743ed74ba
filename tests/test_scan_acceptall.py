"""Hosts that accept every port are reported as such, not as hundreds of open ports."""

from __future__ import annotations

import json

import pytest

from support import netns
from support.scan_lab import Lab

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

CATCH_ALL = 9999


def _redirect_all(lab: Lab, except_port: int) -> None:
    """nftables: every TCP port but one goes to the catch-all listener."""
    for family in ("ip", "ip6"):
        lab.t.run(["nft", "add", "table", family, "pa_nat"])
        lab.t.run(["nft", "add", "chain", family, "pa_nat", "pre",
                   "{ type nat hook prerouting priority -100 ; }"])
        lab.t.run(["nft", "add", "rule", family, "pa_nat", "pre", "tcp", "dport", "!=",
                   str(except_port), "redirect", "to", f":{CATCH_ALL}"])


@pytest.fixture(scope="module")
def redirect_lab():
    with Lab() as lab:
        lab.listen([CATCH_ALL], banner=r"220 catch-all ready 4711\r\n")
        lab.listen([22], banner=r"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        _redirect_all(lab, except_port=22)
        yield lab


def test_redirect_everything_five_runs(redirect_lab):
    lab = redirect_lab
    for run in range(5):
        result = lab.scan(lab.ip, "-p", "1-300")
        (host,) = result["hosts"]
        info = host["accept_all"]
        assert info is not None, f"run {run + 1}: accept-all not detected"
        assert info["kind"] == "banner" and "catch-all ready" in info["banner"]
        assert info["catch_all_ports"] == 299 and info["scanned_ports"] == 300
        assert info["distinct_ports"] == [22] and info["checked"] == "all"
        assert info["catch_all"] == "1-21,23-300"
        # the only port left as an ordinary open port is the real service
        wild = {p["port"] for p in host["updated_ports"] if p.get("wildcard")}
        assert wild == set(range(1, 301)) - {22}


def test_json_lists_the_real_service_only(redirect_lab):
    lab = redirect_lab
    proc = lab.portatlas("scan", lab.ip6, "-p", "1-200", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (host,) = doc["hosts"]
    assert [p["port"] for p in host["ports"]] == [22]
    assert host["accept_all"]["catch_all_ports"] == 199
    assert doc["summary"]["accept_all_hosts"] == 1


def test_table_says_accept_all(redirect_lab):
    lab = redirect_lab
    proc = lab.portatlas("scan", lab.ip, "-p", "1-100", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "accept-all" in proc.stdout and "22/tcp" in proc.stdout
    assert "99 of 100 scanned tcp ports" in proc.stdout
    assert "23/tcp" not in proc.stdout


def test_tcpwrapped_front_and_a_real_mixed_host():
    with Lab() as lab:
        # every port accepted and closed at once, without a word ("tcpwrapped")
        lab.listen([CATCH_ALL])
        _redirect_all(lab, except_port=1)
        result = lab.scan(lab.ip, "-p", "100-163")
        info = result["hosts"][0]["accept_all"]
        assert info["kind"] == "closed" and info["catch_all_ports"] == 64
    with Lab() as lab:
        # 20 real listeners, half greeting, half silent: ports differ, so no verdict
        lab.listen(range(5000, 5010), banner=r"hello\r\n")
        lab.listen(range(5010, 5020))
        result = lab.scan(lab.ip, "-p", "5000-5019")
        assert result["hosts"][0]["accept_all"] is None
        assert sum(1 for v in result["ports"].values() if v[0] == "open") == 20


def test_detection_can_be_switched_off(redirect_lab):
    lab = redirect_lab
    result = lab.scan(lab.ip, "-p", "1-40", "--no-accept-all")
    assert result["hosts"][0]["accept_all"] is None
    assert sum(1 for v in result["ports"].values() if v[0] == "open") == 40


def test_syn_proxy_with_nothing_behind():
    """iptables SYNPROXY answers every SYN itself, then resets the connection when the
    port behind has no listener: reported as an accept-all host of kind 'reset', with the
    one real service (22) kept as an ordinary open port."""
    with Lab() as lab:
        lab.listen([22], banner=r"SSH-2.0-OpenSSH_9.2p1\r\n")
        lab.t.run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"], check=False)
        lab.firewall([
            ["-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--syn", "-j", "CT", "--notrack"],
            ["-A", "INPUT", "-p", "tcp", "-m", "conntrack", "--ctstate", "INVALID,UNTRACKED",
             "-j", "SYNPROXY", "--sack-perm", "--timestamp", "--wscale", "7", "--mss", "1460"],
            ["-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"]], v6=False)
        for run in range(5):
            result = lab.scan(lab.ip, "-p", "1-120")
            info = result["hosts"][0]["accept_all"]
            assert info is not None, f"run {run + 1}"
            assert info["kind"] == "reset" and info["catch_all_ports"] == 119
            assert info["distinct_ports"] == [22]
