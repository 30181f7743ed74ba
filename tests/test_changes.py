"""Snapshots and `portatlas changes`: pure logic (no root), the store, and the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from portatlas.changes import (SnapshotStore, diff, local_items, parse_when, scan_items,
                               snapshot_path)
from portatlas.changes.diff import scan_coverage
from portatlas.errors import DataError, NotFound, UsageError


def _sock(port: int, *, address: str = "0.0.0.0", transport: str = "tcp", pid: int = 100,
          name: str = "server", exe: str = "/usr/bin/server-does-not-exist", **extra) -> dict:
    return {"transport": transport, "family": "ipv4", "address": address, "port": port,
            "interface": None, "state": "LISTEN" if transport == "tcp" else "UNCONN",
            "remote_address": None, "remote_port": None, "exposure": "wildcard",
            "inode": pid * 7, "uid": 0, "user": "root",
            "processes": [{"pid": pid, "fd": 3, "name": name, "exe": exe, "user": "root",
                           "unit": None, "container": None}], **extra}


def _report(*sockets: dict) -> dict:
    return {"schema": "portatlas.local/1", "host": "h1", "backend": "netlink",
            "privileged": True, "selection": {}, "sockets": list(sockets)}


def test_local_items_keep_listeners_only_and_ignore_volatile_fields():
    established = dict(_sock(40000), state="ESTAB", remote_address="198.18.0.9", remote_port=22)
    items = local_items(_report(_sock(22), established, _sock(53, transport="udp")))
    assert sorted(items) == ["tcp 0.0.0.0 22", "udp 0.0.0.0 53"]
    again = local_items(_report(dict(_sock(22), inode=999), _sock(53, transport="udp")))
    assert diff(items, again) == []


def test_appeared_disappeared_changed():
    before = local_items(_report(_sock(22), _sock(8080)))
    after = local_items(_report(_sock(22, name="other", exe="/usr/bin/other"), _sock(9090)))
    changes = {(c.change, c.key): c for c in diff(before, after)}
    assert set(changes) == {("changed", "tcp 0.0.0.0 22"), ("disappeared", "tcp 0.0.0.0 8080"),
                            ("appeared", "tcp 0.0.0.0 9090")}
    facets = [f.facet for f in changes[("changed", "tcp 0.0.0.0 22")].fields]
    assert facets == ["process", "binary"]


def test_a_restart_is_told_as_such_and_an_exposure_change_too():
    before = local_items(_report(_sock(22, pid=100)))
    restarted = local_items(_report(_sock(22, pid=200)))
    [change] = diff(before, restarted)
    assert [(f.facet, f.before, f.after) for f in change.fields] == [("pids", [100], [200])]
    moved = local_items(_report(dict(_sock(22, pid=100), exposure="loopback")))
    [change] = diff(before, moved)
    assert [(f.facet, f.before, f.after) for f in change.fields] == [
        ("exposure", "wildcard", "loopback")]


def test_binary_replaced_at_the_same_path_is_a_change(tmp_path):
    exe = tmp_path / "daemon"
    exe.write_bytes(b"v1")
    os.utime(exe, (1_000_000, 1_000_000))
    before = local_items(_report(_sock(22, exe=str(exe))))
    exe.write_bytes(b"version 2")
    after = local_items(_report(_sock(22, exe=str(exe))))
    [change] = diff(before, after)
    assert [f.facet for f in change.fields] == ["binary"]


def test_identification_is_a_facet():
    ident = {"outcome": "identified", "service": "ssh", "product": "OpenSSH", "version": "9.2",
             "confidence": 1.0, "elapsed": 0.2}
    before = local_items(_report(dict(_sock(22), identified=ident)))
    after = local_items(_report(dict(_sock(22), identified=dict(ident, version="9.3"))))
    [change] = diff(before, after)
    assert change.fields[0].facet == "identification"
    assert change.fields[0].after == {"outcome": "identified", "service": "ssh",
                                      "product": "OpenSSH", "version": "9.3"}


def _scan(*hosts: tuple[str, str, list[tuple[int, str]]], ports: str = "1-1024") -> dict:
    return {"schema": "portatlas.scan/1", "options": {"ports": {"tcp": ports}},
            "hosts": [{"target": a, "address": a, "status": status,
                       "ports": [{"port": p, "transport": "tcp", "state": s, "service": None}
                                 for p, s in plist],
                       "extraports": [{"state": "closed", "transport": "tcp", "count": 1000,
                                       "reasons": [{"reason": "conn-refused", "count": 1000,
                                                    "ports": "1-21"}]}]}
                      for a, status, plist in hosts]}


def test_scan_items_and_coverage():
    a = _scan(("198.18.0.2", "up", [(22, "open"), (80, "open")]))
    b = _scan(("198.18.0.2", "up", [(22, "open"), (2000, "open")]), ports="1-100,2000")
    meta_a = {"hosts": ["198.18.0.2"], "ports": {"tcp": "1-1024"}}
    meta_b = {"hosts": ["198.18.0.2"], "ports": {"tcp": "1-100,2000"}}
    changes = diff(scan_items(a), scan_items(b), scan_coverage(meta_a, meta_b))
    # 80 was covered by both and is gone; 2000 was not covered by the first scan: not a change
    assert [(c.change, c.key) for c in changes] == [("disappeared", "tcp 198.18.0.2 80")]


def test_extraports_of_interest_are_expanded():
    doc = _scan(("198.18.0.3", "up", []))
    doc["hosts"][0]["extraports"].append({"state": "filtered", "transport": "tcp", "count": 3,
                                          "reasons": [{"reason": "no-response", "count": 3,
                                                       "ports": "100-102"}]})
    assert sorted(scan_items(doc)) == ["host 198.18.0.3", "tcp 198.18.0.3 100",
                                       "tcp 198.18.0.3 101", "tcp 198.18.0.3 102"]


def test_store_saves_dedups_and_diffs(tmp_path):
    path = tmp_path / "snap.sqlite3"
    with SnapshotStore(path) as store:
        first = store.save("local", "h1", local_items(_report(_sock(22))), taken_at=1000.0)
        assert first.previous is None and first.changes == []
        same = store.save("local", "h1", local_items(_report(_sock(22))), taken_at=1060.0)
        assert same.snapshot.same_as == first.snapshot.id and same.changes == []
        third = store.save("local", "h1", local_items(_report(_sock(22), _sock(80))),
                           taken_at=1120.0)
        assert [c.key for c in third.changes] == ["tcp 0.0.0.0 80"]
        other = store.save("local", "h2", local_items(_report(_sock(25))), taken_at=1130.0)
        assert other.previous is None
    with SnapshotStore(path, create=False) as store:
        # last two only, by default
        [last] = store.changes("local", "h1")
        assert [c.change for c in last.changes] == ["appeared"]
        # since a time inside the window: the snapshot before it is the baseline
        intervals = store.changes("local", "h1", since=1050.0)
        assert [len(i.changes) for i in intervals] == [0, 1]
        assert store.names("local") == ["h1", "h2"]
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM items").fetchone()[0]
    assert rows == 1 + 2 + 1  # the identical snapshot stored no items


def test_store_refuses_other_files(tmp_path):
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(DataError, match="not a portatlas snapshot database"):
        SnapshotStore(other)
    with pytest.raises(NotFound, match="no snapshots yet"):
        SnapshotStore(tmp_path / "missing.sqlite3", create=False)
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(DataError, match="not a regular file"):
        SnapshotStore(tmp_path / "dir.sqlite3")


def test_snapshot_path_follows_the_database(monkeypatch, tmp_path):
    monkeypatch.delenv("PORTATLAS_SNAPSHOTS", raising=False)
    assert snapshot_path(tmp_path / "x.sqlite3") == tmp_path / "x.snapshots.sqlite3"
    monkeypatch.setenv("PORTATLAS_SNAPSHOTS", str(tmp_path / "s.db"))
    assert snapshot_path(None) == tmp_path / "s.db"


def test_parse_when():
    now = 1_800_000_000.0
    assert parse_when("2h", now=now) == now - 7200
    assert parse_when("30m", now=now) == now - 1800
    assert parse_when("2026-12-01T09:30:00Z") == 1796117400.0
    for bad in ("yesterdayish", "5 parsecs", "", "١٢h", "nan", "1e999d"):
        with pytest.raises(UsageError):
            parse_when(bad, now=now)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portatlas", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, NO_COLOR="1", **(env or {})))


def test_cli_errors_are_one_line(tmp_path):
    missing = _cli("changes", "--snapshots", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no snapshots yet" in missing.stderr
    bad = _cli("changes", "--since", "soon", "--snapshots", str(tmp_path / "none.sqlite3"))
    assert bad.returncode == 2 and bad.stderr.startswith("portatlas: error: --since")
    assert _cli("local", "--changes").returncode == 2
    assert _cli("scan", "198.18.0.1", "--save", " ").returncode == 2


def test_cli_lists_changes_from_a_store(tmp_path):
    path = tmp_path / "s.sqlite3"
    with SnapshotStore(path) as store:
        store.save("local", "h1", local_items(_report(_sock(22))), taken_at=time.time() - 60)
        store.save("local", "h1", local_items(_report(
            _sock(22, pid=5, name="evil\x1b]0;owned\x07"), _sock(8080))))
    text = _cli("changes", "--host", "h1", "--snapshots", str(path))
    assert text.returncode == 0, text.stderr
    assert "+ tcp 0.0.0.0:8080" in text.stdout and "~ tcp 0.0.0.0:22" in text.stdout
    assert "\x1b" not in text.stdout and "\x07" not in text.stdout
    doc = json.loads(_cli("changes", "--host", "h1", "--json", "--snapshots", str(path)).stdout)
    assert doc["schema"] == "portatlas.changes/1"
    [interval] = doc["intervals"]
    assert {c["change"] for c in interval["changes"]} == {"appeared", "changed"}
    listing = json.loads(_cli("changes", "--list", "--json", "--snapshots", str(path)).stdout)
    assert len(listing["snapshots"]) == 2
    unknown = _cli("changes", "--scan", "nope", "--snapshots", str(path))
    assert unknown.returncode == 1 and "no scan snapshots saved as 'nope'" in unknown.stderr


def test_packet_filter_verdict_is_compared_without_its_wording():
    def reach(verdict: str, reason: str, handle: int) -> dict:
        return {"verdict": verdict, "reason": reason, "close": [f"nft delete rule ... {handle}"],
                "classes": [{"class": "anywhere", "verdict": verdict, "rule": {"handle": handle}},
                            {"class": "loopback", "verdict": "accepted", "rule": None}]}

    before = local_items(_report(dict(_sock(5432), reachability=reach("exposed", "open", 4))))
    reworded = local_items(_report(dict(_sock(5432), reachability=reach("exposed", "policy", 9))))
    assert diff(before, reworded) == []
    blocked = local_items(_report(dict(_sock(5432), reachability=reach("blocked", "drop", 9))))
    [change] = diff(before, blocked)
    [field] = change.fields
    assert field.facet == "reachability"
    assert field.before == {"verdict": "exposed", "classes": {"anywhere": "exposed",
                                                              "loopback": "accepted"}}
    assert field.after["verdict"] == "blocked"
