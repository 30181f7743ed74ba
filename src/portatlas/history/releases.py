"""Registry releases: found, read, parsed with the registry importer, and normalised.

Parsing a 4 MB release in full takes about half a second, so `portatlas data update` avoids
it where it can: a release whose bytes (sha256) and importer code are unchanged since the
database being replaced was built is read back from that database instead (see
store.cached_releases), and a series of releases is parsed incrementally, each record
parsed once across the series (history.incremental).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from portatlas.errors import DataError
from portatlas.history import compare
from portatlas.kb.sources import parse_source, read_source
from portatlas.io_limits import require_regular_file

# Largest number of releases one database keeps (one bit each in an SQLite integer).
MAX_RELEASES = 62

# Sources of the code that turns a file into history records: when any of them changes,
# releases cached in an older database are parsed again.
_CODE_FILES = ("kb/iana_xml.py", "kb/iana_csv.py", "kb/records.py", "kb/sources.py",
               "history/compare.py", "history/releases.py", "history/incremental.py",
               "model.py")


class Release:
    """One registry release, normalised into history records."""

    __slots__ = ("label", "date", "date_basis", "location", "format", "sha256", "records",
                 "people", "current")

    def __init__(self, label: str, date: str | None, date_basis: str, location: str,
                 format: str, sha256: str, records: list[tuple],
                 people: dict[str, tuple[str | None, str | None]], current: bool = False) -> None:
        self.label = label            # how users name it: its date, made unique if needed
        self.date = date              # YYYY-MM-DD or None
        self.date_basis = date_basis  # "registry" (<updated>) or "newest-record" (CSV) or "none"
        self.location = location
        self.format = format
        self.sha256 = sha256
        self.records = records
        self.people = people          # person id -> (name, org), as this release lists them
        self.current = current

    def info(self) -> dict:
        return {"label": self.label, "date": self.date, "date_basis": self.date_basis,
                "location": self.location, "format": self.format, "sha256": self.sha256,
                "records": len(self.records), "current": self.current}

    def __repr__(self) -> str:
        return f"Release({self.label!r}, {len(self.records)} records)"


def code_fingerprint() -> str:
    """A hash of the importer and normaliser code (part of the release cache key)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _CODE_FILES:
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


def from_registry(registry, *, location: str, format: str, sha256: str,
                  current: bool = False) -> Release:
    """Normalise a parsed Registry (kb.records.Registry)."""
    records = [r for r in (compare.from_entry(e) for e in registry.entries) if r is not None]
    if format == "xml" and registry.updated:
        date, basis = registry.updated[:10], "registry"
    else:
        # the CSV carries no release date: its newest record date is the best estimate
        date = registry.newest_record_date
        basis = "newest-record" if date else "none"
    people = {pid: (p.name, p.org) for pid, p in registry.people.items()}
    return Release(date or "undated", date, basis, location, format, sha256, records, people,
                   current)


def parse_file(location: str) -> Release:
    """Read and parse one release file (XML or CSV) with the registry importer."""

    source = read_source(location)
    if source.format not in ("xml", "csv"):
        raise DataError(f"{location}: not an IANA registry release (XML or CSV)")
    registry = parse_source(source)
    return from_registry(registry, location=source.location, format=source.format,
                         sha256=source.sha256)


def file_sha256(location: str) -> str:
    require_regular_file(location, what="a registry release file")  # a FIFO would block
    digest = hashlib.sha256()
    try:
        with open(location, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"{location}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def order(releases: Iterable[Release]) -> list[Release]:
    """Oldest first, duplicates (same bytes) dropped, labels made unique, at most MAX_RELEASES."""
    seen: dict[str, Release] = {}
    for release in releases:
        kept = seen.get(release.sha256)
        if kept is None or (release.current and not kept.current):
            seen[release.sha256] = release
    ordered = sorted(seen.values(), key=lambda r: (r.date or "", not r.current, r.location))
    if len(ordered) > MAX_RELEASES:
        current = [r for r in ordered if r.current]
        others = [r for r in ordered if not r.current][-(MAX_RELEASES - len(current)):]
        ordered = sorted(others + current, key=lambda r: (r.date or "", not r.current, r.location))
    used: dict[str, int] = {}
    for release in ordered:
        base = release.date or "undated"
        n = used.get(base, 0)
        used[base] = n + 1
        release.label = base if n == 0 else f"{base}.{n + 1}"
    return ordered
