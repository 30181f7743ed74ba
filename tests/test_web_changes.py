"""The web UI's 'Latest changes' (machine page) and /api/changes, from a snapshot file."""

from __future__ import annotations

import os
import time

import jsonschema
import pytest

from portatlas.changes import SnapshotStore, local_items, scan_items
from support.web import client, make_app
from test_changes import _report, _scan, _sock

HOST = os.uname().nodename


@pytest.fixture()
def snapshots(tmp_path):
    path = tmp_path / "snaps.sqlite3"
    now = time.time()
    with SnapshotStore(path) as store:
        store.save("local", HOST, local_items(_report(_sock(22))), taken_at=now - 120)
        store.save("local", HOST, local_items(_report(_sock(22), _sock(8080, name="<b>x</b>"))),
                   taken_at=now - 60)
        store.save("scan", "lab", scan_items(_scan(("198.18.0.2", "up", [(22, "open")]))),
                   taken_at=now - 30)
    return path


@pytest.fixture()
def web(atlas_db, tmp_path, snapshots):
    app = make_app(atlas_db, tmp_path / "fb.sqlite3", snapshots=snapshots)
    c = client(app)
    yield c
    c.close()


def test_api_changes_lists_the_latest_intervals(web):
    r = web.get("/api/changes")
    assert r.status_code == 200
    doc = r.json()
    assert doc["schema"] == "portatlas.changes/1" and doc["name"] == HOST
    [interval] = doc["intervals"]
    assert [c["key"] for c in interval["changes"]] == ["tcp 0.0.0.0 8080"]
    spec = web.get("/openapi.json").json()
    schema = dict(spec["components"]["schemas"]["Changes"], components=spec["components"])
    jsonschema.validate(doc, {**schema, "$defs": {}}, cls=jsonschema.Draft202012Validator)
    scan = web.get("/api/changes", params={"kind": "scan", "name": "lab"}).json()
    assert scan["intervals"] == []  # one scan snapshot: nothing to compare yet


def test_api_changes_of_the_last_scan_by_default(web):
    doc = web.get("/api/changes", params={"kind": "scan"}).json()
    assert doc["name"] == "lab" and doc["intervals"] == []


@pytest.mark.parametrize("params", [{"kind": "other"}, {"limit": "0"},
                                    {"limit": "x"}, {"limit": "101"}, {"name": "n" * 201}])
def test_api_changes_refuses_bad_parameters(web, params):
    r = web.get("/api/changes", params=params)
    assert r.status_code == 400 and "error" in r.json()


def test_machine_page_shows_latest_changes_escaped(web):
    page = web.get("/local").text
    assert "Latest changes" in page and "tcp 0.0.0.0:8080" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_machine_page_without_snapshots_says_how_to_save_one(atlas_db, tmp_path):
    app = make_app(atlas_db, tmp_path / "fb.sqlite3", snapshots=tmp_path / "none.sqlite3")
    c = client(app)
    page = c.get("/local").text
    c.close()
    assert "No snapshots saved yet" in page and "portatlas local --save" in page
