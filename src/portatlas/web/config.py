"""Settings of one web server; `portatlas serve` fills them from its options."""

from __future__ import annotations

import os
from pathlib import Path

from portatlas import paths
from portatlas.errors import UsageError

FEEDBACK_DB_NAME = "feedback.sqlite3"


def feedback_db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--feedback-db, else $PORTATLAS_FEEDBACK_DB, else <data dir>/feedback.sqlite3.

    A file of its own: the registry database is rebuilt (replaced whole) by every update,
    which would throw away what people wrote.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get("PORTATLAS_FEEDBACK_DB")
    if env:
        return Path(env)
    return paths.data_dir() / FEEDBACK_DB_NAME


class WebConfig:
    """What the app needs to know; plain attributes so tests can adjust any of them."""

    def __init__(self, db: str | os.PathLike[str] | None = None, *,
                 feedback_db: str | os.PathLike[str] | None = None,
                 snapshots: str | os.PathLike[str] | None = None,
                 allow_check: list[str] | None = None,
                 allowed_hosts: set[str] | None = None,
                 feedback_per_minute: int = 5,
                 feedback_per_day: int = 50,
                 comment_max: int = 500,
                 checks_per_minute: int = 10,
                 check_ports_max: int = 16,
                 page_cache_bytes: int = 48 << 20,
                 page_cache_item: int = 2 << 20,
                 live_ttl: float = 2.0,
                 request_timeout: float = 10.0,
                 max_connections: int | None = None,
                 reload_interval: float = 2.0) -> None:
        self.db_path = Path(paths.db_path(db))
        self.feedback_db = feedback_db_path(feedback_db)
        # snapshots of `local --save` / `scan --save`, read only (docs/changes.md)
        self.snapshots = Path(snapshots) if snapshots else None
        if _same_file(self.feedback_db, self.db_path):
            raise UsageError("the feedback database must not be the registry database "
                             "(updates replace that file); choose another --feedback-db")
        self.allow_check = list(allow_check or [])
        # Host header values accepted (DNS-rebinding defence); None accepts any.
        self.allowed_hosts = allowed_hosts
        self.feedback_per_minute = feedback_per_minute
        self.feedback_per_day = feedback_per_day
        self.comment_max = comment_max
        self.checks_per_minute = checks_per_minute
        self.check_ports_max = check_ports_max
        # The page/answer cache is bounded by bytes (docs/web.md, "Memory").
        self.page_cache_bytes = page_cache_bytes
        self.page_cache_item = page_cache_item
        # Seconds a client has from connecting (or its request's first byte) to a whole
        # request, and the most open connections (None: from the descriptor limit).
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        # How long a snapshot of this machine's listeners is reused (seconds).
        self.live_ttl = live_ttl
        # How often (at most) to look whether the registry database file was replaced.
        self.reload_interval = reload_interval


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def local_hosts(bind_host: str, port: int) -> set[str] | None:
    """Host header values to accept for a server bound to bind_host:port.

    Bound to a loopback address, only loopback names are accepted: a page on another site
    that points its own DNS name at 127.0.0.1 (DNS rebinding) is then refused. Bound to a
    wildcard or a public address, the operator chose to be reachable by any name.
    """
    loopback_v4 = bind_host.startswith("127.")
    if bind_host in ("localhost", "::1") or loopback_v4:
        names = {"localhost", "127.0.0.1", "[::1]"}
        if loopback_v4:
            names.add(bind_host)
        return names | {f"{n}:{port}" for n in names}
    return None
