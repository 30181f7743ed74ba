"""Bad registry files never get in, and the database is never left half-built."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import IANA_CSV, IANA_XML
from portatlas.errors import DataError
from portatlas.kb.iana_csv import parse_registry_csv
from portatlas.kb.iana_xml import parse_registry_xml

GOOD_RECORD = (b'<record><name>x</name><protocol>tcp</protocol><description>X</description>'
               b'<number>7</number></record>')


def _xml(body: bytes, prolog: bytes = b"") -> io.BytesIO:
    return io.BytesIO(b"<?xml version='1.0'?>" + prolog +
                      b'<registry xmlns="http://www.iana.org/assignments">' + body + b"</registry>")


def test_well_formed_minimal_registry_parses():
    reg = parse_registry_xml(_xml(GOOD_RECORD))
    assert [(e.service, e.port_lo, e.transport) for e in reg.entries] == [("x", 7, "tcp")]


@pytest.mark.parametrize("prolog, body", [
    # billion laughs
    (b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
     b"<record><name>&d;</name><description>x</description><number>1</number></record>"),
    # external entity reading a local file
    (b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
     b"<record><name>&xxe;</name><description>x</description><number>1</number></record>"),
    # external DTD fetched over the network
    (b'<!DOCTYPE r SYSTEM "http://198.18.0.1/evil.dtd">', GOOD_RECORD),
    # parameter entities
    (b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', GOOD_RECORD),
])
def test_dtd_and_entities_are_refused(prolog, body):
    with pytest.raises(DataError, match="DOCTYPE|entit"):
        parse_registry_xml(_xml(body, prolog))


@pytest.mark.parametrize("body, message", [
    (GOOD_RECORD[:-12], "well-formed"),                       # truncated
    (b"", "no registry records"),
    (GOOD_RECORD.replace(b">7<", b">70000<"), "out of range"),
    (GOOD_RECORD.replace(b">7<", b">seven<"), "bad port"),
    (GOOD_RECORD.replace(b">tcp<", b">xyz<"), "unknown transport"),
    (b"<record><description>nothing</description></record>", "neither"),
])
def test_malformed_xml_is_refused(body, message):
    stream = _xml(body) if body != GOOD_RECORD[:-12] else io.BytesIO(
        b'<registry xmlns="http://www.iana.org/assignments">' + body)
    with pytest.raises(DataError, match=message):
        parse_registry_xml(stream)


def test_truncated_real_xml_is_refused():
    data = IANA_XML.read_bytes()
    with pytest.raises(DataError, match="well-formed"):
        parse_registry_xml(io.BytesIO(data[: len(data) // 2]))


CSV_HEADER = IANA_CSV.read_bytes().split(b"\n", 1)[0] + b"\n" if IANA_CSV.exists() else b""


@pytest.mark.parametrize("rows, message", [
    (b"x,7,tcp,X,,,,,,,\n", "expected 12 fields"),
    (b"x,7,tcp,X,,,,,,,,,\n", "expected 12 fields"),
    (b"x,99999,tcp,X,,,,,,,,\n", "out of range"),
    (b"x,7-3,tcp,X,,,,,,,,\n", "out of range"),
    (b"x,7,bogus,X,,,,,,,,\n", "unknown transport"),
    (b'x,7,tcp,"unterminated\n', "broken CSV|expected 12"),
    (b"", "no registry rows"),
])
def test_broken_csv_rows_are_refused(rows, message):
    with pytest.raises(DataError, match=message):
        parse_registry_csv(io.BytesIO(CSV_HEADER + rows))


def test_csv_with_wrong_header_is_refused():
    with pytest.raises(DataError, match="header"):
        parse_registry_csv(io.BytesIO(b"a,b,c\n1,2,3\n"))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _update(db, source, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portatlas", "data", "update", "--from", str(source),
                           "--db", str(db)], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture()
def built_db(tmp_path, shared_data):
    db = tmp_path / "kb.sqlite3"
    result = _update(db, IANA_XML)
    assert result.returncode == 0, result.stderr
    return db


@pytest.mark.parametrize("content", [
    b"<registry",                                   # truncated XML
    b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><registry/>',
    b"Service Name,Port Number\n1,2\n",             # CSV with the wrong header
    b"\x00\x01\x02garbage",                          # binary junk (read as a services file)
])
def test_bad_update_leaves_database_untouched(built_db, tmp_path, content):
    before = _sha(built_db)
    bad = tmp_path / "bad-source"
    bad.write_bytes(content)
    result = _update(built_db, bad)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("portatlas: error:")
    assert "Traceback" not in result.stderr
    assert _sha(built_db) == before
    assert not list(tmp_path.glob("kb.sqlite3.tmp-*"))


def test_missing_source_is_one_line(built_db, tmp_path):
    result = _update(built_db, tmp_path / "nope.xml")
    assert result.returncode == 3 and "no such file" in result.stderr
    result = _update(built_db, tmp_path)
    assert result.returncode == 3 and "directory" in result.stderr


def _consistent(db) -> int:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        (prov,) = conn.execute("SELECT records FROM provenance WHERE kind='iana-registry'").fetchall()
        assert prov[0] == entries
        return entries
    finally:
        conn.close()


def test_concurrent_updates_leave_one_consistent_database(tmp_path, shared_data):
    db = tmp_path / "kb.sqlite3"
    procs = [subprocess.Popen([sys.executable, "-m", "portatlas", "data", "update", "--from", str(src),
                               "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for src in (IANA_XML, IANA_CSV, IANA_XML, IANA_CSV)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    entries = _consistent(db)
    assert entries in (14533, 14474) or entries > 14000
    assert not list(tmp_path.glob("kb.sqlite3.tmp-*"))


def test_killed_import_leaves_old_database(built_db, tmp_path):
    """SIGKILL the import while it writes its new database: the old one stays, whole."""
    before = _sha(built_db)
    killed_while_writing = False
    for _attempt in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "portatlas", "data", "update", "--from",
                                 str(IANA_XML), "--db", str(built_db)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if list(tmp_path.glob("kb.sqlite3.tmp-*")):
                proc.send_signal(signal.SIGKILL)
                killed_while_writing = True
                break
            time.sleep(0.001)
        proc.wait(timeout=30)
        if killed_while_writing:
            break
        before = _sha(built_db)  # it finished before we caught it; try again
    assert killed_while_writing, "could not catch the import while it was writing"
    assert _sha(built_db) == before
    _consistent(built_db)
    # the next import cleans up the dead one's temporary file
    assert _update(built_db, IANA_XML).returncode == 0
    assert not list(tmp_path.glob("kb.sqlite3.tmp-*"))


def test_first_query_builds_database_and_says_from_where(tmp_path, shared_data):
    db = tmp_path / "new" / "kb.sqlite3"
    env = dict(os.environ, PORTATLAS_DB=str(db), NO_COLOR="1")
    result = subprocess.run([sys.executable, "-m", "portatlas", "57", "--no-local"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "building" in result.stderr and "service-names-port-numbers.xml" in result.stderr
    assert db.exists()


def test_fallback_to_etc_services_is_labelled(tmp_path):
    db = tmp_path / "kb.sqlite3"
    env = dict(os.environ, PORTATLAS_DB=str(db), PORTATLAS_REGISTRY="/etc/services", NO_COLOR="1")
    result = subprocess.run([sys.executable, "-m", "portatlas", "22/tcp", "--no-local"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "fallback" in result.stdout and "/etc/services" in result.stdout


def test_update_without_from_uses_portatlas_registry(tmp_path, shared_data):
    db = tmp_path / "kb.sqlite3"
    env = dict(os.environ, PORTATLAS_REGISTRY=str(IANA_CSV))
    result = subprocess.run([sys.executable, "-m", "portatlas", "data", "update", "--db", str(db),
                             "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    (registry,) = [s for s in json.loads(result.stdout)["sources"] if s["kind"] == "iana-registry"]
    assert registry["format"] == "csv" and registry["records"] == 14474
