"""Building the history tables: user-added releases, the release cache, bad files, other sources."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import HISTORY, IANA_CSV, IANA_XML

OLD_2017 = HISTORY / "service-names-port-numbers-2017-03-10.xml"
OLD_2024 = HISTORY / "service-names-port-numbers-2024-03-18.xml"

MTP_RECORD = """  <record>
    <name>mtp-test</name>
    <protocol>tcp</protocol>
    <description>Mail Transfer Protocol (test release)</description>
    <number>57</number>
  </record>
"""


@pytest.fixture()
def isolated(tmp_path, monkeypatch):
    """No user data directory or history override from the machine running the tests."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PORTATLAS_HISTORY", raising=False)
    return tmp_path


def _history_dir(tmp_path: Path, *files: Path) -> Path:
    folder = tmp_path / "history"
    folder.mkdir(exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def _user_release(folder: Path) -> Path:
    """The 2017 release as a user might add it, edited to look like a 2020 release with 57 named."""
    text = OLD_2017.read_text(encoding="utf-8")
    text = text.replace("<updated>2017-03-10</updated>", "<updated>2020-06-01</updated>", 1)
    marker = "  <record>\n    <protocol>tcp</protocol>\n    <xref type=\"person\" data=\"Jon_Postel\"/>\n" \
             "    <description>any private terminal access</description>\n    <number>57</number>\n  </record>\n"
    assert marker in text, "the 2017 file's record for 57/tcp changed shape"
    text = text.replace(marker, MTP_RECORD, 1)
    path = folder / "service-names-port-numbers-2020-06-01.xml"
    path.write_text(text, encoding="utf-8")
    return path


def _events(db: Path, port: int, transport: str) -> list[dict]:
    from portatlas.history.section import history_data

    conn = sqlite3.connect(db)
    try:
        return history_data(conn, port, transport)["registry_timeline"].get(transport, [])
    finally:
        conn.close()


def _labels(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT label FROM history_release ORDER BY idx")]
    finally:
        conn.close()


def test_user_added_release_joins_the_timeline(isolated, monkeypatch):
    from portatlas.kb.build import build

    folder = _history_dir(isolated, OLD_2017)
    _user_release(folder)
    monkeypatch.setenv("PORTATLAS_HISTORY", str(folder))
    db = isolated / "db.sqlite3"
    result = build(db, str(IANA_XML))
    assert _labels(db) == ["2017-03-10", "2020-06-01", "2026-08-17"]
    kinds = [s["kind"] for s in result["sources"]]
    assert kinds.count("registry-release") == 2
    events = _events(db, 57, "tcp")
    assert [e["kind"] for e in events] == ["present", "changed", "changed"]
    assert events[1]["record"]["service"] == "mtp-test"
    assert (events[1]["after_release"], events[1]["by_release"]) == ("2017-03-10", "2020-06-01")
    assert events[2]["record"]["service"] is None
    assert events[2]["record"]["description"] == "any private terminal access"


def test_unchanged_releases_are_read_back_not_parsed(isolated, monkeypatch):
    from portatlas.history import incremental, releases, store
    from portatlas.kb.build import build

    monkeypatch.setenv("PORTATLAS_HISTORY", str(_history_dir(isolated, OLD_2017, OLD_2024)))
    parsed: list[str] = []
    real = incremental.ReleaseParser.parse

    def recording(self, location):
        parsed.append(location)
        return real(self, location)

    monkeypatch.setattr(incremental.ReleaseParser, "parse", recording)
    db = isolated / "db.sqlite3"
    build(db, str(IANA_XML))
    assert len(parsed) == 2
    first = _snapshot(db)
    build(db, str(IANA_XML))
    assert len(parsed) == 2  # the second build parsed nothing
    assert _snapshot(db) == first
    # a change of importer code (the fingerprint) means parsing again
    assert store.cached_releases(db, "another-code") == {}
    assert len(store.cached_releases(db, releases.code_fingerprint())) == 3


def _snapshot(db: Path) -> tuple:
    conn = sqlite3.connect(db)
    try:
        records = conn.execute("SELECT releases, service, port_lo, port_hi, transport, description,"
                               " assignee, refs, notes FROM history_record ORDER BY 2, 3, 5, 6, 1").fetchall()
        releases = conn.execute("SELECT label, sha256, records FROM history_release").fetchall()
        return releases, records
    finally:
        conn.close()


def test_series_parse_equals_one_by_one():
    from portatlas.history.incremental import parse_series
    from portatlas.history.releases import parse_file

    series = parse_series([str(OLD_2017), str(OLD_2024)])
    one_by_one = [parse_file(str(OLD_2017)), parse_file(str(OLD_2024))]
    assert [r.records for r in series] == [r.records for r in one_by_one]
    assert [r.label for r in series] == ["2017-03-10", "2024-03-18"]


def test_bad_release_file_is_skipped_with_a_warning(isolated, monkeypatch, capsys):
    from portatlas.kb.build import build

    folder = _history_dir(isolated, OLD_2017)
    (folder / "broken.xml").write_text("<registry><record><name>x</name>")
    (folder / "not-a-registry.xml").write_text("<?xml version='1.0'?><registry></registry>")
    monkeypatch.setenv("PORTATLAS_HISTORY", str(folder))
    db = isolated / "db.sqlite3"
    build(db, str(IANA_XML))
    err = capsys.readouterr().err
    assert "warning: skipping history release" in err and "broken.xml" in err
    assert "not-a-registry.xml" in err
    assert _labels(db) == ["2017-03-10", "2026-08-17"]


def test_duplicate_of_the_current_release_is_ignored(isolated, monkeypatch):
    from portatlas.kb.build import build

    monkeypatch.setenv("PORTATLAS_HISTORY", str(_history_dir(isolated, OLD_2024, IANA_XML)))
    db = isolated / "db.sqlite3"
    build(db, str(IANA_XML))
    assert _labels(db) == ["2024-03-18", "2026-08-17"]


def test_csv_registry_as_the_current_release(isolated, monkeypatch):
    from portatlas.kb.build import build

    monkeypatch.setenv("PORTATLAS_HISTORY", str(_history_dir(isolated, OLD_2024)))
    db = isolated / "db.sqlite3"
    build(db, str(IANA_CSV))
    conn = sqlite3.connect(db)
    current = conn.execute("SELECT label, format, date_basis FROM history_release WHERE current=1").fetchone()
    conn.close()
    assert current == ("2025-03-28", "csv", "newest-record")
    gone = [e for e in _events(db, 2, "tcp") if e["kind"] == "deassigned"]
    assert len(gone) == 1
    assert (gone[0]["date"], gone[0]["after_release"], gone[0]["by_release"]) == \
        ("2025-02-13", "2024-03-18", "2025-03-28")


def test_etc_services_build_keeps_history_of_releases(isolated, monkeypatch):
    from portatlas.kb.build import build

    if not os.path.isfile("/etc/services"):
        pytest.skip("no /etc/services")
    monkeypatch.setenv("PORTATLAS_HISTORY", str(_history_dir(isolated, OLD_2017, OLD_2024)))
    db = isolated / "db.sqlite3"
    build(db, "/etc/services")
    assert _labels(db) == ["2017-03-10", "2024-03-18"]
    assert [e["kind"] for e in _events(db, 2, "tcp")] == ["present"]


def test_database_without_history_tables_still_shows_notes(isolated, monkeypatch):
    from portatlas.history.section import history_data
    from portatlas.kb import build as build_module

    monkeypatch.setattr(build_module, "CONTRIBUTORS", [])
    db = isolated / "db.sqlite3"
    build_module.build(db, str(IANA_XML))
    conn = sqlite3.connect(db)
    data = history_data(conn, 57, None)
    conn.close()
    assert data["releases"] == [] and data["registry_timeline"] == {}
    assert "Mail Transfer Protocol" in data["curated_history"][0]["text"]
