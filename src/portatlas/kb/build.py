"""Building the knowledge base from the sources found (`portatlas data update`)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from portatlas import paths
from portatlas.errors import DataError, UsageError
from portatlas.kb.sources import Source, parse_source, read_source
from portatlas.kb.store import BuildInput, write_database

# Builders that add to a database build (e.g. registry history); each is called with
# (BuildInput, Registry of the main source) before the database is written.
CONTRIBUTORS: list = []


def choose_source(explicit: str | None = None) -> str:
    """The registry source to import: explicit, else the first in the documented search order."""
    if explicit:
        return explicit
    candidates = paths.registry_candidates()
    if candidates:
        return candidates[0]
    if os.path.isfile(paths.ETC_SERVICES):
        return paths.ETC_SERVICES
    raise DataError("no registry source found: run 'portatlas data update --from FILE' "
                    "with IANA's service-names-port-numbers.xml or .csv")


def choose_default_update_source() -> str:
    """`data update` without --from: $PORTATLAS_REGISTRY if set, else IANA's official XML URL
    (an update means "get the current registry", not "reload the copy I already have")."""
    return os.environ.get("PORTATLAS_REGISTRY") or paths.IANA_XML_URL


def _registry_kind(source: Source) -> str:
    return "etc-services" if source.format == "services" else "iana-registry"


def build(db: str | Path, location: str, *, history: str = "all") -> dict:
    """Import `location` (path or URL) plus the optional enrichments into the database at `db`.

    Everything is read and validated before anything is written; on error the previous
    database is untouched. `history`: "all" imports every registry release found into the
    timeline; "quick" (the automatic first build) only the first few (docs/history.md).
    """

    # a --db that is a device, FIFO or folder is refused before any work (write_database
    # checks again just before the rename)
    require_regular_file(str(db), what="a database file; give another --db", error=UsageError)
    source = read_source(location)
    registry = parse_source(source)
    provenance = [{
        "kind": _registry_kind(source), "location": source.location, "format": source.format,
        "sha256": source.sha256, "registry_date": registry.updated,
        "records": len(registry.entries),
    }]
    data = BuildInput(registry.entries, registry.people, provenance)

    trojan_paths = paths.trojan_candidates()
    if trojan_paths:
        trojan_source = read_source(trojan_paths[0])
        rows = list(read_trojans(io.BytesIO(trojan_source.data), label=trojan_source.location))
        data.trojans = rows
        provenance.append({"kind": "trojans", "location": trojan_source.location, "format": "tsv",
                           "sha256": trojan_source.sha256, "records": len(rows)})

    nmap_path = find_nmap_services()
    if nmap_path:
        try:
            rows_nmap = list(read_nmap_services(nmap_path))
        except OSError:
            rows_nmap = []
        if rows_nmap:
            data.nmap = rows_nmap
            nmap_source = read_source(nmap_path)
            provenance.append({"kind": "nmap-services", "location": nmap_path, "format": "nmap",
                               "sha256": nmap_source.sha256, "records": len(rows_nmap)})

    data.target = db  # contributors may reuse work stored in the database being replaced
    data.history = history
    for contribute in CONTRIBUTORS:
        contribute(data, registry)
    write_database(db, data)
    return {"database": str(db), "sources": provenance}


# Registry history and curated notes (src/portatlas/history/, docs/history.md).
from portatlas.history.contributor import contribute as _history_contributor  # noqa: E402
from portatlas.io_limits import require_regular_file
from portatlas.kb.trojans import read_trojans
from portatlas.kb.nmap_services import find_nmap_services, read_nmap_services

CONTRIBUTORS.append(_history_contributor)
