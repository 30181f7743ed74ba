"""Issue 12, failures 3 and 8: the importers refuse what no registry contains (control
characters, non-ASCII digits, stray CSV quotes, NUL) and store an exact repeat once; XML
record errors name the file."""

from __future__ import annotations

import io
import json

import pytest

from portatlas.errors import DataError
from portatlas.kb.etc_services import parse_services_file
from portatlas.kb.iana_csv import HEADER, parse_registry_csv
from portatlas.kb.iana_xml import parse_registry_xml

RECORD = ('<record><name>{name}</name><protocol>tcp</protocol><description>{desc}</description>'
          '<number>{number}</number></record>')


def _xml(*records: str) -> io.BytesIO:
    body = "".join(records)
    return io.BytesIO(("<?xml version='1.0'?><registry xmlns=\"http://www.iana.org/assignments\">"
                       + body + "</registry>").encode())


def _csv(*rows: str) -> io.BytesIO:
    return io.BytesIO((",".join(HEADER) + "\r\n" + "".join(r + "\r\n" for r in rows)).encode())


def _row(name="x", number="57", desc="X"):
    return f"{name},{number},tcp,{desc},,,,,,,,"


@pytest.mark.parametrize("number", ["٥٧", "５７", "5٧", "57-٥٨", "²"])
def test_xml_non_ascii_digits_refused(number):
    with pytest.raises(DataError, match="bad port number"):
        parse_registry_xml(_xml(RECORD.format(name="x", desc="X", number=number)), label="r.xml")


def test_csv_and_services_non_ascii_digits_refused():
    with pytest.raises(DataError, match="bad port number"):
        parse_registry_csv(_csv(_row(number="٥٧")), label="r.csv")
    with pytest.raises(DataError, match="bad port"):
        parse_services_file(io.BytesIO("x ٥٧/tcp\n".encode()), label="services")


def test_xml_record_errors_name_the_file_and_line():
    good = RECORD.format(name="a", desc="A", number="1")
    bad = RECORD.format(name="b", desc="B", number="seven")
    with pytest.raises(DataError) as info:
        parse_registry_xml(_xml(good, "\n", bad), label="/data/reg.xml")
    message = str(info.value)
    assert message.startswith("/data/reg.xml line 2 (record 2): bad port number"), message


@pytest.mark.parametrize("cell", ["a\x1b]0;owned\x07b", "\x1b[2J", "a\x00b", "x\x9by", "\x7f"])
def test_csv_control_characters_refused(cell):
    with pytest.raises(DataError, match="control character") as info:
        parse_registry_csv(_csv(_row(), _row(name="y", desc=cell)), label="r.csv")
    assert "r.csv line 3" in str(info.value)


@pytest.mark.parametrize("line", ["x 57/tcp # a\x1b[2Jb", "x\x1b 57/tcp", "x 57/tcp\x00", "x 57/tcp # \x07"])
def test_services_control_characters_refused(line):
    with pytest.raises(DataError, match="control character"):
        parse_services_file(io.BytesIO((line + "\n").encode()), label="services")


def test_xml_c1_control_refused():
    # expat refuses C0 controls itself; C1 controls are legal XML and are refused by us
    with pytest.raises(DataError, match="control character"):
        parse_registry_xml(_xml(RECORD.format(name="x", desc="a\u009b2Jb", number="7")))


@pytest.mark.parametrize("row", [
    'x,57,tcp,a"b,,,,,,,,',        # a quote inside an unquoted field
    'x,57,tcp,"a"b",,,,,,,,',       # an unescaped quote inside a quoted field
    'x,57,tcp,ab",,,,,,,,',
])
def test_csv_stray_quote_refused(row):
    with pytest.raises(DataError, match="quote|broken CSV|expected"):
        parse_registry_csv(_csv(row), label="r.csv")


def test_csv_quoted_fields_still_fine():
    reg = parse_registry_csv(_csv('x,57,tcp,"say ""hi"", twice",,,,,,,,',
                                  'y,58,tcp,"two\r\nlines",,,,,,,,'), label="r.csv")
    assert [e.description for e in reg.entries] == ['say "hi", twice', "two\nlines"]


def test_tabs_in_services_are_separators_not_controls():
    reg = parse_services_file(io.BytesIO(b"ssh\t22/tcp\t\t# Secure Shell\n"), label="s")
    assert [(e.service, e.port_lo) for e in reg.entries] == [("ssh", 22)]


def test_exact_duplicates_stored_once():
    rec = RECORD.format(name="x", desc="X", number="57")
    other = RECORD.format(name="x", desc="Y", number="57")
    assert len(parse_registry_xml(_xml(rec, rec, other)).entries) == 2
    assert len(parse_registry_csv(_csv(_row(), _row(), _row(desc="Y"))).entries) == 2
    assert len(parse_services_file(io.BytesIO(b"x 57/tcp\nx 57/tcp\nx 57/udp\n")).entries) == 2


def test_duplicate_listed_once_by_port_json(tmp_path, cli):
    src = tmp_path / "dup.csv"
    src.write_bytes(_csv(_row(), _row(), _row(name="y", number="58")).getvalue())
    db = tmp_path / "dup.sqlite3"
    built = cli("data", "update", "--from", str(src), "--db", str(db))
    assert built.returncode == 0, built.stderr
    out = cli("57", "--json", "--no-local", "--db", str(db))
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)["entries"]["tcp"]
    assert len(entries) == 1


def test_real_registry_files_still_import():
    from conftest import IANA_CSV, IANA_XML

    assert len(parse_registry_xml(IANA_XML.open("rb")).entries) > 10000
    assert len(parse_registry_csv(IANA_CSV.open("rb")).entries) > 10000
