"""Targets, port specs and every refusal: one line, non-zero exit, nothing sent."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from portatlas.errors import UsageError
from portatlas.scan.ports import compact, parse_port_spec, top_ports
from portatlas.scan.targets import expand_target, parse_targets


# --- port specs ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec,expected", [
    ("22", [22]),
    ("22,80,443", [22, 80, 443]),
    ("80,22,80", [22, 80]),
    ("1-5", [1, 2, 3, 4, 5]),
    ("-3", [1, 2, 3]),
    ("65533-", [65533, 65534, 65535]),
    (" 7 , 9-10 ", [7, 9, 10]),
])
def test_port_specs(spec, expected):
    assert parse_port_spec(spec) == expected


def test_dash_alone_is_every_port():
    ports = parse_port_spec("-")
    assert ports[0] == 1 and ports[-1] == 65535 and len(ports) == 65535


@pytest.mark.parametrize("spec,words", [
    ("", "empty port spec"),
    ("22,,80", "empty item"),
    ("0", "port 0"),
    ("65536", "out of range"),
    ("80-20", "runs backwards"),
    ("1-2-3", "more than one"),
    ("http", "not a port"),
    ("22x", "not a port number"),
    ("٣", "not a port"),  # a non-ASCII digit
])
def test_bad_port_specs(spec, words):
    with pytest.raises(UsageError) as err:
        parse_port_spec(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_service_names_in_specs():
    lookup = {"ssh": [22], "http": [80, 8080]}.get
    assert parse_port_spec("ssh,http,443", service_ports=lambda n: lookup(n, [])) == [22, 80, 443, 8080]
    with pytest.raises(UsageError, match="no registered port"):
        parse_port_spec("nosuchservice", service_ports=lambda n: [])


def test_compact_round_trips():
    for ports in ([1, 2, 3, 5, 7, 8], [65535], list(range(1, 65536)), [1, 3, 5]):
        assert parse_port_spec(compact(ports)) == ports


def test_top_ports_prefers_nmap_frequencies_then_builtin():
    def nmap_top(transport, n):
        return [443, 80, 22][:n]

    assert top_ports(2, "tcp", nmap_top) == ([80, 443], "nmap-services")
    ports, source = top_ports(10, "tcp", None)
    assert source == "built-in list" and len(ports) == 10 and 80 in ports
    ports, source = top_ports(5, "udp", lambda t, n: [])
    assert source == "built-in list" and 53 in ports
    with pytest.raises(UsageError):
        top_ports(0, "tcp", None)


def test_builtin_lists_have_no_duplicates():
    from portatlas.scan.common_ports import COMMON_TCP, COMMON_UDP

    assert len(COMMON_TCP) == len(set(COMMON_TCP)) >= 100
    assert len(COMMON_UDP) == len(set(COMMON_UDP))


def test_top_ports_from_the_knowledge_base(atlas):
    if not atlas.store.nmap_top("tcp", 1):
        pytest.skip("this database has no nmap-services data")
    ports, source = top_ports(100, "tcp", atlas.store.nmap_top)
    assert source == "nmap-services" and len(ports) == 100 and {22, 80, 443} <= set(ports)


# --- targets ------------------------------------------------------------------------------
def test_literals_cidr_ranges_and_order():
    hosts = parse_targets(["198.18.0.9", "2001:db8::1", "198.18.0.8/30", "198.18.1.1-3",
                           "[2001:db8::2]", "198.18.0.9"], resolve=False)
    assert [h.address for h in hosts] == [
        "198.18.0.9", "2001:db8::1", "198.18.0.8", "198.18.0.10", "198.18.0.11",
        "198.18.1.1", "198.18.1.2", "198.18.1.3", "2001:db8::2"]
    assert hosts[1].family == socket.AF_INET6 and hosts[0].family == socket.AF_INET
    # host bits may be set in a CIDR block: the whole block is meant
    assert [h.address for h in expand_target("2001:db8::5/126")] == [
        "2001:db8::4", "2001:db8::5", "2001:db8::6", "2001:db8::7"]


@pytest.mark.parametrize("target,words", [
    ("198.18.0.0/33", "prefix is 0-32"),
    ("2001:db8::/129", "prefix is 0-128"),
    ("198.18.0.0/x", "must be a number"),
    ("198.18.0.0/", "must be a number"),
    ("198.18.300.0/24", "not an IP address"),
    ("10.0.0.0/8", "covers 16777216 addresses"),
    ("198.18.0.9-1", "runs backwards"),
    ("198.18.0.1-zz", "bad address range"),
    ("1.2.3", "not a valid IPv4 address"),
    ("-bad-", "not a valid host name"),
    ("a..b", "not a valid host name"),
    ("spaces here", "not a valid host name"),
    ("198.18.0.1%eth0", "only IPv6"),
    ("fe80::1%nosuchif0", "no network interface"),
    ("", "empty target"),
])
def test_bad_targets(target, words):
    with pytest.raises(UsageError) as err:
        parse_targets([target], resolve=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_family_restriction_and_host_limit():
    with pytest.raises(UsageError, match="not an IPv6 address"):
        parse_targets(["198.18.0.1"], family=socket.AF_INET6)
    with pytest.raises(UsageError, match="more than 3 addresses"):
        parse_targets(["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"], max_hosts=3)
    with pytest.raises(UsageError, match="covers 256 addresses"):
        parse_targets(["198.18.0.0/24"], max_hosts=100)


def test_target_files(tmp_path):
    f = tmp_path / "targets.txt"
    f.write_text("# lab hosts\n198.18.0.1  198.18.0.2 # two\n2001:db8::1,198.18.0.0/31\n\n")
    hosts = parse_targets([f"@{f}"], resolve=False)
    assert [h.address for h in hosts] == ["198.18.0.1", "198.18.0.2", "2001:db8::1", "198.18.0.0"]
    assert parse_targets([], files=[str(f)], resolve=False)[0].address == "198.18.0.1"
    with pytest.raises(UsageError, match="no such file"):
        parse_targets([f"@{tmp_path}/missing"])
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(UsageError, match="names no targets"):
        parse_targets([f"@{tmp_path}/empty"])


# --- the CLI refuses before sending anything ------------------------------------------------
@pytest.mark.parametrize("args,words", [
    (["scan", "198.18.0.1", "-p", "0"], "port 0"),
    (["scan", "198.18.0.1", "-p", "70000"], "out of range"),
    (["scan", "198.18.0.0/40", "-p", "22"], "prefix is 0-32"),
    (["scan", "198.18.0.1", "--top", "0"], "--top needs a positive"),
    (["scan", "-p", "22"], "name the hosts"),
    (["scan", "198.18.0.1", "-p", "22", "--top", "5"], "not allowed with"),
    (["scan", "198.18.0.1", "--rate", "0", "-p", "1"], "--rate"),
    (["scan", "198.18.0.1", "--max-concurrency", "0", "-p", "1"], "--max-concurrency"),
    (["scan", "198.18.0.1", "--min-timeout", "2", "--max-timeout", "1", "-p", "1"], "longer than"),
    (["scan", "198.18.0.1", "-p", "1", "--json", "--format", "csv"], "disagree"),
    (["check", "198.18.0.1"], "usage: portatlas check"),
    (["check", "198.18.0.1", "22/sctp"], "tcp or udp"),
    (["check", "198.18.0.1", "22-23"], "one port"),
    (["scan", "198.18.0.1", "-p", "22", "--frobnicate"], "unrecognized arguments"),
])
def test_cli_errors_are_one_line(cli, args, words):
    proc = cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portatlas: error:") and words in lines[0], lines
    assert proc.stdout == ""


def test_root_only_feature_refused_for_other_users(cli, tmp_path):
    """--syn needs raw sockets; an unprivileged user gets one line, not a traceback."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        proc = cli("scan", "198.18.0.1", "-p", "22", "--syn")
        assert proc.returncode == 2 and "--syn" in proc.stderr
        return
    env = dict(os.environ, NO_COLOR="1", HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "portatlas", "scan", "198.18.0.1", "-p", "22",
                           "--syn"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("portatlas: error: --syn needs root (raw sockets); run as "
                                   "root, or leave out --syn for a connect scan")


def test_syn_segment_checksum():
    """The incremental checksum of our SYNs equals a plain RFC 1071 sum over the
    pseudo-header and the segment (which then sums to 0xFFFF)."""
    import struct

    from portatlas.scan.syn import SynEngine, segment

    def rfc1071(data: bytes) -> int:
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return total

    src, dst = socket.inet_aton("198.18.7.1"), socket.inet_aton("198.18.7.2")
    fake = SynEngine.__new__(SynEngine)  # only the arithmetic; no sockets are opened
    fake.sport = 40123
    base = SynEngine._base_sum(fake, src, dst)
    for dport, isn in ((1, 1), (22, 0xDEADBEEF), (65535, 0xFFFFFFFF), (8080, 0x12340000)):
        seg = segment(base, 40123, dport, isn)
        assert len(seg) == 24 and seg[13] == 0x02  # SYN, 24-byte header with MSS
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
        assert rfc1071(pseudo + seg) == 0xFFFF
        assert struct.unpack("!HHI", seg[:8]) == (40123, dport, isn)
