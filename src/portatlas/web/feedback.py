"""'Was this page helpful?': answers stored in a SQLite file of their own.

Many workers and processes may write at once: every write is one short IMMEDIATE
transaction in WAL mode with a generous busy timeout, so writers queue instead of failing,
and the per-client rate limit is checked inside the same transaction (it holds across
workers and restarts, not per process). Clients are stored as a salted hash of their
address, never the address itself.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

from portatlas.errors import DataError, PortatlasError, UsageError
from portatlas.stamps import utc_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback(
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,          -- unix time
    port INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    helpful INTEGER NOT NULL CHECK (helpful IN (0, 1)),
    comment TEXT,
    client TEXT NOT NULL            -- salted hash of the client address
);
CREATE INDEX IF NOT EXISTS feedback_client ON feedback(client, created);
CREATE INDEX IF NOT EXISTS feedback_port ON feedback(port);
"""

# A runaway client (or many) must not fill the disk.
MAX_ROWS = 200_000
BUSY_TIMEOUT_S = 30.0


class RateLimited(PortatlasError):
    """Too many answers from one client; retry_after says when to try again (seconds)."""

    exit_code = 4

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def clean_comment(text: str | None, limit: int) -> str | None:
    """The comment as stored: trimmed, control characters removed, at most `limit` characters."""
    if text is None:
        return None
    if len(text) > limit:  # as sent: the API's schema bounds the request, not what is kept
        raise UsageError(f"comment too long ({len(text)} characters; the most is {limit})")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = text.strip()
    if len(text) > limit:
        raise UsageError(f"comment too long ({len(text)} characters; the most is {limit})")
    return text or None


class FeedbackStore:
    def __init__(self, path: Path, *, per_minute: int = 5, per_day: int = 50,
                 comment_max: int = 500) -> None:
        self.path = Path(path)
        self.per_minute = per_minute
        self.per_day = per_day
        self.comment_max = comment_max
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            with _immediate(conn):
                _create(conn)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)",
                             (secrets.token_hex(32),))
            self.secret = bytes.fromhex(conn.execute(
                "SELECT value FROM meta WHERE key='secret'").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise DataError(f"feedback database {self.path}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit mode; transactions are opened explicitly with BEGIN IMMEDIATE
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=True)
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def client_key(self, address: str) -> str:
        return hashlib.sha256(self.secret + b"client:" + address.encode()).hexdigest()[:24]

    def add(self, port: int, helpful: bool, comment: str | None, client_address: str,
            now: float | None = None) -> int:
        """Store one answer; returns its id. RateLimited or UsageError when refused."""
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise UsageError("port must be a number from 0 to 65535")
        comment = clean_comment(comment, self.comment_max)
        client = self.client_key(client_address)
        now = time.time() if now is None else now
        conn = self._conn()
        try:
            with _immediate(conn):
                minute, day, first_today = conn.execute(
                    "SELECT sum(created > ?), count(*), min(created) FROM feedback "
                    "WHERE client = ? AND created > ?", (now - 60, client, now - 86400)).fetchone()
                if (minute or 0) >= self.per_minute:
                    raise RateLimited("too many answers from you in the last minute; "
                                      "try again shortly", 60)
                if day >= self.per_day:
                    wait = int(first_today + 86400 - now) + 1 if first_today else 3600
                    raise RateLimited("too many answers from you today", max(1, wait))
                total = conn.execute("SELECT max(id) FROM feedback").fetchone()[0] or 0
                if total >= MAX_ROWS:
                    raise RateLimited("the feedback store is full", 3600)
                cur = conn.execute(
                    "INSERT INTO feedback(created, port, helpful, comment, client) "
                    "VALUES (?,?,?,?,?)", (now, port, 1 if helpful else 0, comment, client))
                return int(cur.lastrowid)
        except sqlite3.Error as exc:
            raise DataError(f"feedback database {self.path}: {exc}") from None

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM feedback").fetchone()[0]

    def summary(self, recent: int = 50) -> dict[str, Any]:
        """Totals, per-port tallies (most answered first) and the latest comments."""
        conn = self._conn()
        yes, no = conn.execute(
            "SELECT coalesce(sum(helpful), 0), coalesce(sum(1 - helpful), 0) FROM feedback"
        ).fetchone()
        ports = [{"port": p, "helpful": y, "not_helpful": n, "last": _iso(last)}
                 for p, y, n, last in conn.execute(
                     "SELECT port, sum(helpful), sum(1 - helpful), max(created) FROM feedback "
                     "GROUP BY port ORDER BY count(*) DESC, port LIMIT 500")]
        comments = [{"id": i, "port": p, "helpful": bool(h), "comment": c, "created": _iso(t)}
                    for i, t, p, h, c in conn.execute(
                        "SELECT id, created, port, helpful, comment FROM feedback "
                        "WHERE comment IS NOT NULL ORDER BY id DESC LIMIT ?", (recent,))]
        return {"schema": "portatlas.web.feedback/1", "total": yes + no, "helpful": yes,
                "not_helpful": no, "ports": ports, "recent_comments": comments}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _create(conn: sqlite3.Connection) -> None:
    # executescript would COMMIT the open transaction; run the statements one by one.
    for statement in SCHEMA.split(";"):
        lines = [ln.split("--")[0] for ln in statement.splitlines()]
        sql = "\n".join(lines).strip()
        if sql:
            conn.execute(sql)


class _immediate:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): takes the write lock up front, so a
    rate-limit check and its insert see the same state."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return utc_iso(ts)
