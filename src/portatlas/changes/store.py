"""Snapshots in a SQLite file of their own (`portatlas.snapshots.sqlite3` beside the database).

Why not inside the registry database: `portatlas data update` replaces that file whole
(atomically), which would throw the snapshots away. This file is only ever appended to, in one
transaction per snapshot, so a killed or concurrent save leaves every earlier snapshot intact.

A snapshot identical to the previous one of the same kind and name is stored as a row that
points at it (`same_as`), so a timer that saves every few minutes costs a row, not a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portatlas.changes.diff import Change, Interval, diff, scan_coverage
from portatlas.changes.items import Item
from portatlas.errors import DataError, NotFound
from portatlas import paths
from portatlas.stamps import utc_iso

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0
KINDS = ("local", "scan")


def snapshot_path(db: str | os.PathLike[str] | None = None) -> Path:
    """$PORTATLAS_SNAPSHOTS, else beside the database: <db stem>.snapshots.sqlite3."""
    env = os.environ.get("PORTATLAS_SNAPSHOTS")
    if env:
        return Path(env)

    db_file = Path(paths.db_path(db))
    return db_file.with_name(db_file.stem + ".snapshots.sqlite3")


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    kind: str
    name: str
    taken_at: float
    count: int
    same_as: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name,
                "time": utc_iso(self.taken_at), "items": self.count}


@dataclass(frozen=True)
class Saved:
    snapshot: SnapshotInfo
    previous: SnapshotInfo | None
    changes: list[Change]


class SnapshotStore:
    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise DataError(f"snapshot database {self.path} is not a regular file")
        if not create and not self.path.is_file():
            raise NotFound(f"no snapshots yet ({self.path} does not exist): save one with "
                           "'portatlas local --save' or 'portatlas scan ... --save NAME'")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT_S * 1000))
            if create:
                self.conn.execute("PRAGMA journal_mode = WAL")
            self._check_schema(create)
        except sqlite3.Error as exc:
            raise DataError(f"snapshot database {self.path}: {exc}") from None
        except OSError as exc:
            raise DataError(f"snapshot database {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "SnapshotStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------
    def _check_schema(self, create: bool) -> None:
        tables = {r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if {"snapshots", "items", "meta"} <= tables:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None or row[0] != str(SCHEMA_VERSION):
                raise DataError(f"snapshot database {self.path} has schema "
                                f"{row[0] if row else 'none'}, this portatlas reads "
                                f"{SCHEMA_VERSION}; move it away to start a new one")
            return
        if tables - {"sqlite_sequence"}:
            raise DataError(f"{self.path} is not a portatlas snapshot database "
                            f"(tables: {', '.join(sorted(tables))})")
        if not create:
            raise NotFound(f"no snapshots yet in {self.path}")
        with _transaction(self.conn):
            for statement in _SCHEMA_SQL:
                self.conn.execute(statement)
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)",
                              (str(SCHEMA_VERSION),))

    # -- writing --------------------------------------------------------------------------------
    def save(self, kind: str, name: str, items: dict[str, Item], *,
             taken_at: float | None = None, meta: dict[str, Any] | None = None) -> Saved:
        """Store a snapshot; returns it with the changes since the previous one of its name."""
        if kind not in KINDS:
            raise ValueError(f"unknown snapshot kind {kind!r}")
        taken_at = time.time() if taken_at is None else taken_at
        rows = [(k, items[k].label, _dumps(items[k].facets)) for k in sorted(items)]
        digest = hashlib.sha256("\n".join(f"{k}\t{f}" for k, _, f in rows).encode()).hexdigest()
        try:
            with _transaction(self.conn, immediate=True):
                previous = self._latest(kind, name)
                same_as = None
                if previous is not None:
                    prev_digest = self.conn.execute(
                        "SELECT digest FROM snapshots WHERE id = ?", (previous.id,)).fetchone()[0]
                    if prev_digest == digest:
                        same_as = previous.same_as or previous.id
                cur = self.conn.execute(
                    "INSERT INTO snapshots (kind, name, taken_at, digest, count, same_as, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (kind, name, taken_at, digest, len(rows), same_as, _dumps(meta or {})))
                snap_id = cur.lastrowid
                if same_as is None:
                    self.conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)",
                                          [(snap_id, k, label, f) for k, label, f in rows])
        except sqlite3.Error as exc:
            raise DataError(f"snapshot database {self.path}: {exc}") from None
        info = SnapshotInfo(snap_id, kind, name, taken_at, len(rows), same_as)
        changes = []
        if previous is not None:
            changes = diff(self.items(previous), items, self._coverage(previous, meta or {}))
        return Saved(info, previous, changes)

    # -- reading --------------------------------------------------------------------------------
    def _latest(self, kind: str, name: str) -> SnapshotInfo | None:
        row = self.conn.execute(
            "SELECT id, kind, name, taken_at, count, same_as FROM snapshots "
            "WHERE kind = ? AND name = ? ORDER BY taken_at DESC, id DESC LIMIT 1",
            (kind, name)).fetchone()
        return SnapshotInfo(*row) if row else None

    def snapshots(self, kind: str, name: str | None = None, *, since: float | None = None,
                  until: float | None = None) -> list[SnapshotInfo]:
        """Snapshots of a kind (and name), oldest first."""
        sql = "SELECT id, kind, name, taken_at, count, same_as FROM snapshots WHERE kind = ?"
        args: list[Any] = [kind]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        if since is not None:
            sql += " AND taken_at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND taken_at <= ?"
            args.append(until)
        try:
            rows = self.conn.execute(sql + " ORDER BY taken_at, id", args).fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"snapshot database {self.path}: {exc}") from None
        return [SnapshotInfo(*r) for r in rows]

    def names(self, kind: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT name FROM snapshots WHERE kind = ? ORDER BY name", (kind,))]

    def items(self, info: SnapshotInfo) -> dict[str, Item]:
        source = info.same_as or info.id
        try:
            rows = self.conn.execute("SELECT key, label, facets FROM items WHERE snapshot = ?",
                                     (source,)).fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"snapshot database {self.path}: {exc}") from None
        return {k: Item(k, label, json.loads(f)) for k, label, f in rows}

    def meta(self, info: SnapshotInfo) -> dict[str, Any]:
        row = self.conn.execute("SELECT meta FROM snapshots WHERE id = ?", (info.id,)).fetchone()
        return json.loads(row[0]) if row else {}

    def _coverage(self, older: SnapshotInfo, newer_meta: dict[str, Any]):
        if older.kind != "scan":
            return None
        return scan_coverage(self.meta(older), newer_meta)

    def recent(self, kind: str, name: str | None, limit: int = 10) -> list[Interval]:
        """The intervals between the last `limit` + 1 snapshots of a name, oldest first."""
        rows = self.conn.execute(
            "SELECT id, kind, name, taken_at, count, same_as FROM snapshots WHERE kind = ?"
            + (" AND name = ?" if name is not None else "")
            + " ORDER BY taken_at DESC, id DESC LIMIT ?",
            (kind, name, limit + 1) if name is not None else (kind, limit + 1)).fetchall()
        chosen = [SnapshotInfo(*r) for r in reversed(rows)]
        return self._intervals(chosen)

    def changes(self, kind: str, name: str | None, *, since: float | None = None,
                until: float | None = None) -> list[Interval]:
        """The changes between consecutive snapshots in the window. The snapshot just before
        `since` is the baseline, so a change that happened inside the window is shown even when
        only one snapshot falls in it. Without `since`: the last two snapshots."""
        if since is None:
            chosen = self.snapshots(kind, name, until=until)[-2:]
        else:
            chosen = self.snapshots(kind, name, since=since, until=until)
            before = self.snapshots(kind, name, until=since)
            before = [s for s in before if s.taken_at < since]
            if before:
                chosen.insert(0, before[-1])
        return self._intervals(chosen)

    def _intervals(self, chosen: list[SnapshotInfo]) -> list[Interval]:
        intervals: list[Interval] = []
        for older, newer in zip(chosen, chosen[1:]):
            if older.same_as is not None or newer.same_as is not None:
                # identical content skips the diff (same_as points at the stored copy)
                if (older.same_as or older.id) == (newer.same_as or newer.id):
                    intervals.append(Interval(older.to_dict(), newer.to_dict(), []))
                    continue
            intervals.append(Interval(older.to_dict(), newer.to_dict(),
                                      diff(self.items(older), self.items(newer),
                                           self._coverage(older, self.meta(newer)))))
        return intervals


_SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL, name TEXT NOT NULL, taken_at REAL NOT NULL, digest TEXT NOT NULL,"
    " count INTEGER NOT NULL, same_as INTEGER REFERENCES snapshots(id), meta TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS snapshots_by_name ON snapshots(kind, name, taken_at)",
    "CREATE TABLE IF NOT EXISTS items (snapshot INTEGER NOT NULL REFERENCES snapshots(id),"
    " key TEXT NOT NULL, label TEXT NOT NULL, facets TEXT NOT NULL, PRIMARY KEY (snapshot, key))",
)


class _transaction:
    def __init__(self, conn: sqlite3.Connection, immediate: bool = False) -> None:
        self.conn, self.immediate = conn, immediate

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
        return self.conn

    def __exit__(self, exc_type, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


