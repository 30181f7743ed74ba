"""Registry timelines match the releases, checked against the XML files read independently."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import HISTORY, IANA_XML, SHARED

RELEASES = sorted((SHARED / "iana" / "releases").glob("*.xml"))
# every release the test database imports, oldest first (the file names carry the dates)
ALL_FILES = [HISTORY / "service-names-port-numbers-2017-03-10.xml",
             HISTORY / "service-names-port-numbers-2024-03-18.xml", *RELEASES, IANA_XML]

NS = "{http://www.iana.org/assignments}"
OLD_2017 = HISTORY / "service-names-port-numbers-2017-03-10.xml"
OLD_2024 = HISTORY / "service-names-port-numbers-2024-03-18.xml"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "src" / "portatlas" / "history"


def _named(path: Path, port: int, transport: str) -> list[tuple[str, str | None]]:
    """(name, registration date) of the named single-port records for port/transport."""
    out = []
    for record in ET.parse(path).getroot().iter(NS + "record"):
        if (record.findtext(NS + "number") or "").strip() != str(port):
            continue
        if (record.findtext(NS + "protocol") or "").strip() != transport:
            continue
        name = (record.findtext(NS + "name") or "").strip()
        if name:
            out.append((name, record.get("date")))
    return out


@pytest.fixture(scope="module")
def timeline(atlas_db):
    from portatlas.history.section import history_data

    conn = sqlite3.connect(atlas_db)

    def get(port: int, transport: str | None = None) -> dict:
        return history_data(conn, port, transport)

    yield get
    conn.close()


def _updated(path: Path) -> str:
    """The release's <updated> date, read from the head of the file (no full parse)."""
    head = path.read_bytes()[:2048].decode("utf-8")
    return head.split("<updated>", 1)[1].split("</updated>", 1)[0].strip()


def test_releases_are_all_the_files_oldest_first(timeline):
    releases = timeline(2)["releases"]
    assert len(RELEASES) == 39 and len(releases) == 42
    assert [r["label"] for r in releases] == [_updated(f) for f in ALL_FILES]
    assert [r["current"] for r in releases] == [False] * 41 + [True]
    assert all(r["format"] == "xml" and r["date_basis"] == "registry" for r in releases)


@pytest.mark.parametrize("port", [2, 3])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_compressnet_deassigned_on_2025_02_13(timeline, port, transport):
    # independent look at the files: compressnet in 2017 and 2024, no name today
    assert [n for n, _ in _named(OLD_2017, port, transport)] == ["compressnet"]
    assert [n for n, _ in _named(OLD_2024, port, transport)] == ["compressnet"]
    assert _named(IANA_XML, port, transport) == []

    events = timeline(port, transport)["registry_timeline"][transport]
    assert [e["kind"] for e in events] == ["present", "deassigned"]
    first, gone = events
    assert first["record"]["service"] == "compressnet"
    assert first["by_release"] == "2017-03-10" and first["after_release"] is None
    assert gone["date"] == "2025-02-13" and gone["date_basis"] == "note"
    # de-assigned in 2025-02 (the note), first seen so in the first release after 2024-03-18
    assert (gone["after_release"], gone["by_release"]) == ("2024-03-18", "2025-08-26")
    assert gone["before"]["service"] == "compressnet"
    assert gone["record"]["service"] is None and gone["record"]["status"] == "deassigned"
    assert "previously compressnet" in gone["record"]["notes"]
    changed = {c["field"]: (c["old"], c["new"]) for c in gone["changes"]}
    assert changed["service"] == ("compressnet", None)
    assert changed["description"][1] == "Reserved"


def _added_between_2017_and_2024() -> list[tuple[int, str, str, str | None]]:
    """Ports whose only named tcp record appears in 2024 (absent in 2017) and is unchanged today."""
    def index(path):
        out: dict[tuple[int, str], list] = {}
        for record in ET.parse(path).getroot().iter(NS + "record"):
            number = (record.findtext(NS + "number") or "").strip()
            proto = (record.findtext(NS + "protocol") or "").strip()
            name = (record.findtext(NS + "name") or "").strip()
            if number.isdigit() and proto == "tcp":
                out.setdefault((int(number), proto), []).append(
                    (name, (record.findtext(NS + "description") or "").strip(), record.get("date"),
                     record.get("updated")))
        return out

    old, mid, new = index(OLD_2017), index(OLD_2024), index(IANA_XML)
    found = []
    for key, records in mid.items():
        named = [r for r in records if r[0]]
        if len(records) != 1 or not named or key in old:
            continue  # (a port reserved in 2017 and assigned later is a change, not an addition)
        if new.get(key) != records:
            continue  # changed again later: keep the check simple
        found.append((key[0], "tcp", named[0][0], named[0][2]))
    return sorted(found)


def test_ports_added_between_2017_and_2024(timeline):
    added = _added_between_2017_and_2024()
    assert len(added) > 50
    names = {port: name for port, _, name, _ in added}
    assert names[4460] == "ntske" and names[953] == "rndc"  # NTS-KE (RFC 8915), BIND's rndc
    sample = [a for a in added if a[0] in (953, 4460)] + added[:: max(1, len(added) // 8)]
    for port, transport, name, registered in sample:
        events = timeline(port, transport)["registry_timeline"][transport]
        adds = [e for e in events if e["kind"] == "added" and e["record"]["service"] == name]
        assert len(adds) == 1, (port, events)
        event = adds[0]
        assert (event["after_release"], event["by_release"]) == ("2017-03-10", "2024-03-18")
        if registered and "2017-03-10" < registered <= "2024-03-18":
            assert (event["date"], event["date_basis"]) == (registered, "registered")
        assert not [e for e in events if e["kind"] == "present" and e["record"]["service"] == name]


def test_ntske_registration_date(timeline):
    events = timeline(4460, "tcp")["registry_timeline"]["tcp"]
    assert [(e["kind"], e["date"], e["record"]["service"]) for e in events] == [
        ("added", "2020-04-07", "ntske")]


def test_rename_between_2024_and_today(timeline):
    # independent: 1980/tcp was pearldoc-xact in 2024 and is panquest-xact today
    assert [n for n, _ in _named(OLD_2024, 1980, "tcp")] == ["pearldoc-xact"]
    assert [n for n, _ in _named(IANA_XML, 1980, "tcp")] == ["panquest-xact"]
    events = timeline(1980, "tcp")["registry_timeline"]["tcp"]
    renamed = [e for e in events if e["kind"] == "changed"
               and any(c["field"] == "service" for c in e["changes"])]
    assert len(renamed) == 1
    change = next(c for c in renamed[0]["changes"] if c["field"] == "service")
    assert (change["old"], change["new"]) == ("pearldoc-xact", "panquest-xact")
    # dated to within days: the last release with the old name and the first with the new
    lo, hi = 1, len(ALL_FILES) - 1  # ALL_FILES[1] (2024) has the old name, the last the new
    while hi - lo > 1:  # bisect on the files, parsed with ElementTree
        mid = (lo + hi) // 2
        if [n for n, _ in _named(ALL_FILES[mid], 1980, "tcp")] == ["panquest-xact"]:
            hi = mid
        else:
            lo = mid
    first_new = hi
    assert [n for n, _ in _named(ALL_FILES[first_new - 1], 1980, "tcp")] == ["pearldoc-xact"]
    assert (renamed[0]["after_release"], renamed[0]["by_release"]) == \
        (_updated(ALL_FILES[first_new - 1]), _updated(ALL_FILES[first_new]))


def test_note_dates_before_the_oldest_release(timeline):
    # "This entry is being removed on 2013-05-24." is older than every imported release
    events = timeline(51)["registry_timeline"]["tcp"]
    assert events[0]["date"] == "2013-05-24" and events[0]["date_basis"] == "note"
    assert events[0]["kind"] in ("reserved", "deassigned")


def test_unchanged_port_has_only_present_events(timeline):
    events = timeline(9200)["registry_timeline"]
    assert set(events) == {"tcp", "udp"}
    assert all(e["kind"] == "present" and e["record"]["service"] == "wap-wsp"
               for es in events.values() for e in es)


def test_dynamic_port_without_records(timeline):
    data = timeline(61000)
    assert data["registry_timeline"] == {}


def test_note_date_parsing():
    from portatlas.history.timeline import note_date

    assert note_date("De-assigned on 2025-02-13, previously compressnet by X") == "2025-02-13"
    assert note_date("This entry has been removed on 2017-05-18.") == "2017-05-18"
    assert note_date("De-Assigned on 2019-10-30") == "2019-10-30"
    assert note_date("Removed 2004-2-6)") == "2004-02-06"
    assert note_date("Defined TXT keys: None") is None
    assert note_date("removed on 2017-13-40") is None


# CLI ------------------------------------------------------------------------------------------
def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


def test_history_cli_text(cli):
    result = cli("history", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2025-02-13 (record's note)" in out
    assert "compressnet" in out and "de-assigned" in out
    assert "Releases imported" in out and "2017-03-10" in out


def test_history_cli_json_matches_schema(cli):
    import jsonschema

    for args in (("history", "57", "--json"), ("history", "2/udp", "--json"),
                 ("history", "9200", "-t", "tcp", "--json"), ("history", "465", "--json")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        jsonschema.validate(data, _schema("history.schema.json"))
    assert data["port"] == 465
    assert {n["title"] for n in data["curated_history"]}


def test_history_cli_57_shows_mtp_with_sources(cli):
    data = json.loads(cli("history", "57", "--json").stdout)
    mtp = data["curated_history"][0]
    assert "Mail Transfer Protocol" in mtp["text"]
    labels = {s["label"] for s in mtp["sources"]}
    assert {"RFC 772", "RFC 780", "RFC 788", "RFC 821"} <= labels
    assert data["registry_timeline"]["tcp"][0]["record"]["description"] == "any private terminal access"


def test_history_cli_not_found_exit_1(cli):
    result = cli("history", "61000")
    assert result.returncode == 1
    assert "No record for this port" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("history",), "give a port"),
    (("history", "abc"), "service name"),
    (("history", "70000"), "out of range"),
    (("history", "6000-6010"), "a range"),
    (("history", "57/xyz"), "unknown transport"),
    (("history", "57", "--bogus"), "unrecognized arguments"),
])
def test_history_cli_bad_input_one_line(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("portatlas: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_port_answer_has_labelled_history_section(cli):
    import jsonschema

    data = json.loads(cli("57", "--json", "--no-local").stdout)
    history = data["history"]
    assert set(history["labels"]) == {"registry_timeline", "curated_history", "de_facto_uses"}
    assert "not the registry" in history["labels"]["curated_history"]
    section_schema = _schema("history.schema.json")
    jsonschema.validate(dict(history, schema="portatlas.history/1", port=57, transport=None),
                        section_schema)
    text = cli("9200", "--no-local").stdout
    assert "In practice" in text and "Elasticsearch" in text
    assert "unchanged in all 42 releases" in text
    assert "history" not in json.loads(cli("57", "--json", "--no-local", "--no-history").stdout)


def test_port_answer_transport_filter(cli):
    data = json.loads(cli("9200/udp", "--json", "--no-local").stdout)
    history = data["history"]
    assert set(history["registry_timeline"]) == {"udp"}
    assert history["de_facto_uses"] == []  # the Elasticsearch note is about TCP
