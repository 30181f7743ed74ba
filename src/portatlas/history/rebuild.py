"""`portatlas data history`: import every release found into an existing database's timeline.

The registry itself is left as it is (no download, no re-import): the database is copied
with SQLite's backup API, the history tables of the copy are rewritten with the current
release (read back from the database) plus every older release found (those already in the
database are reused, the others parsed incrementally), and the copy is renamed over the
original — so readers see the old database or the new one, never a mixture, exactly as for
`portatlas data update`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from portatlas.errors import DataError, SystemFailure
from portatlas.kb.store import open_database
from portatlas.history import contributor, releases as rel, store


def rebuild(db: str) -> dict:
    """Rewrite the history of the database at `db`; returns the data-history/1 result."""

    started = time.monotonic()
    path = Path(db)
    if not path.is_file():
        raise DataError(f"no database at {db}; run 'portatlas data update' first")

    code = rel.code_fingerprint()
    check = open_database(path)  # one clear error for anything that is not a whole database
    try:
        main = _main_source(check, path)
    finally:
        check.close()
    cache = store.cached_releases(path, code)
    current = None
    if main is not None:
        current = next((r for r in cache.values() if r.current and r.sha256 == main["sha256"]),
                       None)
        if current is None:
            raise DataError(f"{db}: its current release is not stored with this version's "
                            "history format; run 'portatlas data update' instead")
    gathered = contributor.gather(current, cache)
    note_rows = contributor.note_rows()
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        source = open_database(path)  # the one checked way to open a registry database
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
            people = {row[0] for row in target.execute("SELECT id FROM people")}
            target.execute("DELETE FROM provenance WHERE kind='registry-release'")
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            target.executemany(
                "INSERT INTO provenance(kind, location, format, sha256, registry_date, records,"
                " imported_at) VALUES (?,?,?,?,?,?,?)",
                ((p["kind"], p["location"], p["format"], p["sha256"], p["registry_date"],
                  p["records"], now) for p in contributor.provenance_rows(gathered.releases)))
            store.write(target, gathered.releases, people, note_rows, code, found=gathered.found)
            target.commit()
            target.execute("VACUUM")
        finally:
            source.close()
            target.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{db}: cannot rewrite the history ({exc})") from None
    except OSError as exc:  # a read-only or vanished folder: the system's refusal, exit 4
        tmp.unlink(missing_ok=True)
        raise SystemFailure(f"{db}: cannot rewrite the history "
                            f"({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "schema": "portatlas.data-history/1",
        "database": str(path),
        "releases": [r.info() for r in gathered.releases],
        "found": gathered.found,
        "reused": gathered.reused,
        "parsed": gathered.parsed,
        "skipped": gathered.skipped,
        "records_parsed": gathered.records_parsed,
        "records_reused": gathered.records_reused,
        "seconds": round(time.monotonic() - started, 3),
    }


def _main_source(conn: sqlite3.Connection, path: Path) -> dict | None:
    """The database's registry source when it is IANA's XML or CSV (it then has a current
    release); None for an /etc/services database (its timeline has older releases only)."""
    try:
        row = conn.execute("SELECT kind, format, sha256 FROM provenance ORDER BY id"
                           " LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        raise DataError(f"{path}: not a portatlas database ({exc}); run 'portatlas data update'") \
            from None
    if not row:
        raise DataError(f"{path}: the database names no registry source; run 'portatlas data update'")
    kind, fmt, sha = row
    if kind == "iana-registry" and fmt in ("xml", "csv"):
        return {"sha256": sha}
    return None
