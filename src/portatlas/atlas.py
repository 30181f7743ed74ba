"""The public knowledge-base API: Atlas and the answers it gives.

The CLI, the web UI and library users all go through this module. Two ways of reading:
 - per query from SQLite (what a one-shot CLI run wants: no start-up cost), and
 - from an in-memory index loaded once (what a long-lived process wants: microseconds per lookup).
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_right
TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any, Callable

    from portatlas.ranking import SearchHit

from portatlas import paths
from portatlas.errors import DataError, NotFound
from portatlas.model import (TRANSPORTS, Entry, RangeClass, group_by_transport, overall_status,
                             range_class)
from portatlas.parsing import parse_port, parse_query, parse_transport
from portatlas.kb.store import Store


def ensure_database(db: str, notify: Callable[[str], None] | None = None) -> None:
    """With no database yet, build one from the first source in the search order."""
    if os.path.exists(db):
        return
    # lazy: kb.build (the registry parsers) is for a first run without a database only
    from portatlas.kb.build import build, choose_source

    location = choose_source()
    if notify:
        notify(f"portatlas: no database yet; building {db} from {location}")
    # a first query must stay quick: only a few older releases go into the timeline
    # ('portatlas data history' or 'data update' imports them all; docs/history.md)
    build(db, location, history="quick")


class Atlas:
    """Everything portatlas knows about ports, read from one database."""

    def __init__(self, db: str | os.PathLike[str] | None = None, *, autobuild: bool = True,
                 notify: Callable[[str], None] | None = None) -> None:
        self.db_path = paths.db_path(db)
        if autobuild:
            ensure_database(self.db_path, notify)
        elif not os.path.exists(self.db_path):
            raise DataError(f"no database at {self.db_path}; run 'portatlas data update'")
        self.store = Store(self.db_path)
        self._index: _Index | None = None
        self._source_label: str | None = None

    # raw entries ----------------------------------------------------------------------
    def entries(self, port: int, transport: str | None = None) -> list[Entry]:
        """Registry entries covering `port` (ranges included), optionally for one transport."""
        found = self._index.lookup(port) if self._index else self.store.entries_for_port(port)
        if transport:
            return [e for e in found if e.transport in (transport, None)]
        return list(found)

    def preload(self) -> "Atlas":
        """Load every entry into memory so lookups no longer touch SQLite."""
        if self._index is None:
            self._index = _Index(self.store.all_entries())
        return self

    def all_entries(self) -> list[Entry]:
        return list(self._index.entries) if self._index else self.store.all_entries()

    # answers --------------------------------------------------------------------------
    def port(self, port: int | str, transport: str | None = None) -> "PortAnswer":
        if isinstance(port, str):
            port = parse_port(port)
        elif not 0 <= port <= 65535:
            parse_port(str(port))  # raises the usual one-line error
        if transport:
            transport = parse_transport(transport)
        return PortAnswer(self, port, transport, self.entries(port, transport))

    lookup = port

    def service(self, name: str, transport: str | None = None) -> "ServiceAnswer":
        entries = self.store.entries_for_service(name.strip())
        if transport:
            entries = [e for e in entries if e.transport in (transport, None)]
        if not entries:
            raise NotFound(f"no service named {name.strip()!r} in the registry "
                           f"(try: portatlas search {name.strip()!r})")
        return ServiceAnswer(name.strip(), entries)

    def range(self, lo: int, hi: int, transport: str | None = None) -> list[Entry]:
        entries = self.store.entries_overlapping(lo, hi)
        if transport:
            entries = [e for e in entries if e.transport in (transport, None)]
        return entries

    def query(self, text: str, transport: str | None = None) -> Any:
        """Answer whatever the user typed: a PortAnswer, RangeAnswer or ServiceAnswer."""
        q = parse_query(text, transport)
        if q.kind == "port":
            return self.port(q.lo, q.transport)
        if q.kind == "range":
            return RangeAnswer(q.lo, q.hi, q.transport, self.range(q.lo, q.hi, q.transport))
        return self.service(q.name, q.transport)

    def search(self, text: str, limit: int = 20) -> list["SearchHit"]:
        # lazy: ranking is for `portatlas search`, not on the `portatlas PORT` path
        from portatlas.ranking import search

        return search(self, text, limit)

    # enrichments ----------------------------------------------------------------------
    def trojans(self, port: int) -> dict[str, list[str]]:
        return self.store.trojans(port)

    def nmap(self, port: int) -> dict[str, tuple[str, float]]:
        return self.store.nmap(port)

    def provenance(self) -> list[dict]:
        return self.store.provenance()

    @property
    def source_label(self) -> str:
        """One line saying where the registry data came from (shown with every answer)."""
        if self._source_label is None:
            prov = [p for p in self.provenance() if p["kind"] in ("iana-registry", "etc-services")]
            if not prov:
                self._source_label = "unknown source"
            elif prov[0]["kind"] == "etc-services":
                self._source_label = (f"fallback: the OS services file {prov[0]['location']} "
                                      "(not the IANA registry; run 'portatlas data update')")
            else:
                p = prov[0]
                self._source_label = f"IANA registry {p['registry_date'] or '(undated)'} ({p['format']})"
        return self._source_label

    @property
    def is_fallback(self) -> bool:
        return self.source_label.startswith("fallback")

    def close(self) -> None:
        self.store.close()


class _Index:
    """All entries in memory: a dict for single ports, a sorted list for ranges."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.single: dict[int, list[Entry]] = {}
        ranges = []
        for entry in entries:
            if entry.port_lo is None:
                continue
            if entry.port_lo == entry.port_hi:
                self.single.setdefault(entry.port_lo, []).append(entry)
            else:
                ranges.append(entry)
        ranges.sort(key=lambda e: e.port_lo)
        self.ranges = ranges
        self.range_starts = [e.port_lo for e in ranges]
        self.widest = max((e.port_hi - e.port_lo for e in ranges), default=0)
        self._cache: dict[int, tuple[Entry, ...]] = {}

    def lookup(self, port: int) -> tuple[Entry, ...]:
        cached = self._cache.get(port)
        if cached is not None:
            return cached
        found = list(self.single.get(port, ()))
        stop = bisect_right(self.range_starts, port)
        start = bisect_right(self.range_starts, port - self.widest - 1)
        for entry in self.ranges[start:stop]:
            if entry.port_hi >= port:
                found.append(entry)
        result = tuple(found)
        self._cache[port] = result
        return result


# The neighbours shown beside a port for context: one on each side.
NEIGHBOUR_SPAN = 1


class PortAnswer:
    """Everything known about one port (optionally one transport).

    Cheap to create: the parts beyond the registry entries are computed on first use.
    """

    def __init__(self, atlas: Atlas, port: int, transport: str | None, entries: list[Entry]) -> None:
        self.atlas = atlas
        self.port = port
        self.transport = transport
        self.entries = entries
        # filled by other parts of portatlas when asked for (see cli.port / web)
        self.extra: dict[str, Any] = {}

    @property
    def by_transport(self) -> dict[str, list[Entry]]:
        grouped = group_by_transport(self.entries)
        if self.transport:
            return {self.transport: grouped.get(self.transport, [])}
        return grouped

    @property
    def range_class(self) -> RangeClass:
        return range_class(self.port)

    @property
    def status(self) -> dict[str, str]:
        """Per transport: assigned, unassigned, reserved or deassigned."""
        grouped = group_by_transport(self.entries)
        transports = (self.transport,) if self.transport else TRANSPORTS
        return {t: overall_status(e for e in grouped.get(t, []) if not _is_blanket(e, self.port))
                for t in transports}

    @property
    def found(self) -> bool:
        return bool(self.entries)

    @property
    def trojans(self) -> dict[str, list[str]]:
        found = self.atlas.trojans(self.port)
        if self.transport:
            found = {t: n for t, n in found.items() if t == self.transport}
        return found

    @property
    def nmap(self) -> dict[str, tuple[str, float]]:
        found = self.atlas.nmap(self.port)
        if self.transport:
            found = {t: v for t, v in found.items() if t == self.transport}
        return found

    @property
    def neighbours(self) -> list[tuple[int, list[Entry]]]:
        out = []
        for n in range(self.port - NEIGHBOUR_SPAN, self.port + NEIGHBOUR_SPAN + 1):
            if n == self.port or not 0 <= n <= 65535:
                continue
            out.append((n, self.atlas.entries(n, self.transport)))
        return out

    @property
    def howto(self) -> dict[str, dict[str, list[str]]]:
        # lazy: only a port answer shows how-to commands; `portatlas search` never loads howto
        from portatlas.howto import commands

        transports = [self.transport] if self.transport in ("tcp", "udp") else ["tcp", "udp"]
        return commands(self.port, transports)

    def to_dict(self) -> dict[str, Any]:
        by_transport = self.by_transport
        rc = self.range_class
        return {
            "schema": "portatlas.port/1",
            "port": self.port,
            "transport": self.transport,
            "source": self.atlas.source_label,
            "range_class": rc.to_dict(),
            "status": self.status,
            "entries": {t: [e.to_dict() for e in es] for t, es in by_transport.items()},
            "trojans": {"caveat": trojan_caveat(), "by_transport": self.trojans},
            "nmap_frequency": {t: {"service": s, "frequency": f} for t, (s, f) in self.nmap.items()},
            "neighbours": [{"port": n, "entries": [_summary(e) for e in es]}
                           for n, es in self.neighbours],
            "howto": self.howto,
            **self.extra,
        }


def _is_blanket(entry: Entry, port: int) -> bool:
    """A wide range entry (e.g. 'Unassigned 49152-65535') says nothing specific about a port."""
    return entry.is_range and entry.status in ("unassigned",) and entry.port_lo != port


def _summary(entry: Entry) -> dict[str, Any]:
    return {"service": entry.service, "ports": entry.ports, "transport": entry.transport,
            "description": entry.description, "status": entry.status}


def trojan_caveat() -> str:
    # lazy: the caveat is for --json and the web; `portatlas 57` (text) does not load kb.trojans
    from portatlas.kb.trojans import CAVEAT

    return CAVEAT


class RangeAnswer:
    def __init__(self, lo: int, hi: int, transport: str | None, entries: list[Entry]) -> None:
        self.lo, self.hi, self.transport, self.entries = lo, hi, transport, entries

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "portatlas.range/1", "lo": self.lo, "hi": self.hi,
                "transport": self.transport, "entries": [e.to_dict() for e in self.entries]}


class ServiceAnswer:
    """All ports of a service name (including entries that are aliases of it)."""

    def __init__(self, name: str, entries: list[Entry]) -> None:
        self.name = name
        self.entries = entries

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "portatlas.service/1", "name": self.name,
                "entries": [e.to_dict() for e in self.entries]}


_default: Atlas | None = None


def default_atlas() -> Atlas:
    """The process-wide Atlas (default database, preloaded) behind portatlas.lookup()."""
    global _default
    if _default is None:
        _default = Atlas(notify=lambda msg: print(msg, file=sys.stderr)).preload()
    return _default
