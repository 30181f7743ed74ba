"""The SQLite knowledge base: one file, built atomically, read by everything else.

Building writes a fresh database next to the target under a temporary name and renames it
into place only after it is complete, so a failed, killed or concurrent import leaves a
whole database (the old one or the new one) and never a half-written one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

from portatlas.errors import DataError, SystemFailure, UsageError
from portatlas.model import Entry, Person, Reference
from portatlas.io_limits import require_regular_file

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE provenance(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, location TEXT NOT NULL, format TEXT,
    sha256 TEXT, registry_date TEXT, records INTEGER, imported_at TEXT);
CREATE TABLE people(id TEXT PRIMARY KEY, name TEXT, org TEXT, email TEXT, uri TEXT);
CREATE TABLE entries(
    id INTEGER PRIMARY KEY, service TEXT, service_lc TEXT, port_lo INTEGER, port_hi INTEGER,
    transport TEXT, description TEXT, status TEXT, assignee TEXT, contact TEXT,
    registered TEXT, modified TEXT, refs TEXT, service_code TEXT, unauthorized TEXT,
    notes TEXT, alias_of TEXT, previously TEXT, source TEXT);
CREATE INDEX entries_port ON entries(port_lo) WHERE port_lo = port_hi;
CREATE INDEX entries_range ON entries(port_lo, port_hi) WHERE port_lo < port_hi;
CREATE INDEX entries_service ON entries(service_lc);
CREATE INDEX entries_alias ON entries(alias_of);
CREATE VIRTUAL TABLE entries_fts USING fts5(
    service, description, notes, people, content='', tokenize='unicode61 remove_diacritics 2');
CREATE TABLE trojans(port INTEGER, transport TEXT, names TEXT, PRIMARY KEY(port, transport));
CREATE TABLE nmap(port INTEGER, transport TEXT, service TEXT, frequency REAL,
    PRIMARY KEY(port, transport));
"""

# Separators for the compact reference encoding (kept out of JSON so that reading an entry
# on the CLI's start-up path does not need the json module).
_RS, _US = "\x1e", "\x1f"


def encode_refs(refs: Sequence[Reference]) -> str:
    return _RS.join(f"{r.kind}{_US}{r.value}{_US}{r.section or ''}" for r in refs)


def decode_refs(text: str | None) -> tuple[Reference, ...]:
    if not text:
        return ()
    out = []
    for item in text.split(_RS):
        kind, value, section = item.split(_US)
        out.append(Reference(kind, value, section or None))
    return tuple(out)


class BuildInput:
    """Everything that goes into one database build."""

    def __init__(self, entries: list[Entry], people: dict[str, Person],
                 provenance: list[dict], trojans: Iterable[tuple[str, int, list[str]]] = (),
                 nmap: Iterable[tuple[int, str, str, float]] = ()) -> None:
        self.entries = entries
        self.people = people
        self.provenance = provenance
        self.trojans = trojans
        self.nmap = nmap
        # extra builders: callables taking the open connection (e.g. registry history)
        self.extras: list = []


def _clean_stale_temps(target: Path) -> None:
    """Remove temporary files of imports whose process is gone (killed mid-import)."""
    for tmp in target.parent.glob(target.name + ".tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue


def write_database(target: str | Path, data: BuildInput) -> None:
    """Build the database beside `target` and atomically rename it into place."""
    # lazy: pathlib (~2 ms) only to write a database; lookups use plain str paths
    from pathlib import Path


    target = Path(target)
    # never rename a new file over a device, a FIFO or a directory someone named as --db
    require_regular_file(str(target), what="a database file; give another --db",
                         error=UsageError)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemFailure(f"cannot create the database folder {target.parent}: "
                            f"{exc.strerror or exc}") from None
    _clean_stale_temps(target)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        _write(tmp, target, data)
    except (OSError, sqlite3.OperationalError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SystemFailure(f"cannot write the database {target}: {reason}") from None


def _write(tmp: Path, target: Path, data: BuildInput) -> None:
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.executescript(SCHEMA)
            _fill(conn, data)
            for extra in data.extras:
                extra(conn)
            conn.commit()
            conn.execute("PRAGMA optimize")
            conn.commit()
        finally:
            conn.close()
        # make the bytes durable before they become the database others read
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fill(conn: sqlite3.Connection, data: BuildInput) -> None:
    conn.executemany(
        "INSERT INTO people VALUES (?,?,?,?,?)",
        ((p.id, p.name, p.org, p.email, p.uri) for p in data.people.values()))
    rows = []
    fts = []
    for rowid, e in enumerate(data.entries, 1):
        rows.append((rowid, e.service, (e.service or "").lower() or None, e.port_lo, e.port_hi,
                     e.transport, e.description, e.status,
                     e.assignee.id if e.assignee else None, e.contact.id if e.contact else None,
                     e.registered, e.modified, encode_refs(e.references), e.service_code,
                     e.unauthorized, e.notes, e.alias_of, e.previously, e.source))
        people_text = " ".join(p.display for p in (e.assignee, e.contact) if p)
        fts.append((rowid, e.service or "", e.description or "", e.notes or "", people_text))
    conn.executemany(f"INSERT INTO entries VALUES ({','.join('?' * 19)})", rows)
    conn.executemany(
        "INSERT INTO entries_fts(rowid, service, description, notes, people) VALUES (?,?,?,?,?)", fts)
    conn.executemany("INSERT OR REPLACE INTO trojans VALUES (?,?,?)",
                     ((port, t, _US.join(names)) for t, port, names in data.trojans))
    conn.executemany("INSERT OR REPLACE INTO nmap VALUES (?,?,?,?)",
                     ((port, t, name, freq) for port, t, name, freq in data.nmap))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for prov in data.provenance:
        conn.execute(
            "INSERT INTO provenance(kind, location, format, sha256, registry_date, records,"
            " imported_at) VALUES (?,?,?,?,?,?,?)",
            (prov["kind"], prov["location"], prov.get("format"), prov.get("sha256"),
             prov.get("registry_date"), prov.get("records"), now))
    conn.executemany("INSERT INTO meta VALUES (?,?)",
                     (("schema_version", SCHEMA_VERSION), ("built_at", now)))


ENTRY_COLUMNS = ("service, port_lo, port_hi, transport, description, status, assignee, contact,"
                 " registered, modified, refs, service_code, unauthorized, notes, alias_of,"
                 " previously, source")


_PREFIXED_COLUMNS = ", ".join("e." + c.strip() for c in ENTRY_COLUMNS.split(","))


# Tables every portatlas database has, and those a database with history has as well
# (meta says so with history_format): a file that claims the schema but lacks one of them is
# damaged or was made by something else, and is refused when opened, not mid-query.
REQUIRED_TABLES = frozenset({"meta", "provenance", "people", "entries", "entries_fts",
                             "trojans", "nmap"})
HISTORY_TABLES = frozenset({"history_release", "history_record", "history_people",
                            "history_note"})
_REBUILD = "run 'portatlas data update' to rebuild it"


def _uri(path: str) -> str:
    # the path goes into a URI: characters with a meaning there are percent-encoded
    quoted = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{quoted}?mode=ro"


def open_database(path: str | Path) -> sqlite3.Connection:
    """The one way to open a registry database for reading: refuses what is not a file
    (a FIFO would block the open, a device is not a database), then checks the schema
    version and that every table is there, and says what to do when anything is wrong."""

    name = os.fspath(path)
    require_regular_file(name, what=f"a portatlas database; {_REBUILD} or give another --db")
    try:
        # immutable=1 would be faster but unsafe while another process replaces the file;
        # mode=ro keeps readers from ever writing.
        conn = sqlite3.connect(_uri(name), uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DataError(f"{name}: cannot open the database ({exc}); {_REBUILD}") from None
    try:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) \
            if "meta" in tables else {}
    except sqlite3.Error as exc:
        conn.close()
        raise DataError(f"{name}: not a portatlas database ({exc}); {_REBUILD}") from None
    version = meta.get("schema_version")
    problem = None
    if version is None:
        problem = "not a portatlas database (no schema version)"
    elif version != SCHEMA_VERSION:
        problem = f"database schema {version} is not {SCHEMA_VERSION}"
    else:
        wanted = REQUIRED_TABLES | (HISTORY_TABLES if "history_format" in meta else frozenset())
        missing = sorted(wanted - tables)
        if missing:
            problem = (f"damaged database: it claims schema {version} but has no "
                       f"{', '.join(missing)} table{'s' if len(missing) > 1 else ''}")
    if problem:
        conn.close()
        raise DataError(f"{name}: {problem}; {_REBUILD}")
    return conn


class Store:
    """Read access to a built database."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.conn = open_database(path)
        self._people: dict[str, Person] = {}

    def close(self) -> None:
        self.conn.close()

    def person(self, pid: str | None) -> Person | None:
        if not pid:
            return None
        person = self._people.get(pid)
        if person is None:
            row = self.conn.execute("SELECT id, name, org, email, uri FROM people WHERE id=?",
                                    (pid,)).fetchone()
            person = Person(*row) if row else Person(pid)
            self._people[pid] = person
        return person

    def _entry(self, row: tuple) -> Entry:
        (service, lo, hi, transport, description, status, assignee, contact, registered,
         modified, refs, service_code, unauthorized, notes, alias_of, previously, source) = row
        return Entry(service, lo, hi, transport, description or "",
                     assignee=self.person(assignee), contact=self.person(contact),
                     registered=registered, modified=modified, references=decode_refs(refs),
                     service_code=service_code, unauthorized=unauthorized, notes=notes,
                     status=status, alias_of=alias_of, previously=previously, source=source)

    def entries_for_port(self, port: int) -> list[Entry]:
        rows = self.conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM entries WHERE port_lo=?1 AND port_hi=?1 "
            f"UNION ALL SELECT {ENTRY_COLUMNS} FROM entries "
            "WHERE port_lo < port_hi AND port_lo <= ?1 AND port_hi >= ?1", (port,)).fetchall()
        return [self._entry(r) for r in rows]

    def entries_overlapping(self, lo: int, hi: int) -> list[Entry]:
        rows = self.conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM entries WHERE port_lo <= ? AND port_hi >= ? "
            "ORDER BY port_lo, port_hi, id", (hi, lo)).fetchall()
        return [self._entry(r) for r in rows]

    def entries_for_service(self, name: str) -> list[Entry]:
        lower = name.lower()
        rows = self.conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM entries WHERE service_lc=? OR lower(alias_of)=? "
            "ORDER BY port_lo IS NULL, port_lo, id", (lower, lower)).fetchall()
        return [self._entry(r) for r in rows]

    def all_entries(self) -> list[Entry]:
        rows = self.conn.execute(f"SELECT {ENTRY_COLUMNS} FROM entries ORDER BY id").fetchall()
        return [self._entry(r) for r in rows]

    def search(self, match: str, limit: int) -> list[tuple[Entry, float]]:
        try:
            rows = self.conn.execute(
                f"SELECT {_PREFIXED_COLUMNS},"
                " bm25(entries_fts, 10.0, 4.0, 1.0, 1.0) AS rank"
                " FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid"
                " WHERE entries_fts MATCH ? ORDER BY rank LIMIT ?", (match, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            raise DataError(f"search failed: {exc}") from None
        return [(self._entry(r[:-1]), -r[-1]) for r in rows]

    def trojans(self, port: int) -> dict[str, list[str]]:
        rows = self.conn.execute("SELECT transport, names FROM trojans WHERE port=?", (port,))
        return {t: names.split(_US) for t, names in rows}

    def all_trojans(self) -> dict[tuple[int, str], list[str]]:
        rows = self.conn.execute("SELECT port, transport, names FROM trojans")
        return {(p, t): names.split(_US) for p, t, names in rows}

    def nmap(self, port: int) -> dict[str, tuple[str, float]]:
        rows = self.conn.execute("SELECT transport, service, frequency FROM nmap WHERE port=?", (port,))
        return {t: (s, f) for t, s, f in rows}

    def nmap_top(self, transport: str, count: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT port FROM nmap WHERE transport=? ORDER BY frequency DESC, port LIMIT ?",
            (transport, count))
        return [r[0] for r in rows]

    def provenance(self) -> list[dict]:
        cur = self.conn.execute(
            "SELECT kind, location, format, sha256, registry_date, records, imported_at "
            "FROM provenance ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
