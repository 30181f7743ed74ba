"""Snapshots of real listeners and scans inside namespaces: appear, disappear, change across
restarts of a listener and a change of what it binds to; `--watch --save` prints changes live."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.netns import Netns, link
from test_local_helpers import needs_netns, sock, start
from test_local_watch import Lines

pytestmark = [needs_netns, pytest.mark.netns]


@pytest.fixture()
def ns(atlas_db):
    with Netns("pach") as ns:
        yield ns


def _save(ns: Netns, snaps, *extra: str) -> dict:
    out = ns.portatlas("local", "-t", "--save", "--changes", "--json", "--snapshots", str(snaps),
                       *extra, env={"NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _changes(doc: dict) -> dict[tuple[str, str], dict]:
    [interval] = doc["intervals"]
    return {(c["change"], c["key"]): c for c in interval["changes"]}


def test_listener_appears_restarts_rebinds_and_disappears(ns, tmp_path):
    snaps = tmp_path / "snaps.sqlite3"
    assert _changes(_save(ns, snaps)) == {}
    proc, pids = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 4501)], "name": "svc-a"})
    found = _changes(_save(ns, snaps))
    assert list(found) == [("appeared", "tcp 0.0.0.0 4501")]
    assert found[("appeared", "tcp 0.0.0.0 4501")]["facets"]["pids"] == pids
    assert _changes(_save(ns, snaps)) == {}   # nothing changed: nothing said
    os.killpg(proc.pid, 9)
    proc.wait()
    _, pids2 = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 4501)], "name": "svc-a"})
    [restart] = _changes(_save(ns, snaps)).values()
    assert restart["change"] == "changed"
    assert [(f["facet"], f["before"], f["after"]) for f in restart["fields"]] == [
        ("pids", pids, pids2)]
    # the same program now on loopback only: one listener gone, another appeared
    ns.run(["pkill", "-9", "-f", "svc-a|4501"], check=False)
    start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 4501)], "name": "svc-a"})
    moved = _changes(_save(ns, snaps))
    assert set(moved) == {("disappeared", "tcp 0.0.0.0 4501"), ("appeared", "tcp 127.0.0.1 4501")}
    assert moved[("appeared", "tcp 127.0.0.1 4501")]["facets"]["exposure"] == "loopback"
    # the whole history, in words
    text = ns.portatlas("changes", "--since", "1h", "--snapshots", str(snaps),
                        env={"NO_COLOR": "1"})
    assert text.returncode == 0, text.stderr
    assert "+ tcp 0.0.0.0:4501" in text.stdout and "restarted:" in text.stdout
    assert "- tcp 0.0.0.0:4501" in text.stdout and "no changes" in text.stdout


def test_watch_save_prints_changes_as_they_happen(ns, tmp_path):
    snaps = tmp_path / "w.sqlite3"
    proc = ns.popen([sys.executable, "-m", "portatlas", "local", "-t", "--watch", "--save",
                     "--interval", "0.2", "--count", "150", "--json", "--snapshots", str(snaps)],
                    stdout=subprocess.PIPE, text=True, env=dict(os.environ, NO_COLOR="1"))
    lines = Lines(proc)
    lines.until(lambda line: '"snapshot"' in line)
    listener, _ = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 4602)]})
    seen = lines.until(lambda line: '"appeared"' in line and "4602" in line)
    event = json.loads(seen[-1])
    assert event["schema"] == "portatlas.changes/1" and event["change"]["label"] == "tcp 0.0.0.0:4602"
    os.killpg(listener.pid, 9)
    lines.until(lambda line: '"disappeared"' in line and "4602" in line)
    proc.terminate()
    proc.wait(timeout=10)


def test_scan_save_lists_changes_between_runs(atlas_db, tmp_path):
    snaps = tmp_path / "scan.sqlite3"
    with Netns("pachc") as client, Netns("pacht") as target:
        _, address = link(client, target)
        listener, _ = start(target, {"sockets": [sock("tcp", 4, "0.0.0.0", 4701),
                                                 sock("tcp", 4, "0.0.0.0", 4702)]})
        args = ("scan", address, "-p", "4700-4705", "--no-progress", "--save", "lab",
                "--snapshots", str(snaps), "--json")
        first = client.portatlas(*args)
        assert first.returncode == 0, first.stderr
        assert "the first one" in first.stderr
        os.killpg(listener.pid, 9)
        listener.wait()
        start(target, {"sockets": [sock("tcp", 4, "0.0.0.0", 4701),
                                   sock("tcp", 4, "0.0.0.0", 4703)]})
        second = client.portatlas(*args)
        assert second.returncode == 0, second.stderr
        assert "2 changes since the previous run" in second.stderr
        doc = json.loads(client.portatlas("changes", "--scan", "lab", "--json",
                                          "--snapshots", str(snaps)).stdout)
        found = {(c["change"], c["key"]) for c in doc["intervals"][0]["changes"]}
        assert found == {("disappeared", f"tcp {address} 4702"),
                         ("appeared", f"tcp {address} 4703")}


def test_a_packet_filter_rule_change_is_an_exposure_change(ns, tmp_path):
    snaps = tmp_path / "rules.sqlite3"
    # a second interface with an address, so "anywhere" has a way in
    link_ns = Netns("pachp")
    with link_ns:
        link(ns, link_ns)
        start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 4801)]})
        _save(ns, snaps)
        rules = tmp_path / "drop.nft"
        rules.write_text("table inet pach {\n chain input {\n"
                         "  type filter hook input priority 0; policy accept;\n"
                         "  tcp dport 4801 drop\n }\n}\n")
        ns.run(["nft", "-f", str(rules)])
        [change] = _changes(_save(ns, snaps)).values()
        assert change["change"] == "changed" and change["key"] == "tcp 0.0.0.0 4801"
        [field] = change["fields"]
        assert field["facet"] == "reachability"
        # reachable from the linked subnet before (limited: no route from anywhere else)
        assert field["before"]["verdict"] in ("exposed", "limited")
        assert field["after"]["verdict"] == "blocked"
        ns.run(["nft", "delete", "table", "inet", "pach"])
        [back] = _changes(_save(ns, snaps)).values()
        assert back["fields"][0]["after"] == field["before"]
