"""`portatlas local` options from the outside: filters, sorting, output forms, bad input."""

from __future__ import annotations

import json
import sys

import pytest

from support.netns import Netns
from test_local_helpers import local_json, needs_netns, sock, start

pytestmark = [needs_netns, pytest.mark.netns]


@pytest.fixture(scope="module")
def busy(atlas_db):
    with Netns("pacli") as ns:
        _, a = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 7402), sock("udp", 4, "127.0.0.1", 7401),
                                      sock("tcp", 6, "::1", 7403), sock("udp", 6, "::", 7404, v6only=1)],
                          "connect": 7402})
        _, b = start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 7410)], "name": "webthing"})
        _, c = start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 7420)]}, user="nobody")
        yield ns, {"a": a[0], "b": b[0], "c": c[0]}


def ports(doc: dict) -> list[int]:
    return [s["port"] for s in doc["sockets"]]


def test_default_order_and_counts(busy):
    ns, pids = busy
    doc = local_json(ns)
    assert ports(doc) == [7401, 7402, 7403, 7404, 7410, 7420]
    assert doc["count"] == 6 and doc["process_count"] == 3
    assert doc["selection"] == {"ports": None, "transports": ["tcp", "udp"],
                                "families": ["ipv4", "ipv6"], "user": None, "pids": None,
                                "processes": None}
    assert doc["include_established"] is False and doc["backend"] == "netlink"


@pytest.mark.parametrize("args, expected", [
    (["7402"], [7402]),
    (["7400-7405"], [7401, 7402, 7403, 7404]),
    (["7401-7404/udp"], [7401, 7404]),
    (["-t"], [7402, 7403, 7410, 7420]),
    (["-u", "-6"], [7404]),
    (["-4"], [7401, 7402, 7410, 7420]),
    (["--user", "nobody"], [7420]),
    (["--user", "65534"], [7420]),
    (["--process", "WEBTH"], [7410]),
])
def test_filters(busy, args, expected):
    ns, _ = busy
    assert ports(local_json(ns, *args)) == expected


def test_pid_filter_and_sorting(busy):
    ns, pids = busy
    assert ports(local_json(ns, "--pid", str(pids["b"]), "--pid", str(pids["c"]))) == [7410, 7420]
    by_pid = local_json(ns, "--sort", "pid")
    assert [s["processes"][0]["pid"] for s in by_pid["sockets"]] == sorted(
        s["processes"][0]["pid"] for s in by_pid["sockets"])
    assert ports(local_json(ns, "--sort", "port", "--reverse")) == [7420, 7410, 7404, 7403, 7402, 7401]
    assert ports(local_json(ns, "--sort", "transport,port")) == [7402, 7403, 7410, 7420, 7401, 7404]
    exposure = local_json(ns, "--sort", "exposure")
    assert [s["exposure"] for s in exposure["sockets"]][:2] == ["wildcard", "wildcard"]
    assert local_json(ns, "--sort", "user")["sockets"][-1]["user"] == "root"


def test_all_adds_connections_with_peers(busy):
    ns, pids = busy
    doc = local_json(ns, "--all", "7402")
    states = sorted(s["state"] for s in doc["sockets"])
    assert states == ["ESTAB", "LISTEN"]  # the accepted end; the client end has another local port
    estab = next(s for s in doc["sockets"] if s["state"] == "ESTAB")
    assert estab["remote_address"] == "127.0.0.1" and estab["remote_port"] > 1024
    assert estab["flags"] == [] and estab["services"] == []  # connections are not classified
    table = ns.portatlas("local", "--all", "-t", env={"NO_COLOR": "1"}).stdout
    assert "PEER" in table.splitlines()[2] and "ESTAB" in table


def test_nothing_matches_exit_1(busy):
    ns, _ = busy
    r = ns.portatlas("local", "7499")
    assert r.returncode == 1
    assert "nothing listens on port 7499 (tcp/udp, IPv4 and IPv6) here" in r.stderr
    r = ns.portatlas("local", "7499", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["sockets"] == []


@pytest.mark.parametrize("args, message", [
    (["http"], "not a port or port range"),
    (["7000/sctp"], "only TCP and UDP"),
    (["99999"], "out of range"),
    (["7000-6000"], "runs backwards"),
    (["--sort", "size"], "unknown sort key 'size'"),
    (["--user", "no-such-user-here"], "no user named"),
    (["--pid", "0"], "positive"),
    (["7000/udp", "-t"], "conflicts with --tcp"),
    (["--watch", "--interval", "0.01"], "--interval"),
    (["--watch", "--kill", "7000"], "do not go together"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_and_exit_2(busy, args, message):
    ns, _ = busy
    r = ns.portatlas("local", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("portatlas: error:") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_table_and_long_output(busy):
    ns, pids = busy
    out = ns.portatlas("local", env={"NO_COLOR": "1"}).stdout
    lines = out.splitlines()
    assert lines[0].startswith("6 listening sockets, 3 processes") and "as root" in lines[0]
    assert lines[2].split() == ["PROTO", "LOCAL", "STATE", "EXPOSURE", "REACH", "PID", "PROGRAM",
                                "USER", "UNIT", "REGISTERED", "FLAGS", "COMMAND"]
    row = next(line for line in lines if "127.0.0.1:7410" in line)
    assert f" {pids['b']} " in row and "webthing" in row
    assert "[::]:7404" in out  # v6-only written as ss writes it
    assert "\\n" in out and "\x1b" not in out  # the listener's multi-line command is escaped
    long = ns.portatlas("local", "7420", "--long", env={"NO_COLOR": "1"}).stdout
    assert "process     pid" in long and "user nobody" in long
    assert "    exe       " in long and "    command   " in long and "    cgroup    " in long


def test_json_writer_matches_the_reference_dicts(busy):
    """--json is written by a fast path (local.jsonout); it must equal report()'s dicts."""
    ns, _ = busy
    code = (
        "import io, json\n"
        "from portatlas.cli import local as L\n"
        "from portatlas.local import reports as R, selection as S\n"
        "for argv in ([], ['--all'], ['--sort', 'pid,port', '-r']):\n"
        "    args = L.build_parser().parse_args(argv)\n"
        "    sel = L.selection_from(args); sort = R.parse_sort(args.sort)\n"
        "    snap = S.query(sel); R.classified(snap, None)\n"
        "    buf = io.StringIO(); R.write_json(snap, sort, args.reverse, buf)\n"
        "    fast = json.loads(buf.getvalue()); ref = R.report(snap, sort, args.reverse)\n"
        "    assert fast == ref, (argv, fast, ref)\n"
        "    assert len(buf.getvalue().splitlines()) == 15 + len(ref['sockets'])\n"
        "    slow = io.StringIO(); R.write_report_json(ref, slow)\n"
        "    assert slow.getvalue() == buf.getvalue()\n"
        "print('same')\n")
    r = ns.run([sys.executable, "-c", code], check=False)
    assert r.stdout.strip() == "same", r.stderr


def test_one_socket_per_line_in_json(busy):
    ns, _ = busy
    r = ns.portatlas("local", "--json")
    lines = r.stdout.splitlines()
    socket_lines = [line for line in lines if line.startswith('    {"transport"')]
    assert len(socket_lines) == 6
    assert all(json.loads(line.rstrip(",")) for line in socket_lines)
