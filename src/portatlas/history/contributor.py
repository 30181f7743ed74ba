"""The history part of a database build (registered in kb.build.CONTRIBUTORS).

Gathers the releases — the registry being imported (when it is IANA's XML or CSV) plus the
older releases found by paths.history_candidates() — and our curated notes, then adds a
builder that writes the history tables inside the atomic build.

A release file that cannot be read or parsed is skipped with a warning on stderr: one bad
file a user dropped into the history folder must not stop `portatlas data update`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from portatlas.errors import DataError


def contribute(data, registry) -> None:
    """CONTRIBUTORS entry: (BuildInput, Registry of the main source) -> None."""
    from portatlas import paths
    from portatlas.history import notes as notes_mod
    from portatlas.history import releases as rel
    from portatlas.history import store

    found: list[rel.Release] = []
    main = data.provenance[0] if data.provenance else {}
    current_sha = None
    if main.get("kind") == "iana-registry" and main.get("format") in ("xml", "csv"):
        current_sha = main.get("sha256")
        found.append(rel.from_registry(registry, location=main["location"], format=main["format"],
                                       sha256=current_sha or "", current=True))

    code = rel.code_fingerprint()
    target = getattr(data, "target", None)
    cache = store.cached_releases(Path(target), code) if target else {}
    to_parse: list[str] = []
    for location in paths.history_candidates():
        try:
            sha = rel.file_sha256(location)
        except DataError as exc:
            _warn(f"skipping history release {location}: {exc}")
            continue
        if sha == current_sha:
            continue  # the same bytes as the registry being imported
        cached = cache.get(sha)
        if cached is not None:
            cached.location = str(Path(location).resolve())
            found.append(cached)
        else:
            to_parse.append(location)
    for location, result in zip(to_parse, rel.parse_files(to_parse)):
        if isinstance(result, DataError):
            _warn(f"skipping history release {location}: {result}")
        else:
            found.append(result)

    ordered = rel.order(found)
    for release in ordered:
        if not release.current:
            data.provenance.append({
                "kind": "registry-release", "location": release.location,
                "format": release.format, "sha256": release.sha256,
                "registry_date": release.date, "records": len(release.records)})

    try:
        note_rows = notes_mod.to_rows(notes_mod.load_file())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _warn(f"curated notes not loaded ({exc})")
        note_rows = []
    current_people = set(data.people)
    data.extras.append(lambda conn: store.write(conn, ordered, current_people, note_rows, code))


def _warn(message: str) -> None:
    print(f"portatlas: warning: {' '.join(message.split())}", file=sys.stderr)
