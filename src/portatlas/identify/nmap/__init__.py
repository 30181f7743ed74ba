"""The nmap service-probe engine: nmap's probes and match lines, run by portatlas.

Public entry points (stable; check, scan --identify, local --identify and the web /check all
reach them through portatlas.identify.identify_async, which runs this engine beside the
portatlas protocol modules and merges the two - see identify/merge.py and docs/identify.md):

    from portatlas.identify import nmap
    path = nmap.find_db(explicit=None)       # --nmap-db PATH, else $PORTATLAS_NMAP_DB, else
                                             # /usr/share/nmap/nmap-service-probes; None if absent
    db = nmap.load(path)                     # ServiceProbes (cached per path and mtime);
                                             # DataError when unreadable or malformed
    probe = db.probe("tcp", "GetRequest")
    hit = nmap.match_reply(db, probe, reply) # Hit | None, nmap's own-probe rule
    order = nmap.plan(db, "tcp", 8080, intensity=7)
    result = await nmap.TCPEngine(db, host, port, settings, deadline).run(banner)
    result = await nmap.UDPEngine(db, host, port, settings, deadline).run()

The file is read at run time and never copied into portatlas (it is under the Nmap Public
Source License).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from portatlas.errors import DataError
from portatlas.identify.nmap.db import MatchLine, NmapProbe, ServiceProbes, parse
from portatlas.identify.nmap.matching import Hit, match_reply
from portatlas.identify.nmap.plan import DEFAULT_INTENSITY, plan
from portatlas.io_limits import read_limited

__all__ = ["DEFAULT_PATH", "ENV_VAR", "find_db", "load", "missing_note", "match_reply", "plan",
           "Hit", "MatchLine", "NmapProbe", "ServiceProbes", "DEFAULT_INTENSITY"]

DEFAULT_PATH = "/usr/share/nmap/nmap-service-probes"
ENV_VAR = "PORTATLAS_NMAP_DB"

MAX_BYTES = 32 << 20
_CACHE: dict[tuple[str, float, int], ServiceProbes] = {}
_LOCK = threading.Lock()  # ports load it from worker threads: parse it once


def find_db(explicit: str | None = None) -> str | None:
    """Where the database is: the explicit path (returned even when missing, so that load()
    says so: a path the user typed must work), else $PORTATLAS_NMAP_DB, else Debian's path;
    None when that file does not exist (then identification runs without nmap, with a note:
    an environment setting is ambient, like the default path)."""
    if explicit:
        return str(explicit)
    where = os.environ.get(ENV_VAR) or DEFAULT_PATH
    return where if Path(where).is_file() else None


def missing_note(explicit: str | None = None) -> str:
    where = explicit or os.environ.get(ENV_VAR) or DEFAULT_PATH
    return (f"nmap's service database was not found at {where}: identified with portatlas's "
            "own modules only (install Debian's nmap-common, or give --nmap-db PATH)")


def load(path: str | None = None) -> ServiceProbes:
    """Parse the database at `path` (default: find_db()). Cached while the file is unchanged.
    Raises DataError when it cannot be read or parsed."""
    where = path or find_db()
    if not where:
        raise DataError(missing_note())
    with _LOCK:
        return _load(str(where))


def _load(where: str) -> ServiceProbes:
    hint = "(install Debian's nmap-common, or give --nmap-db PATH)"
    try:
        st = os.stat(where)
    except OSError as exc:
        raise DataError(f"cannot read nmap's service probes at {where}: "
                        f"{exc.strerror or exc} {hint}") from None
    key = (str(where), st.st_mtime, st.st_size)
    if key in _CACHE:
        return _CACHE[key]
    try:  # bounded: Debian's file is about 2.5 MB, anything far bigger is not nmap's file
        text = read_limited(str(where), limit=MAX_BYTES, what="nmap's service probes file",
                            allow_stdin=False).decode("latin-1")
    except DataError as exc:
        raise DataError(f"cannot read nmap's service probes: {exc} {hint}") from None
    db = parse(text, str(where))
    _CACHE.clear()  # one database at a time is enough
    _CACHE[key] = db
    return db
