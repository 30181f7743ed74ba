"""Search covers our curated notes, ranked together with the registry (CLI, Python API, web)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from support.web import client, make_app


def test_api_finds_x400_notes_on_102_and_103(atlas):
    hits = atlas.search("x.400")
    notes = [h for h in hits if h.kind == "note"]
    assert {h.port for h in notes} >= {102, 103}
    for h in notes:
        assert h.entry is None and h.note["title"] and h.note["sources"]
        assert "x.400" in (h.note["title"] + " " + h.note["text"]).lower()


def test_notes_and_registry_are_ranked_together(atlas):
    hits = atlas.search("mail transfer", 30)
    kinds = [h.kind for h in hits]
    assert "registry" in kinds and "note" in kinds
    assert hits[0].kind == "registry" and hits[0].entry.service == "smtp"
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    mtp = next(h for h in hits if h.kind == "note" and h.port == 57)
    assert mtp.note["title"] == "Mail Transfer Protocol (MTP)"


def test_an_exact_service_name_still_comes_first(atlas):
    hits = atlas.search("elasticsearch")
    assert hits and all(h.kind == "note" for h in hits)  # no registry record names it
    assert {9200, 9300} <= {h.port for h in hits}
    http = atlas.search("http", 5)
    assert http[0].kind == "registry" and http[0].entry.service == "http"


def test_cli_search_lists_notes_with_their_port(cli):
    out = cli("search", "x.400")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert any(r[:3] == ["102", "tcp", "[note]"] for r in rows)
    assert any(r[:3] == ["103", "tcp/udp", "[note]"] for r in rows)
    data = json.loads(cli("search", "x.400", "--json").stdout)
    notes = [r for r in data["results"] if r["result"] == "note"]
    assert {r["port_lo"] for r in notes} >= {102, 103}
    first = next(r for r in notes if r["port_lo"] == 102)
    assert first["ports"] == "102" and first["transport"] == "tcp" and first["service"] is None
    assert first["description"] == first["note"]["title"] and first["source"] == "portatlas-notes"
    assert all(r["result"] == "registry" for r in
               json.loads(cli("search", "mail transfer", "--json").stdout)["results"]
               if r.get("service"))
    assert cli("search", "zzzqqq-nothing").returncode == 1


def test_web_search_shows_notes_linked_to_their_port(atlas_db, tmp_path):
    web = client(make_app(atlas_db, tmp_path / "fb.sqlite3"))
    try:
        data = web.get("/api/search", params={"q": "x.400"}).json()
        urls = {r["url"] for r in data["results"] if r["result"] == "note"}
        assert {"/ports/102", "/ports/103"} <= urls
        html = web.get("/search", params={"q": "x.400"}).text
        assert 'href="/ports/102"' in html and "[note]" in html and "ISO-TSAP" in html
        page = web.get("/ports/9183").text  # the web history section shows the dated change
        assert "2026-03-09" in page and "sirius-agent" in page
        assert "registry releases, 2017-03-10 to 2026-08-17" in page
    finally:
        web.close()


def test_database_without_note_index_searches_the_registry_only(atlas_db, tmp_path):
    import shutil

    from portatlas.atlas import Atlas

    copy = tmp_path / "old.sqlite3"
    shutil.copy(atlas_db, copy)
    conn = sqlite3.connect(copy)
    conn.execute("DROP TABLE history_note_fts")
    conn.commit()
    conn.close()
    old = Atlas(copy, autobuild=False)
    try:
        assert all(h.kind == "registry" for h in old.search("mail transfer"))
        assert old.search("x.400") == []
    finally:
        old.close()
