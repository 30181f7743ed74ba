"""The history part of a database build (registered in kb.build.CONTRIBUTORS).

Gathers the releases — the registry being imported (when it is IANA's XML or CSV) plus the
older releases found by paths.history_candidates() — and our curated notes, then adds a
builder that writes the history tables inside the atomic build.

How many older releases: all of them for `portatlas data update` and `portatlas data
history`; at most QUICK_OLDER (the first ones in search order) for the automatic build of a
first query, which must stay about as quick as a build without history (docs/history.md,
"Releases").

A release file that cannot be read or parsed is skipped with a warning on stderr: one bad
file a user dropped into the history folder must not stop `portatlas data update`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from portatlas.errors import DataError
from portatlas import paths
from portatlas.history import releases as rel, notes as notes_mod, store
from portatlas.history.incremental import ReleaseParser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portatlas.history.releases import Release

# older releases imported by the automatic first build ("quick" history)
QUICK_OLDER = 2


class Gathered:
    """The releases of one history build, and what it cost."""

    def __init__(self) -> None:
        self.releases: list[Release] = []     # ordered, oldest first
        self.found = 0                        # older release files found
        self.reused = 0                       # read back from the database being replaced
        self.parsed = 0                       # parsed now
        self.skipped: list[dict[str, str]] = []  # {"location", "error"}
        self.records_parsed = 0               # records that went through the importer
        self.records_reused = 0               # records recognised from an earlier release


def gather(current: Release | None, cache: dict[str, Release], *, quick: bool = False,
           warn=None) -> Gathered:
    """The current release (if any) plus the older releases found, parsed or reused."""

    out = Gathered()
    found: list[Release] = [current] if current is not None else []
    current_sha = current.sha256 if current is not None else None
    candidates = paths.history_candidates()
    out.found = len(candidates)
    if quick:
        candidates = candidates[:QUICK_OLDER]
    to_parse: list[str] = []
    for location in candidates:
        try:
            sha = rel.file_sha256(location)
        except DataError as exc:
            out.skipped.append({"location": location, "error": str(exc)})
            continue
        if sha == current_sha:
            out.found -= 1  # the same bytes as the registry being imported: not an older one
            continue
        cached = cache.get(sha)
        if cached is not None:
            cached.location = str(Path(location).resolve())
            cached.current = False
            found.append(cached)
            out.reused += 1
        else:
            to_parse.append(location)
    parser = ReleaseParser()
    for location in to_parse:  # in search order: oldest first, so most records are reused
        try:
            found.append(parser.parse(location))
            out.parsed += 1
        except DataError as exc:
            out.skipped.append({"location": location, "error": str(exc)})
    out.records_parsed, out.records_reused = parser.parsed_records, parser.reused_records
    for item in out.skipped:
        (warn or _warn)(f"skipping history release {item['location']}: {item['error']}")
    out.releases = rel.order(found)
    return out


def provenance_rows(releases: list[Release]) -> list[dict]:
    return [{"kind": "registry-release", "location": r.location, "format": r.format,
             "sha256": r.sha256, "registry_date": r.date, "records": len(r.records)}
            for r in releases if not r.current]


def note_rows() -> list[tuple]:
    try:
        return notes_mod.to_rows(notes_mod.load_file())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _warn(f"curated notes not loaded ({exc})")
        return []


def contribute(data, registry) -> None:
    """CONTRIBUTORS entry: (BuildInput, Registry of the main source) -> None."""

    main = data.provenance[0] if data.provenance else {}
    current = None
    if main.get("kind") == "iana-registry" and main.get("format") in ("xml", "csv"):
        current = rel.from_registry(registry, location=main["location"], format=main["format"],
                                    sha256=main.get("sha256") or "", current=True)
    code = rel.code_fingerprint()
    target = getattr(data, "target", None)
    cache = store.cached_releases(Path(target), code) if target else {}
    quick = getattr(data, "history", "all") == "quick"
    gathered = gather(current, cache, quick=quick)
    data.provenance.extend(provenance_rows(gathered.releases))
    rows = note_rows()
    current_people = set(data.people)
    ordered = gathered.releases
    data.extras.append(lambda conn: store.write(conn, ordered, current_people, rows, code,
                                                found=gathered.found))


def _warn(message: str) -> None:
    print(f"portatlas: warning: {' '.join(message.split())}", file=sys.stderr)
