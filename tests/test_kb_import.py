"""The registry importers against the real IANA files, checked by independent means."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET

import pytest

from conftest import IANA_CSV, IANA_XML
from portatlas.kb.iana_csv import parse_registry_csv
from portatlas.kb.iana_xml import parse_registry_xml

NS = "{http://www.iana.org/assignments}"


@pytest.fixture(scope="module")
def xml_registry(shared_data):
    with open(IANA_XML, "rb") as f:
        return parse_registry_xml(f)


@pytest.fixture(scope="module")
def csv_registry(shared_data):
    with open(IANA_CSV, "rb") as f:
        return parse_registry_csv(f)


def test_xml_record_count_matches_elementtree(xml_registry):
    root = ET.parse(IANA_XML).getroot()
    assert len(xml_registry.entries) == len(root.findall(f"{NS}record"))
    assert len(xml_registry.people) >= len(root.find(f"{NS}people").findall(f"{NS}person"))
    assert xml_registry.updated == root.find(f"{NS}updated").text


def test_csv_row_count_matches_csv_module(csv_registry):
    with open(IANA_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(csv_registry.entries) == len(rows) - 1


def test_database_holds_every_record(atlas, xml_registry):
    count = atlas.store.conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    assert count == len(xml_registry.entries)
    prov = [p for p in atlas.provenance() if p["kind"] == "iana-registry"][0]
    assert prov["records"] == count and len(prov["sha256"]) == 64
    assert prov["registry_date"] == xml_registry.updated


def _by(entries, port, transport):
    return [e for e in entries if e.port_lo == port and e.port_hi == port and e.transport == transport]


@pytest.mark.parametrize("source", ["xml", "csv"])
def test_spot_checks(source, xml_registry, csv_registry):
    entries = (xml_registry if source == "xml" else csv_registry).entries
    for transport in ("tcp", "udp"):
        (e57,) = _by(entries, 57, transport)
        assert e57.service is None and e57.description == "any private terminal access"
        assert e57.assignee.id == "Jon_Postel" and e57.status == "assigned"
        (e103,) = _by(entries, 103, transport)
        assert (e103.service, e103.description) == ("gppitnp", "Genesis Point-to-Point Trans Net")
        (e102,) = _by(entries, 102, transport)
        assert (e102.service, e102.description) == ("iso-tsap", "ISO-TSAP Class 0")
        assert e102.assignee.id == "Marshall_Rose"
    smtp = _by(entries, 25, "tcp")[0]
    assert smtp.service == "smtp" and smtp.description == "Simple Mail Transfer"
    assert smtp.assignee.id == "IESG" and smtp.contact.id == "IETF_Chair"
    assert any(e.service == "http" for e in _by(entries, 80, "tcp"))
    assert any(e.service == "https" for e in _by(entries, 443, "tcp"))
    # de-assigned: ports 2 and 3 were compressnet until 2025-02-13
    (e2,) = _by(entries, 2, "tcp")
    assert e2.status == "deassigned" and e2.previously == "compressnet"
    assert "2025-02-13" in e2.notes
    # unauthorized use report
    (finger,) = _by(entries, 79, "tcp")
    assert finger.unauthorized.startswith("Unauthorized use by some mail users")
    # alias
    (whois,) = [e for e in entries if e.service == "whois++" and e.transport == "tcp"]
    assert whois.alias_of == "whoispp" and whois.port_lo == 63
    # service-name-only record
    (argus,) = [e for e in entries if e.service == "argus"]
    assert argus.port_lo is None and argus.transport is None
    # a range (the dynamic range is one record without a transport)... and x11's 6000-6063
    x11 = [e for e in entries if e.service == "x11" and e.transport == "tcp"]
    assert [(e.port_lo, e.port_hi) for e in x11] == [(6000, 6063)]


def test_people_resolved_from_xml(xml_registry):
    (e57,) = _by(xml_registry.entries, 57, "tcp")
    assert e57.assignee.name == "Jon Postel" and e57.assignee.email == "postel@isi.edu"


def test_references_become_links(xml_registry):
    (finger,) = _by(xml_registry.entries, 0, "tcp")
    (ref,) = finger.references
    assert ref.kind == "rfc" and ref.url == "https://www.rfc-editor.org/rfc/rfc6335"
    (smtp,) = _by(xml_registry.entries, 25, "tcp")
    assert all(r.url for r in smtp.references)


def _norm(text):
    return " ".join(text.split()) if text else text


def test_xml_and_csv_agree_on_shared_records(xml_registry, csv_registry):
    """The CSV is an older release than the XML, so compare records that both releases hold
    with the same modification date; those must agree on every field."""
    xml_by = {}
    for e in xml_registry.entries:
        xml_by.setdefault(e.key(), []).append(e)
    csv_by = {}
    for e in csv_registry.entries:
        csv_by.setdefault(e.key(), []).append(e)
    shared = [k for k in xml_by.keys() & csv_by.keys()
              if len(xml_by[k]) == len(csv_by[k]) == 1 and xml_by[k][0].modified == csv_by[k][0].modified]
    assert len(shared) > 14000
    ref_differences = id_differences = 0
    for key in shared:
        a, b = xml_by[key][0], csv_by[key][0]
        for field in ("description", "registered", "modified", "service_code", "unauthorized",
                      "notes", "status", "alias_of", "previously"):
            assert _norm(getattr(a, field)) == _norm(getattr(b, field)), (key, field)
        if (a.assignee and a.assignee.id) != (b.assignee and b.assignee.id):
            # a few people ids were renamed between the releases (e.g. _3GPP_4 / ThreeGPP_4)
            id_differences += 1
        refs_a = {r for r in a.references if r.kind != "person"}
        refs_b = {r for r in b.references if r.kind != "person"}
        if refs_a != refs_b:
            # IANA replaces a draft with its RFC without touching the modification date
            ref_differences += 1
    assert ref_differences <= len(shared) // 500
    assert id_differences <= len(shared) // 1000


def test_etc_services_fallback(tmp_path):
    from portatlas.kb.build import build
    from portatlas.atlas import Atlas

    db = tmp_path / "fallback.sqlite3"
    build(db, "/etc/services")
    atlas = Atlas(db, autobuild=False)
    answer = atlas.port(22, "tcp")
    assert answer.entries[0].service == "ssh" and answer.entries[0].source == "etc-services"
    assert atlas.is_fallback and "services" in answer.to_dict()["source"]
