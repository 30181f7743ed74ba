"""The curated notes: valid against their schema, sourced, and naming only ports that exist.

The rules (docs/history.md, "Curated notes"):
  1. notes.json validates against notes.schema.json; every note has at least one source.
  2. A note's port and transports, and every related port, exist: a port up to 49151 must be
     covered by a record of the current registry (the registry lists every such port, even
     the unassigned ones) or of an imported release; a port in the dynamic range (49152-65535,
     where the registry assigns nothing) may only be the subject of a de-facto use note that
     cites the vendor's or another publisher's documentation.
  3. A history note's port/transport has an assigned, reserved or de-assigned record in some
     imported release, or the note cites the registry record that describes the port.
  4. A registry citation names a record that exists (service name, or no name plus its
     description, covering that port and transport) in the current registry or a release.
  5. Port numbers written in a note's text (after "port", "on", "to", "and" ..., as N/tcp or
     as host:N) are the note's own port or listed in its "related" ports.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "portatlas" / "history"
NOTES = json.loads((PACKAGE / "notes.json").read_text(encoding="utf-8"))["notes"]
DYNAMIC = 49152


@pytest.fixture(scope="module")
def db(atlas_db):
    conn = sqlite3.connect(atlas_db)
    yield conn
    conn.close()


def _covered(conn, port: int, transport: str) -> bool:
    args = (port, transport)
    for table in ("entries", "history_record"):
        row = conn.execute(f"SELECT 1 FROM {table} WHERE port_lo <= ?1 AND port_hi >= ?1"
                           " AND (transport = ?2 OR transport IS NULL) LIMIT 1", args).fetchone()
        if row:
            return True
    return False


def _records(conn, port: int, transport: str) -> list[tuple]:
    query = ("SELECT service, description, status FROM {} WHERE port_lo <= ?1 AND port_hi >= ?1"
             " AND (transport = ?2 OR transport IS NULL)")
    return (conn.execute(query.format("entries"), (port, transport)).fetchall()
            + conn.execute(query.format("history_record"), (port, transport)).fetchall())


def test_notes_validate_against_schema():
    import jsonschema

    schema = json.loads((PACKAGE / "notes.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads((PACKAGE / "notes.json").read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_schema_rejects_a_note_without_sources():
    import jsonschema

    schema = json.loads((PACKAGE / "notes.schema.json").read_text())
    note = {"port": 57, "transports": ["tcp"], "kind": "history", "title": "MTP",
            "text": "A note that cites nothing at all.", "sources": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "portatlas.history-notes/1", "notes": [note]}, schema)
    use_without_category = dict(note, kind="use", sources=[{"type": "rfc", "number": 780}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "portatlas.history-notes/1", "notes": [use_without_category]}, schema)


def test_every_note_has_a_source_and_unsourced_notes_are_not_shipped():
    from portatlas.history.notes import shippable, to_rows

    assert all(n["sources"] for n in NOTES)
    unsourced = {"port": 1, "transports": ["tcp"], "kind": "history", "title": "x", "text": "y",
                 "sources": []}
    assert shippable(NOTES + [unsourced]) == NOTES
    assert len(to_rows(NOTES + [unsourced])) == len(NOTES)


def test_enough_ports_and_no_duplicates():
    ports = {n["port"] for n in NOTES}
    assert len(ports) >= 150
    keys = [(n["port"], n["kind"]) for n in NOTES]
    assert len(keys) == len(set(keys)), "one note per port and kind"
    # the early ARPANET assignments of RFC 790 are there
    for port in (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 37, 43, 53, 57, 69, 79, 95, 103):
        assert port in ports
    assert any(s == {"type": "rfc", "number": 790} for n in NOTES for s in n["sources"])


def test_notes_cover_the_ports_scanners_find_most():
    path = Path("/usr/share/nmap/nmap-services")
    if not path.is_file():
        pytest.skip("nmap-services not installed (.ci/apt/base.txt installs nmap)")
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 3 or "/" not in fields[1]:
            continue
        number, proto = fields[1].split("/")
        rows.append((float(fields[2]), int(number), proto))
    rows.sort(reverse=True)
    noted = {(n["port"], t) for n in NOTES for t in n["transports"]}
    top_tcp = [(p, t) for _, p, t in rows if t == "tcp"][:100]
    top_udp = [(p, t) for _, p, t in rows if t == "udp"][:30]
    assert sum(k in noted for k in top_tcp) >= 70
    assert sum(k in noted for k in top_udp) >= 18


@pytest.mark.parametrize("note", NOTES, ids=lambda n: f"{n['port']}-{n['kind']}")
def test_note_names_only_ports_that_exist(db, note):
    port = note["port"]
    if port >= DYNAMIC:
        assert note["kind"] == "use", "only de-facto uses live in the dynamic range"
        assert any(s["type"] in ("vendor", "document") for s in note["sources"])
    else:
        for transport in note["transports"]:
            assert _covered(db, port, transport), f"{port}/{transport} is in no registry release"
    for related in note.get("related", ()):
        if related["port"] < DYNAMIC:
            assert _covered(db, related["port"], related["transport"]), related
    if note["kind"] == "history":
        for transport in note["transports"]:
            real = [r for r in _records(db, port, transport) if r[2] != "unassigned"]
            cites_registry = any(s["type"] == "registry" and s["port"] == port for s in note["sources"])
            assert real or cites_registry, f"history note on {port}/{transport} without a record"


@pytest.mark.parametrize("note", [n for n in NOTES if any(s["type"] == "registry" for s in n["sources"])],
                         ids=lambda n: f"{n['port']}-{n['kind']}")
def test_registry_citations_match_a_record(db, note):
    for source in (s for s in note["sources"] if s["type"] == "registry"):
        records = _records(db, source["port"], source["transport"])
        if source["service"]:
            ok = any(r[0] and r[0].lower() == source["service"].lower() for r in records)
        else:
            ok = any(not r[0] and r[1] == source.get("description", r[1]) for r in records)
        assert ok, f"no registry record {source}"


_PORT_WORDS = re.compile(
    r"(?:\b(?:ports?|sockets?|on|to|and|or|uses?|at|through)\s+(?:(?:TCP|UDP|SCTP|DCCP)\s+)?"
    r"|\b(?:TCP|UDP)\s+|[A-Za-z0-9.]+:)(\d{1,5})(?![\d.:-])((?:\s*(?:,|/|-|and|or)\s*\d{2,5}(?![\d.:-]))*)"
    r"|\b(\d{1,5})/(?:tcp|udp|sctp|dccp)\b")


def _ports_in_text(text: str) -> set[int]:
    found = set()
    for match in _PORT_WORDS.finditer(text):
        first, more, slashed = match.groups()
        number = first or slashed
        if first and 1900 <= int(first) <= 2030 and re.match(r"\s*-\d", text[match.end():match.end() + 3]):
            continue  # a date such as 2025-02-13
        found.add(int(number))
        found.update(int(n) for n in re.findall(r"\d+", more or ""))
    return found


def test_ports_in_text_helper():
    assert _ports_in_text("listens on 9200 and 9300, or TCP 1883") == {9200, 9300, 1883}
    assert _ports_in_text("de-assigned on 2025-02-13 (RFC 790)") == set()
    assert _ports_in_text("uses 2086/2087 and 8728/tcp") == {2086, 2087, 8728}


@pytest.mark.parametrize("note", NOTES, ids=lambda n: f"{n['port']}-{n['kind']}")
def test_ports_in_text_are_declared(note):
    allowed = {note["port"]} | {r["port"] for r in note.get("related", ())}
    years = set(range(1960, 2031))
    undeclared = {p for p in _ports_in_text(note["text"]) if p not in allowed and p not in years}
    assert not undeclared, f"ports {sorted(undeclared)} in the text but not in 'related'"


def test_database_holds_the_shipped_notes(db):
    from portatlas.history.notes import from_file, from_row

    count = db.execute("SELECT count(*) FROM history_note").fetchone()[0]
    assert count == len(NOTES)
    for port in (57, 103, 9200, 6667, 49152):
        rows = db.execute("SELECT kind, transports, category, title, text, sources, related"
                          " FROM history_note WHERE port=? ORDER BY id", (port,)).fetchall()
        assert [from_row(r) for r in rows] == from_file(port)
