"""The issue-11 identification lab: every real server the tests have (the older ones and 29
more Debian daemons), started once for the module, identified once (one batch), judged
against the ground truth of support.lab_nmap.

The hard rule is the no-wrong-name test: on every listener of the lab the name portatlas
gives is right, or it gives none ("a wrong answer is worse than no answer"). The family
tests pin what the engine identifies today, so a regression shows.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from support import lab_nmap, servers_binary, servers_text
from support.lab_nmap import ROWS, Row
from support.netns import available

REPO = Path(__file__).resolve().parents[1]

TIMEOUTS = {"timeout": 8.0, "probe_timeout": 2.0}  # generous: the CI machine is busy

# Rows portatlas identifies in every run today (name right; product too where the row has
# one): (host, port, transport). Extend as the engine learns more families.
NAMED = {
    ("new", 22, "tcp"), ("new", 2222, "tcp"),            # Dropbear
    ("new", 80, "tcp"), ("new", 8008, "tcp"),            # lighttpd
    ("new", 3128, "tcp"), ("new", 10080, "tcp"),         # Squid: http-proxy, not http
    ("new", 1080, "tcp"),                                # Dante: socks5
    ("new", 4730, "tcp"),                                # Gearman
    ("new", 3690, "tcp"), ("new", 3691, "tcp"),          # svnserve
    ("new", 3306, "tcp"), ("new", 3307, "tcp"),          # MariaDB
    ("new", 53, "udp"), ("new", 5300, "udp"),            # BIND, Unbound
    ("new", 8888, "tcp"),                                # tinyproxy: http-proxy, not http
    ("new", 631, "tcp"), ("new", 8631, "tcp"),           # CUPS: ipp, not http
    ("new", 7, "tcp"),                                   # inetd echo (not the AMQP it reflects)
    ("new", 1053, "udp"), ("new", 1053, "tcp"),          # Knot DNS (no product: see below)
    ("new", 3478, "udp"), ("new", 3478, "tcp"),          # coturn: STUN
    ("new", 37, "tcp"), ("new", 37, "udp"),              # inetd time (RFC 868)
}
# Named in every run since the scheduling fixes of issue 11 (a queued port's clock starts
# with its slot; nmap's search goes inside TLS once the handshake is seen): OpenLDAP, LDAPS,
# InspIRCd and both stunnel ports, which varied before.
NAMED |= {
    ("new", 389, "tcp"), ("new", 3389, "tcp"),           # OpenLDAP
    ("new", 636, "tcp"),                                 # OpenLDAP over TLS
    ("new", 6667, "tcp"), ("new", 6000, "tcp"),          # InspIRCd
    ("new", 4443, "tcp"),                                # lighttpd behind stunnel
    ("new", 3692, "tcp"),                                # svnserve behind stunnel
}
VARIES: set[tuple[str, int, str]] = set()  # rows right in some runs only: non-strict xfails
# Rows where the product is not (yet) found although the name is.
# Knot answers version.bind with REFUSED, like several other servers: nmap's line for that
# pattern says "NLnet Labs NSD"; the behaviour names no product, so none is reported.
NO_PRODUCT: set[tuple[str, int, str]] = {("new", 1053, "udp"), ("new", 1053, "tcp")}

# Rows where a wrong name is known and not yet fixed (xfail, not strict): none. Every wrong
# name seen in earlier runs (TLS carrier, memcached, proxies and CUPS as http, echo as AMQP)
# is fixed, so the no-wrong-name test holds on every row.
KNOWN_WRONG: dict[tuple[str, int, str], str] = {}


def key(row: Row) -> tuple[str, int, str]:
    return (row.host, row.port, row.transport)


def row_id(row: Row) -> str:
    return f"{row.host}-{row.port}-{row.transport}-{row.service}"


# ---- the lab itself (no namespaces needed) ----------------------------------------------------

def test_the_new_lab_is_big_and_varied():
    new = lab_nmap.rows_of(lab_nmap.NEW)
    assert len(new) >= 40
    assert sum(r.transport == "udp" for r in new) >= 8
    assert any(r.tls for r in new)
    assert len({r.service for r in new}) >= 25          # protocol families, not one daemon
    assert len({key(r) for r in ROWS}) == len(ROWS)     # no (host, port, transport) twice


def test_new_daemons_are_not_the_older_tests_ones():
    old_daemons = set(servers_text.STARTERS) | set(servers_binary.SERVERS)
    assert not {s.name for s in lab_nmap.NEW} & old_daemons


def test_every_lab_package_is_in_the_ci_list():
    # `started` names the Debian package(s) of each new listener
    listed = set()
    for line in (REPO / ".ci" / "apt" / "identify-lab.txt").read_text().splitlines():
        listed.update(line.split("#")[0].split())
    packages = set()
    for server in lab_nmap.NEW:
        for row in server.rows:
            packages.update(p.strip() for p in row.started.split("+"))
    assert packages <= listed, packages - listed


def test_truth_names_are_nmaps_vocabulary():
    # every truth name is a service name nmap's database uses (nmap-services or a match line)
    known = set()
    services = Path("/usr/share/nmap/nmap-services")
    probes = Path("/usr/share/nmap/nmap-service-probes")
    if not services.exists() or not probes.exists():
        pytest.skip("nmap-common is not installed")
    for line in services.read_text(errors="replace").splitlines():
        if line and not line.startswith("#"):
            known.add(line.split()[0])
    known.update(re.findall(r"^(?:soft)?match (\S+) ", probes.read_text(errors="replace"), re.M))
    unknown = {r.service for r in ROWS} - known
    assert unknown == lab_nmap.OUTSIDE_NMAP, unknown


# ---- the lab running ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory, atlas):
    if not available():
        pytest.skip("needs root and ip netns")
    from portatlas.identify import identify_many
    from support import nsthread

    with lab_nmap.start_lab(tmp_path_factory.mktemp("identify-lab")) as running:
        atlas.preload()  # the batch runs in another thread: no SQLite there
        start = time.monotonic()
        batch = nsthread.call_in(running.client.name, identify_many, running.targets(),
                                 atlas=atlas, **TIMEOUTS)
        elapsed = time.monotonic() - start
        verdicts = {}
        for verdict in batch.results:
            row = running.row_at(verdict.host, verdict.port, verdict.transport)
            verdicts[key(row)] = verdict
        yield running, verdicts, elapsed


def _show(verdict) -> str:
    """The verdict in full for a failure message (pytest shortens dicts)."""
    return json.dumps(verdict.to_dict(), default=str)[:2000]


def _names(verdict) -> set[str]:
    if verdict.outcome != "identified":
        return set()
    return {n.lower() for n in (verdict.protocol, verdict.service) if n}


def _known_wrong(rows):
    return [pytest.param(r, id=row_id(r), marks=pytest.mark.xfail(reason=KNOWN_WRONG[key(r)]))
            if key(r) in KNOWN_WRONG else pytest.param(r, id=row_id(r)) for r in rows]


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("row", _known_wrong(ROWS))
def test_no_wrong_name(lab, row):
    _, verdicts, _ = lab
    verdict = verdicts[key(row)]
    names = _names(verdict)
    assert lab_nmap.judge(row, names) != "wrong", (
        f"{row.port}/{row.transport} runs {row.service} ({row.started}); portatlas said "
        f"{sorted(names)}: {_show(verdict)}")


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("row", [
    pytest.param(r, id=row_id(r), marks=pytest.mark.xfail(reason="varies run to run (VARIES)"))
    if key(r) in VARIES else pytest.param(r, id=row_id(r)) for r in ROWS if key(r) in NAMED])
def test_family_identified(lab, row):
    from support.lab_nmap import product_right

    _, verdicts, _ = lab
    verdict = verdicts[key(row)]
    assert lab_nmap.judge(row, _names(verdict)) == "right", _show(verdict)
    reported = " ".join(p for p in (verdict.product, verdict.version) if p)
    if row.product and key(row) not in NO_PRODUCT:
        assert product_right(row, reported), _show(verdict)
    elif row.product and reported:  # no product expected: a wrong one is worse than none
        assert product_right(row, reported), _show(verdict)


@pytest.mark.netns
@pytest.mark.slow
def test_every_lab_port_is_open_and_bounded(lab):
    running, verdicts, elapsed = lab
    assert len(verdicts) == len(running.rows)
    for k, verdict in verdicts.items():
        if k[2] == "tcp":
            assert verdict.outcome not in ("closed", "error"), (k, verdict.to_dict())
    # one batch over ~100 listeners, UDP included: bounded by the per-port budget, not a sum
    assert elapsed < 60, elapsed
