"""The notes' factual claims that can be checked against data: the real registry, sources.

- A note that says its port is "unassigned" in the registry is right about the current
  registry (../shared/data, read with the importer): every record covering the port and
  transport is an "Unassigned" gap row. 6006 lies in X11's 6000-6063, so it is not.
- A note that says a port is "registered as NAME" names a service that the current registry
  has on that port (and one of the note's transports).
- Vendor sources carry a URL (https), so each can be checked; a version or date when given
  has the documented shape. The schema requires the URL; these tests check the schema does.
- Specific corrections of a fact-check stay corrected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import IANA_XML

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "portatlas" / "history"
NOTES = json.loads((PACKAGE / "notes.json").read_text(encoding="utf-8"))["notes"]
SCHEMA = json.loads((PACKAGE / "notes.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registry():
    """The current registry as the importer reads it: {(port, transport): [Entry]}."""
    from portatlas.kb.sources import parse_source, read_source

    parsed = parse_source(read_source(str(IANA_XML)))
    return parsed.entries


def _covering(entries, port: int, transport: str) -> list:
    return [e for e in entries if e.port_lo is not None and e.port_lo <= port <= e.port_hi
            and e.transport in (transport, None)]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;])\s+", text) if s]


_UNASSIGNED = [n for n in NOTES
               if any("unassigned" in s.lower() and "registry" in s.lower()
                      for s in _sentences(n["text"]))]
# "registered as krb524 and nv-video," — a second name only when a clause ends after it
_REGISTERED_AS = re.compile(r"\bregistered as ([a-z0-9][\w.+-]*[a-z0-9])"
                            r"(?: and ([a-z0-9][\w.+-]*[a-z0-9])(?=[,.;)]|$))?", re.I)
_REGISTERED = [n for n in NOTES if _REGISTERED_AS.search(n["text"])]


def test_the_claims_are_found():
    # the selection itself must not silently become empty
    assert len(_UNASSIGNED) >= 15
    assert len(_REGISTERED) >= 20
    assert any(n["port"] == 15 for n in _UNASSIGNED)


@pytest.mark.parametrize("note", _UNASSIGNED, ids=lambda n: f"{n['port']}-{n['kind']}")
def test_unassigned_claims_match_the_registry(registry, note):
    ports = [note["port"]]
    if any("these ports" in s for s in _sentences(note["text"])):
        ports += [r["port"] for r in note.get("related", ())]
    for port in ports:
        for transport in note["transports"]:
            found = _covering(registry, port, transport)
            assert found, f"{port}/{transport}: no record at all"
            taken = [(e.service, e.ports, e.description) for e in found if e.status != "unassigned"]
            assert not taken, f"note says {port}/{transport} is unassigned; the registry has {taken}"


@pytest.mark.parametrize("note", _REGISTERED, ids=lambda n: f"{n['port']}-{n['kind']}")
def test_registered_as_claims_match_the_registry(registry, note):
    for match in _REGISTERED_AS.finditer(note["text"]):
        for name in filter(None, match.groups()):
            services = {(e.service or "").lower() for t in note["transports"]
                        for e in _covering(registry, note["port"], t)}
            assert name.lower() in services, \
                f"note says {note['port']} is registered as {name}; the registry has {services}"


def test_unassigned_check_catches_a_port_inside_a_range(registry):
    # 6006 has no record of its own but is inside x11's 6000-6063
    assert [e.service for e in _covering(registry, 6006, "tcp")] == ["x11"]


_VENDOR = [(n, s) for n in NOTES for s in n["sources"] if s["type"] == "vendor"]


def test_vendor_sources_carry_a_url():
    assert len(_VENDOR) > 100
    missing = [(n["port"], s["document"]) for n, s in _VENDOR if not s.get("url", "").startswith("https://")]
    assert not missing, missing


def test_vendor_source_versions_and_dates_have_their_shape():
    for note, source in _VENDOR:
        if "date" in source:
            assert re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", source["date"]), (note["port"], source)
        if "version" in source:
            assert source["version"].strip() and len(source["version"]) <= 40, (note["port"], source)


def test_schema_requires_a_vendor_url():
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    note = {"port": 5432, "transports": ["tcp"], "kind": "use", "category": "database",
            "title": "PostgreSQL", "text": "PostgreSQL's default port is 5432 in its docs.",
            "sources": [{"type": "vendor", "vendor": "PostgreSQL", "document": "Docs"}]}
    doc = {"schema": "portatlas.history-notes/1", "notes": [note]}
    assert not validator.is_valid(doc)
    note["sources"][0]["url"] = "http://insecure.example/"
    assert not validator.is_valid(doc)
    note["sources"][0]["url"] = "https://www.postgresql.org/docs/current/runtime-config-connection.html"
    assert validator.is_valid(doc)
    note["sources"][0]["date"] = "May 2020"
    assert not validator.is_valid(doc)


def _note(port: int, kind: str | None = None) -> dict:
    return next(n for n in NOTES if n["port"] == port and (kind is None or n["kind"] == kind))


def test_fact_check_corrections_stay():
    tensorboard = _note(6006)
    assert "unassigned" not in tensorboard["text"]
    assert "6000-6063" in tensorboard["text"] and "X11" in tensorboard["text"]
    beats = _note(5044)
    assert "no default port" in beats["text"] and "by default" not in beats["text"]
    msmq = _note(1801)
    assert "2107" not in msmq["text"]
    assert all(r["port"] != 2107 for r in msmq.get("related", ()))
    ipp = _note(631)
    assert {"type": "rfc", "number": 8010, "section": "4"} in ipp["sources"]
    assert "RFC 8010" in ipp["text"]


def test_rfc_section_is_shown_and_linked():
    from portatlas.history.notes import source_view

    view = source_view({"type": "rfc", "number": 8010, "section": "4"})
    assert view["label"] == "RFC 8010, section 4"
    assert view["url"] == "https://www.rfc-editor.org/rfc/rfc8010#section-4"
