"""Golden outputs: the `--json` of a fixed set of commands, recorded before issue 10 moved code
between layers, compared on every run so that a refactoring cannot change what users get.

Volatile fields (times, durations, RTTs, PIDs, inodes, host names, per-run certificates and
keys, the versions of the Debian daemons under test) are replaced by placeholders before
comparing; everything else must be identical.

A deliberate change of output (a bug fix, a new field) re-records the goldens:

    PORTATLAS_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/test_golden.py

and the diff of tests/golden/ shows, in review, exactly what changed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from support import netns

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
SHARED = REPO.parent / "shared" / "data"
HISTORY = SHARED / "iana" / "history"
UPDATE = os.environ.get("PORTATLAS_GOLDEN_UPDATE") == "1"

# keys whose values change from run to run (or machine to machine) whatever the code does
VOLATILE = {
    # clocks and durations
    "time", "started", "finished", "elapsed", "elapsed_s", "handshake_ms",
    # round-trip times and the timing state derived from them
    "rtt_ms", "srtt_ms", "rttvar_ms", "timeout_ms", "samples", "tries", "loss_evidence",
    # processes and sockets of this run
    "pid", "ppid", "inode", "cgroup", "exe", "cmdline",
    # a veth pair's MAC address is random per run (scan host discovery)
    "mac",
    # per-run certificates and keys
    "sha256", "serial", "not_before", "not_after", "fingerprint",
    # what depends on the installed Debian daemon or this machine's kernel, not on portatlas
    "version", "software", "comments", "server", "redis_version", "os", "kex", "ciphers",
    "macs", "compression", "evidence",
    # reachability names this machine's interfaces and subnets (veth names carry the pid);
    # tests/test_exposure_*.py check it against real connections
    "reachability", "packet_filter",
}
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def normalise(obj, replace: dict[str, str], key: str | None = None):
    if key in VOLATILE and obj is not None:
        return f"<{key}>"
    if isinstance(obj, dict):
        return {k: normalise(v, replace, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [normalise(v, replace) for v in obj]
    if isinstance(obj, str):
        for old, new in replace.items():
            obj = obj.replace(old, new)
        return _ISO.sub("<time>", obj)
    return obj


def compare(name: str, stdout: str, replace: dict[str, str] | None = None, drop: tuple = (),
            blank: tuple = ()) -> None:
    doc = json.loads(stdout)
    for key in drop:
        doc.pop(key, None)
    for key in blank:  # top-level keys that are volatile here but not everywhere (host)
        if key in doc:
            doc[key] = f"<{key}>"
    got = normalise(doc, {str(SHARED): "<shared>", str(REPO): "<repo>", **(replace or {})})
    path = GOLDEN / f"{name}.json"
    text = json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden {path.name}; record with PORTATLAS_GOLDEN_UPDATE=1")
        path.write_text(text)
        return
    want = json.loads(path.read_text())
    assert got == want, f"{name}: --json output differs from tests/golden/{path.name}"


# -- the registry: no network, no root ----------------------------------------------------------
OFFLINE = {
    "lookup-57": ["57", "--json"],
    "lookup-103": ["103", "--json"],
    "lookup-range": ["6000-6010", "--json"],
    "lookup-name": ["ssh", "--json"],
    "lookup-udp": ["53/udp", "--json"],
    "search": ["search", "mail transfer", "--json"],
    "history-57": ["history", "57", "--json"],
    "data-diff": ["data", "diff", str(HISTORY / "service-names-port-numbers-2017-03-10.xml"),
                  str(HISTORY / "service-names-port-numbers-2024-03-18.xml"), "--json"],
}


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_offline_command(cli, name):
    result = cli(*OFFLINE[name])
    assert result.returncode == 0, result.stderr
    # what listens on this machine is not the registry's business: "here" is golden in the
    # namespace tests below
    compare(name, result.stdout, drop=("here",))


# -- this machine, a scan and identification: real servers in namespaces -----------------------
needs_netns = pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, atlas_db):
    from support import servers_text as st

    tmp = tmp_path_factory.mktemp("golden")
    with netns.Netns("pa10g-s") as server, netns.Netns("pa10g-c") as client:
        _, address = netns.link(client, server)
        st.start_ssh(server, tmp / "ssh", ports=(103,))
        st.start_nginx(server, tmp / "nginx", http_ports=(57,), https_ports=(8443,))
        st.start_redis(server, tmp / "redis", ports=(8080,))
        for port, how in ((81, ["REJECT", "--reject-with", "icmp-port-unreachable"]),
                          (82, ["DROP"]), (83, ["REJECT", "--reject-with", "tcp-reset"])):
            server.run(["iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", *how])
        server.run(["iptables", "-w", "-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP"])
        yield server, client, address


NETWORK = {
    "scan": ["scan", "{a}", "-p", "50-110,8080,8443", "--json", "--no-progress"],
    "scan-udp": ["scan", "{a}", "--udp", "-p", "7,9,53,161", "--json", "--no-progress"],
    "scan-identify": ["scan", "{a}", "-p", "57,103,8080,8443,9", "--identify", "--json",
                      "--no-progress"],
    "check-ssh": ["check", "{a}", "103", "--json"],
    "check-tls": ["check", "{a}", "8443", "--json", "--sni", "www.portatlas.test"],
    "check-closed": ["check", "{a}", "58", "--json"],
    "lookup-57-here": ["57", "--json"],
}


@needs_netns
@pytest.mark.netns
@pytest.mark.parametrize("name", sorted(NETWORK))
def test_network_command(lab, name):
    server, client, address = lab
    where = server if name.endswith("-here") else client
    argv = [a.replace("{a}", address) for a in NETWORK[name]]
    result = where.portatlas(*argv)
    assert result.returncode in (0, 1), result.stderr
    compare(name, result.stdout, {address: "<target>"})


@needs_netns
@pytest.mark.netns
def test_local_in_a_namespace(atlas_db):
    from test_local_helpers import sock, start

    with netns.Netns("pa10g-l") as ns:
        start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 7402), sock("udp", 4, "127.0.0.1", 7401),
                               sock("tcp", 6, "::1", 7403), sock("udp", 6, "::", 7404, v6only=1)],
                   "name": "webthing"})
        for name, argv in (("local", ["local", "--json"]),
                           ("local-sorted", ["local", "--sort", "exposure,port", "-r", "--json"]),
                           ("local-filtered", ["local", "7400-7403", "-t", "--json"]),
                           ("lookup-7402-here", ["7402", "--json"])):
            result = ns.portatlas(*argv)
            assert result.returncode == 0, result.stderr
            compare(name, result.stdout, blank=("host",))


# -- the text the renderers print (no colour, not a terminal) ---------------------------------
TEXT = {
    "text-57": ["57"],
    "text-103": ["103"],
    "text-range": ["6000-6010"],
    "text-name": ["ssh"],
    "text-search": ["search", "mail transfer"],
    "text-history-57": ["history", "57"],
    "text-data-diff": ["data", "diff", str(HISTORY / "service-names-port-numbers-2017-03-10.xml"),
                       str(HISTORY / "service-names-port-numbers-2024-03-18.xml")],
}


def _here_free(text: str) -> str:
    """The text without its 'on this machine' part (what listens here is not the registry's)."""
    out, skip = [], False
    for line in text.splitlines():
        if line.lower().startswith(("here", "on this machine")):
            skip = True
            continue
        if skip and (not line.strip() or line.startswith((" ", "\t"))):
            if not line.strip():
                skip = False
            continue
        skip = False
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", sorted(TEXT))
def test_offline_text(cli, name):
    result = cli(*TEXT[name], env={"COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    text = _here_free(result.stdout).replace(str(SHARED), "<shared>")
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"no golden {path.name}; record with PORTATLAS_GOLDEN_UPDATE=1")
    assert text == path.read_text(), f"{name}: text output differs from tests/golden/{path.name}"
