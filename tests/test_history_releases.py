"""All 42 real registry releases in the timeline: incremental parsing, dated changes, counts.

Everything here is checked against the release files read independently (ElementTree), never
against portatlas's own parse alone. The files are read from ../shared/data, never copied.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import HISTORY, IANA_XML, SHARED

NS = "{http://www.iana.org/assignments}"
RELEASES = SHARED / "iana" / "releases"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "src" / "portatlas" / "history"


def _release(date: str) -> Path:
    return RELEASES / f"service-names-port-numbers-{date}.xml"


def _records(path: Path):
    return ET.parse(path).getroot().iter(NS + "record")


def _text(record, tag: str) -> str:
    return " ".join((record.findtext(NS + tag) or "").split())


def _key(record) -> tuple[str, str, str]:
    return (_text(record, "name").lower(), _text(record, "number"), _text(record, "protocol"))


def _is_gap(record) -> bool:
    """An "Unassigned" gap row, which the timeline leaves out (docs/history.md)."""
    note = _text(record, "note").lower()
    return (not _text(record, "name") and _text(record, "description").lower().startswith("unassigned")
            and "de-assigned" not in note and "deassigned" not in note)


# -- incremental parsing -------------------------------------------------------------------
def test_series_parse_is_the_full_parse(shared_data):
    from portatlas.history.incremental import ReleaseParser
    from portatlas.history.releases import parse_file

    files = [HISTORY / "service-names-port-numbers-2024-03-18.xml", _release("2025-08-26"),
             _release("2025-09-22"), _release("2026-03-06"), _release("2026-03-09"), IANA_XML]
    parser = ReleaseParser()
    series = [parser.parse(str(f)) for f in files]
    assert parser.full_parses == 0 and parser.reused_records > 4 * 13000
    for path, got in zip(files, series):
        full = parse_file(str(path))
        assert got.records == full.records, path.name
        assert (got.date, got.sha256) == (full.date, full.sha256)
        named = {k: v for k, v in full.people.items() if v != (None, None)}
        assert {k: v for k, v in got.people.items() if v != (None, None)} == named


@pytest.mark.parametrize("date", ["2025-08-26", "2026-05-28"])
def test_record_count_equals_an_independent_count(shared_data, date):
    from portatlas.history.incremental import ReleaseParser

    parser = ReleaseParser()
    parser.parse(str(_release("2025-09-22")))  # something to reuse from
    release = parser.parse(str(_release(date)))
    expected = sum(1 for r in _records(_release(date)) if not _is_gap(r))
    assert len(release.records) == expected


def test_unusual_layout_falls_back_to_the_full_parse(tmp_path):
    from portatlas.history.incremental import ReleaseParser
    from portatlas.history.releases import parse_file

    text = _release("2026-03-09").read_text(encoding="utf-8")
    odd = tmp_path / "odd.xml"
    odd.write_text(text.replace("<people>", "<!-- a comment -->\n  <people>", 1), encoding="utf-8")
    parser = ReleaseParser()
    parser.parse(str(_release("2026-03-06")))
    release = parser.parse(str(odd))
    assert parser.full_parses == 1
    assert release.records == parse_file(str(odd)).records


def test_bad_files_are_refused_like_the_importer(tmp_path):
    from portatlas.errors import DataError
    from portatlas.history.incremental import ReleaseParser

    head = _release("2026-03-06").read_bytes()
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(head[: len(head) // 2])
    doctype = tmp_path / "doctype.xml"
    doctype.write_bytes(head.replace(b"<registry ", b"<!DOCTYPE r [<!ENTITY a 'x'>]>\n<registry ", 1))
    parser = ReleaseParser()
    parser.parse(str(_release("2026-03-06")))
    with pytest.raises(DataError, match="well-formed"):
        parser.parse(str(truncated))
    with pytest.raises(DataError, match="DOCTYPE"):
        parser.parse(str(doctype))


# -- dated changes in the year of weekly releases --------------------------------------------
@pytest.fixture(scope="module")
def timeline(atlas_db):
    from portatlas.history.section import history_data

    conn = sqlite3.connect(atlas_db)
    yield lambda port, transport=None: history_data(conn, port, transport)
    conn.close()


def _named_on(path: Path, port: int, transport: str) -> list[str]:
    return [_text(r, "name") for r in _records(path)
            if _text(r, "number") == str(port) and _text(r, "protocol") == transport
            and _text(r, "name")]


def test_an_addition_is_dated_by_its_registration_and_the_releases(timeline):
    # independent: 9183 sirius-agent is absent on 2026-03-06 and present on 2026-03-09
    assert _named_on(_release("2026-03-06"), 9183, "tcp") == []
    assert _named_on(_release("2026-03-09"), 9183, "tcp") == ["sirius-agent"]
    for transport in ("tcp", "udp"):
        events = timeline(9183, transport)["registry_timeline"][transport]
        added = [e for e in events if e["kind"] == "added"]
        assert len(added) == 1
        assert (added[0]["after_release"], added[0]["by_release"]) == ("2026-03-06", "2026-03-09")
        assert (added[0]["date"], added[0]["date_basis"]) == ("2026-03-09", "registered")


def _xrefs(path: Path, port: int, transport: str) -> set:
    for r in _records(path):
        if _text(r, "number") == str(port) and _text(r, "protocol") == transport:
            return {(x.get("type"), (x.get("data") or "").lower()) for x in r.iter(NS + "xref")
                    if x.get("type") != "person"}
    raise AssertionError("no record")


def test_an_undated_change_is_placed_between_two_releases_days_apart(timeline):
    # independent: 546/udp (dhcpv6-client) changed references between these two releases,
    # and the record carries no date inside that window
    before, after = _release("2026-01-23"), _release("2026-02-02")
    assert _xrefs(before, 546, "udp") != _xrefs(after, 546, "udp")
    events = timeline(546, "udp")["registry_timeline"]["udp"]
    changed = [e for e in events if e["after_release"] == "2026-01-23"]
    assert len(changed) == 1 and changed[0]["by_release"] == "2026-02-02"
    assert changed[0]["date"] is None
    assert [c["field"] for c in changed[0]["changes"]] == ["references"]
    from portatlas.render.history import when

    assert when(changed[0]) == "between releases 2026-01-23 and 2026-02-02"


def test_consecutive_release_diff_counts_match_an_independent_count(cli):
    old, new = _release("2026-05-27"), _release("2026-05-28")
    keys_old = {_key(r) for r in _records(old) if not _is_gap(r)}
    keys_new = {_key(r) for r in _records(new) if not _is_gap(r)}
    result = json.loads(cli("data", "diff", "2026-05-27", "2026-05-28", "--json").stdout)
    assert result["counts"]["added"] == len(keys_new - keys_old) == 2
    assert result["counts"]["removed"] == len(keys_old - keys_new) == 0
    assert {a["ports"] for a in result["added"]} == {"30939"}


def test_history_command_shows_the_dated_change(cli):
    out = cli("history", "9183/tcp")
    assert out.returncode == 0
    assert "2026-03-09 (registration date)" in out.stdout
    assert "Releases imported  (42)" in out.stdout


# -- how the history gets built --------------------------------------------------------------
def _run(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portatlas", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture()
def fresh_env(tmp_path, shared_data):
    env = {k: v for k, v in os.environ.items() if k not in ("PORTATLAS_HISTORY", "PORTATLAS_REGISTRY")}
    env.update(PORTATLAS_DB=str(tmp_path / "db.sqlite3"), XDG_DATA_HOME=str(tmp_path / "xdg"),
               NO_COLOR="1")
    return env


def test_first_query_builds_quick_history_then_data_history_imports_all(fresh_env):
    import jsonschema

    first = _run("history", "9183", "--json", env=fresh_env)
    assert first.returncode == 0, first.stderr
    quick = json.loads(first.stdout)
    assert [r["label"] for r in quick["releases"]] == ["2017-03-10", "2024-03-18", "2026-08-17"]
    assert quick["releases_not_imported"] == 39
    assert "data history" in _run("history", "9183", env=fresh_env).stdout

    done = _run("data", "history", "--json", env=fresh_env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    jsonschema.validate(result, json.loads((SCHEMA_DIR / "data-history.schema.json").read_text()))
    assert len(result["releases"]) == 42 and result["found"] == 41
    assert (result["reused"], result["parsed"], result["skipped"]) == (2, 39, [])
    full = json.loads(_run("history", "9183/tcp", "--json", env=fresh_env).stdout)
    assert full["releases_not_imported"] == 0
    added = [e for e in full["registry_timeline"]["tcp"] if e["kind"] == "added"]
    assert (added[0]["after_release"], added[0]["by_release"]) == ("2026-03-06", "2026-03-09")

    again = json.loads(_run("data", "history", "--json", env=fresh_env).stdout)
    assert (again["reused"], again["parsed"]) == (41, 0)
    assert [r["sha256"] for r in again["releases"]] == [r["sha256"] for r in result["releases"]]
    # the registry itself was left alone
    conn = sqlite3.connect(fresh_env["PORTATLAS_DB"])
    kinds = [k for (k,) in conn.execute("SELECT kind FROM provenance")]
    conn.close()
    assert kinds.count("iana-registry") == 1 and kinds.count("registry-release") == 41


def test_data_history_skips_a_bad_file_and_errors_without_a_database(fresh_env, tmp_path):
    folder = tmp_path / "hist"
    folder.mkdir()
    (folder / "a.xml").symlink_to(_release("2026-03-06"))
    (folder / "broken.xml").write_text("<registry><record>")
    env = dict(fresh_env, PORTATLAS_HISTORY=str(folder))
    missing = _run("data", "history", env=env)
    assert missing.returncode == 3 and missing.stderr.startswith("portatlas: error: no database")
    assert "Traceback" not in missing.stderr
    assert _run("57", "--no-local", env=env).returncode == 0  # quick build: a.xml and broken.xml
    out = _run("data", "history", "--json", env=env)
    assert out.returncode == 0
    result = json.loads(out.stdout)
    assert [s["location"].endswith("broken.xml") for s in result["skipped"]] == [True]
    assert "warning: skipping history release" in out.stderr
    assert [r["label"] for r in result["releases"]] == ["2026-03-06", "2026-08-17"]


def test_an_exact_repeat_is_kept_once_as_by_the_importer(tmp_path):
    from portatlas.history.incremental import ReleaseParser
    from portatlas.history.releases import parse_file

    text = _release("2026-03-09").read_text(encoding="utf-8")
    start = text.index("<record", text.index("<number>80</number>") - 600)
    record = text[start:text.index("</record>", start) + len("</record>")]
    repeated = tmp_path / "repeated.xml"
    repeated.write_text(text.replace(record, record + "\n  " + record, 1), encoding="utf-8")
    parser = ReleaseParser()
    parser.parse(str(_release("2026-03-09")))  # the record is now known byte for byte
    got = parser.parse(str(repeated))
    full = parse_file(str(repeated))
    assert got.records == full.records
    assert len(full.records) == len(parse_file(str(_release("2026-03-09"))).records)
