"""The history tables, in the same SQLite database as the registry.

    history_release  one row per release, oldest first (idx 0, 1, ...)
    history_record   one row per distinct *version* of a record, with a bitmask of the releases
                     it appears in: a record unchanged across every release is stored once, so
                     the table holds the current registry plus only what differed earlier
    history_people   people named by older releases and no longer in the current people table
    history_note     our curated notes, one row per note, read per port (no JSON on that path)

Reading a port's history is two indexed queries; reconstructing a whole release (for
`data diff`) is one scan of history_record.
"""

from __future__ import annotations

import sqlite3
TYPE_CHECKING = False  # typing is not imported on the lookup path

from portatlas.history import compare
from portatlas.model import Reference

if TYPE_CHECKING:  # releases.py imports hashlib; a port lookup never needs it
    from pathlib import Path

    from portatlas.history.releases import Release

FORMAT = "1"  # bump when the tables below change meaning
TABLES = ("history_release", "history_record", "history_people", "history_note",
          "history_note_fts")

SCHEMA = """
CREATE TABLE history_release(
    idx INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, date TEXT, date_basis TEXT,
    location TEXT, format TEXT, sha256 TEXT, records INTEGER, current INTEGER, code TEXT);
CREATE TABLE history_record(
    id INTEGER PRIMARY KEY, releases INTEGER NOT NULL,
    service TEXT, port_lo INTEGER, port_hi INTEGER, transport TEXT, description TEXT,
    status TEXT, assignee TEXT, contact TEXT, registered TEXT, modified TEXT, refs TEXT,
    notes TEXT, unauthorized TEXT, service_code TEXT);
CREATE INDEX history_record_port ON history_record(port_lo) WHERE port_lo = port_hi;
CREATE INDEX history_record_range ON history_record(port_lo, port_hi) WHERE port_lo < port_hi;
CREATE TABLE history_people(id TEXT PRIMARY KEY, name TEXT, org TEXT);
CREATE TABLE history_note(
    id INTEGER PRIMARY KEY, port INTEGER NOT NULL, kind TEXT NOT NULL, transports TEXT,
    category TEXT, title TEXT, text TEXT, sources TEXT, related TEXT);
CREATE INDEX history_note_port ON history_note(port);
"""

_RECORD_COLUMNS = ("service, port_lo, port_hi, transport, description, status, assignee, contact,"
                   " registered, modified, refs, notes, unauthorized, service_code")


def write(conn: sqlite3.Connection, releases: list[Release], current_people: set[str],
          note_rows: list[tuple], code: str, found: int | None = None) -> None:
    """Create and fill the history tables (inside the atomic database build, or of a copy
    of the database for `portatlas data history`). `found`: older release files found,
    imported or not (so that answers can say when some were left out)."""
    for table in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO history_release VALUES (?,?,?,?,?,?,?,?,?,?)",
        ((i, r.label, r.date, r.date_basis, r.location, r.format, r.sha256, len(r.records),
          int(r.current), code) for i, r in enumerate(releases)))
    # Releases parsed in one series share their unchanged record objects, so collect by
    # identity first (cheap) and merge equal records by value only once per distinct object.
    by_object: dict[int, list] = {}
    for i, release in enumerate(releases):
        bit = 1 << i
        for record in release.records:
            slot = by_object.get(id(record))
            if slot is None:
                by_object[id(record)] = [record, bit]
            else:
                slot[1] |= bit
    versions: dict[tuple, int] = {}
    for record, mask in by_object.values():
        versions[record] = versions.get(record, 0) | mask
    conn.executemany(
        f"INSERT INTO history_record(releases, {_RECORD_COLUMNS}) VALUES ({','.join('?' * 15)})",
        ((mask,) + record for record, mask in versions.items()))
    people: dict[str, tuple] = {}
    for release in releases:  # newest wins
        for pid, (name, org) in release.people.items():
            if pid not in current_people:
                people[pid] = (name, org)
    conn.executemany("INSERT INTO history_people VALUES (?,?,?)",
                     ((pid, name, org) for pid, (name, org) in people.items()))
    conn.executemany(
        "INSERT INTO history_note(port, kind, transports, category, title, text, sources, related)"
        " VALUES (?,?,?,?,?,?,?,?)", note_rows)
    # lazy: the search index is written at build time; lookups never load history.search
    from portatlas.history.search import index_rows

    index_rows(conn)
    older = sum(1 for r in releases if not r.current)
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)",
                     (("history_format", FORMAT), ("history_releases", str(len(releases))),
                      ("history_older_found", str(max(found or 0, older)))))


def cached_releases(db: Path, code: str) -> dict[str, Release]:
    """Releases stored in an existing database, by sha256, if built by the same importer code.

    Anything unexpected (no file, another format, a damaged file) just means no cache.
    """
    # lazy: releases (and its kb parsers) only when a (re)build checks its cache
    from portatlas.history.releases import Release

    if not db.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        fmt = conn.execute("SELECT value FROM meta WHERE key='history_format'").fetchone()
        if not fmt or fmt[0] != FORMAT:
            return {}
        rows = conn.execute(
            "SELECT idx, label, date, date_basis, location, format, sha256, current, code"
            " FROM history_release ORDER BY idx").fetchall()
        usable = [r for r in rows if r[8] == code]
        if not usable:
            return {}
        wanted = 0
        for r in usable:
            wanted |= 1 << r[0]
        by_idx: dict[int, list[tuple]] = {r[0]: [] for r in usable}
        for row in conn.execute(f"SELECT releases, {_RECORD_COLUMNS} FROM history_record"
                                " WHERE releases & ?", (wanted,)):
            mask, record = row[0], row[1:]
            for idx in by_idx:
                if mask >> idx & 1:
                    by_idx[idx].append(record)
        people = dict(((pid, (name, org)) for pid, name, org in conn.execute(
            "SELECT id, name, org FROM people UNION ALL SELECT id, name, org FROM history_people")))
        out = {}
        for idx, label, date, basis, location, fmt_, sha, current, _code in usable:
            out[sha] = Release(label, date, basis, location, fmt_, sha, by_idx[idx], people,
                               bool(current))
        return out
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


class HistoryReader:
    """Read access to the history tables of an open database connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._releases: list[dict] | None = None
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='history_format'").fetchone()
        except sqlite3.Error:
            row = None
        self.available = bool(row) and row[0] == FORMAT

    def releases(self) -> list[dict]:
        if self._releases is None:
            if not self.available:
                self._releases = []
            else:
                cur = self.conn.execute(
                    "SELECT idx, label, date, date_basis, location, format, sha256, records,"
                    " current FROM history_release ORDER BY idx")
                names = [d[0] for d in cur.description]
                self._releases = [dict(zip(names, row)) for row in cur.fetchall()]
                for release in self._releases:
                    release["current"] = bool(release["current"])
        return self._releases

    def older_not_imported(self) -> int:
        """Older release files that were found at build time but not imported (quick build)."""
        if not self.available:
            return 0
        try:
            row = self.conn.execute(
                "SELECT value FROM meta WHERE key='history_older_found'").fetchone()
        except sqlite3.Error:
            return 0
        older = sum(1 for r in self.releases() if not r["current"])
        return max(0, int(row[0]) - older) if row and row[0].isdigit() else 0

    def records_covering(self, port: int) -> list[tuple[int, tuple]]:
        """(release bitmask, record) for every record version whose ports include `port`."""
        if not self.available:
            return []
        rows = self.conn.execute(
            f"SELECT releases, {_RECORD_COLUMNS} FROM history_record WHERE port_lo=?1 AND port_hi=?1"
            f" UNION ALL SELECT releases, {_RECORD_COLUMNS} FROM history_record"
            " WHERE port_lo < port_hi AND port_lo <= ?1 AND port_hi >= ?1", (port,)).fetchall()
        return [(row[0], row[1:]) for row in rows]

    def release_records(self, idx: int) -> list[tuple]:
        rows = self.conn.execute(f"SELECT {_RECORD_COLUMNS} FROM history_record WHERE releases & ?",
                                 (1 << idx,)).fetchall()
        return rows

    def people(self, ids: set[str]) -> dict[str, tuple[str | None, str | None]]:
        """Names of people by id, from the current people table, else older releases."""
        ids = {i for i in ids if i}
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        args = tuple(ids)
        out: dict[str, tuple[str | None, str | None]] = {}
        tables = ("history_people", "people") if self.available else ("people",)
        for table in tables:  # current people last so they win
            try:
                for pid, name, org in self.conn.execute(
                        f"SELECT id, name, org FROM {table} WHERE id IN ({marks})", args):
                    out[pid] = (name, org)
            except sqlite3.Error:
                continue
        return out

    def notes(self, port: int) -> list[tuple] | None:
        """Note rows for a port; None when this database holds no notes table."""
        if not self.available:
            return None
        return self.conn.execute(
            "SELECT kind, transports, category, title, text, sources, related FROM history_note"
            " WHERE port=? ORDER BY id", (port,)).fetchall()


def record_dict(record: tuple, people: dict[str, tuple[str | None, str | None]]) -> dict:
    """A history record as JSON: the registry's own words, as that release had them."""

    refs = []
    for kind, value, section in compare.decode_refs(record[compare.REFS]):
        if kind == "person":
            continue
        ref = Reference(kind, value, section)
        refs.append({"kind": kind, "value": value, "section": section, "label": ref.label,
                     "url": ref.url})
    assignee = record[compare.ASSIGNEE]
    return {
        "service": record[compare.SERVICE],
        "ports": compare.ports_label(record),
        "transport": record[compare.TRANSPORT],
        "description": record[compare.DESCRIPTION],
        "status": record[compare.STATUS],
        "assignee": _person(assignee, people),
        "registered": record[compare.REGISTERED],
        "modified": record[compare.MODIFIED],
        "references": refs,
        "notes": record[compare.NOTES],
    }


def _person(pid: str | None, people: dict) -> dict | None:
    if not pid:
        return None
    name, org = people.get(pid, (None, None))
    label = name or org or pid.replace("_", " ")
    if name and org:
        label = f"{name} ({org})"
    return {"id": pid, "name": label}
