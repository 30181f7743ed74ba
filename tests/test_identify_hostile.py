"""Hostile and broken servers never hang or flood portatlas: each is reported as what it is,
within the configured time. Also: closed and filtered ports, and a cut-short batch.

The servers (tests/support/hostile.py) run in one namespace, portatlas in another.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portatlas.identify import (CLOSED, FILTERED, INCOMPLETE, UNIDENTIFIED, identify,
                                identify_many)
from support import nsthread
from support.netns import Netns, available, link

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not available(), reason="needs root and ip netns")]

HOSTILE = Path(__file__).parent / "support" / "hostile.py"
PORTS = {"silent": 7001, "tarpit": 7002, "stream": 7003, "huge": 7004, "random": 7005,
         "tls-reset": 7006, "closes": 7007}
DROPPED = 7100  # the server's firewall drops SYNs to this port
TIMEOUT = 3.0   # per port
SLACK = 1.0     # scheduling slack on a busy 2-core machine


@pytest.fixture(scope="module")
def lab():
    with Netns("pa-hs") as server, Netns("pa-hc") as client:
        _, address = link(client, server)
        proc = server.popen([sys.executable, str(HOSTILE),
                             *(f"{kind}:{port}" for kind, port in PORTS.items())],
                            stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        server.run(["nft", "add table inet pa; add chain inet pa input "
                    "{ type filter hook input priority 0; }; "
                    f"add rule inet pa input tcp dport {DROPPED} drop"])
        yield client, address


def run(lab, port: int, **kw):
    client, address = lab
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("probe_timeout", 1.0)
    start = time.monotonic()
    verdict = nsthread.call_in(client.name, identify, address, port, "tcp", registered=(), **kw)
    return verdict, time.monotonic() - start


@pytest.mark.parametrize("kind,behaviour,words", [
    ("silent", "silent", "never sent a byte"),
    ("tarpit", "tarpit", "trickles"),
    ("stream", "stream", "endless stream"),
    ("huge", "huge-banner", "huge banner"),
    ("random", "binary", "binary"),
    ("tls-reset", "reset", "resets"),
    ("closes", "closes", "closes"),
])
def test_hostile_server_reported_as_what_it_is(lab, kind, behaviour, words):
    verdict, elapsed = run(lab, PORTS[kind])
    assert verdict.outcome == UNIDENTIFIED, verdict.to_dict()
    assert verdict.extra["behaviour"] == behaviour, verdict.to_dict()
    assert words in verdict.reason
    assert elapsed < TIMEOUT + SLACK, elapsed


def test_evidence_is_escaped_and_bounded(lab):
    verdict, _ = run(lab, PORTS["random"])
    assert len(verdict.evidence) < 700 and "\\x" in verdict.evidence
    assert verdict.evidence.isprintable()
    huge, _ = run(lab, PORTS["huge"])
    assert huge.evidence.startswith("XXXX") and huge.evidence.endswith("…")


def test_tls_reset_is_noted(lab):
    verdict, _ = run(lab, PORTS["tls-reset"])
    assert verdict.extra["probes"]["tls"].startswith("TLS handshake failed (reset)")


def test_short_timeouts_are_honoured(lab):
    verdict, elapsed = run(lab, PORTS["tarpit"], timeout=1.0, probe_timeout=0.5)
    assert verdict.outcome == UNIDENTIFIED and elapsed < 1.0 + SLACK


def test_closed_and_filtered(lab):
    closed, elapsed = run(lab, 7999)
    assert closed.outcome == CLOSED and elapsed < 0.5
    dropped, elapsed = run(lab, DROPPED, connect_timeout=1.0)
    assert dropped.outcome == FILTERED and "no answer" in dropped.reason
    assert elapsed < 1.0 + SLACK


def test_batch_deadline_gives_partial_answers(lab):
    client, address = lab
    targets = [(address, PORTS["silent"], "tcp"), (address, PORTS["tarpit"], "tcp"),
               (address, 7999, "tcp")]
    start = time.monotonic()
    batch = nsthread.call_in(client.name, identify_many, targets, deadline=1.0, timeout=10,
                             probe_timeout=5, registered=())
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + SLACK
    assert batch.deadline_reached and not batch.interrupted
    silent, tarpit, closed = batch.results
    assert closed.outcome == CLOSED
    assert silent.outcome == INCOMPLETE and "so far" in silent.reason
    assert tarpit.outcome == INCOMPLETE and tarpit.extra.get("bytes_seen", 0) >= 1


def _wait_for_connection(ns: Netns, port: int, limit: float = 20.0) -> None:
    """Until a connection to port is established from ns (the client is inside its probe loop,
    past start-up and imports, however slow the machine is today)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        out = ns.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"]).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"no connection to port {port} within {limit:g} s")


def test_ctrl_c_prints_partial_answers(lab):
    client, address = lab
    code = ("import json\n"
            "from portatlas.identify import identify_many\n"
            f"b = identify_many([({address!r}, {PORTS['silent']}, 'tcp'), ({address!r}, 7999, 'tcp')],"
            " timeout=30, probe_timeout=20, registered=())\n"
            "print(json.dumps(b.to_dict()))\n")
    proc = subprocess.Popen(client.argv([sys.executable, "-c", code]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_connection(client, PORTS["silent"])
    time.sleep(0.3)  # the connection is up: the silent port keeps it busy from now on
    proc.send_signal(subprocess.signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    silent, closed = doc["results"]
    assert silent["outcome"] == "incomplete" and "interrupted" in silent["reason"]
    assert closed["outcome"] == "closed"
