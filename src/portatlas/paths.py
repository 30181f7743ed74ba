"""Where portatlas keeps its database and where it looks for registry sources.

Database: --db PATH, else $PORTATLAS_DB, else $XDG_DATA_HOME/portatlas/portatlas.sqlite3
(~/.local/share/portatlas/portatlas.sqlite3).

Registry source search order, used by the first query when there is no database yet and by
`portatlas data update` without --from (docs/data.md says the same):
  1. $PORTATLAS_REGISTRY (a path or an http(s) URL)
  2. <data dir>/sources/service-names-port-numbers.xml, then .csv (files the user put there)
  3. a reference copy beside this checkout or the working directory:
     ../shared/data/iana/service-names-port-numbers.xml, then .csv
  4. /etc/services (the OS's short list; every answer then says it came from there)
`portatlas data update` with no --from uses $PORTATLAS_REGISTRY, else downloads IANA_XML_URL.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

IANA_XML_URL = "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.xml"
IANA_CSV_URL = "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv"
DB_NAME = "portatlas.sqlite3"
REGISTRY_FILES = ("service-names-port-numbers.xml", "service-names-port-numbers.csv")
TROJAN_FILE = "trojan-ports.tsv"
ETC_SERVICES = "/etc/services"


def _data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "portatlas")


def data_dir() -> Path:
    # lazy: pathlib costs ~2 ms; `portatlas PORT` needs only db_path() (plain str)
    from pathlib import Path

    return Path(_data_dir())


def db_path(explicit: str | os.PathLike[str] | None = None) -> str:
    """The database file (a str: this runs on every lookup, and pathlib costs milliseconds)."""
    if explicit:
        return os.fspath(explicit)
    return os.environ.get("PORTATLAS_DB") or os.path.join(_data_dir(), DB_NAME)


def _shared_dirs() -> list[Path]:
    """shared/data folders beside this checkout and beside the working directory."""
    from pathlib import Path  # lazy: pathlib, as in data_dir (off the lookup path)

    candidates = []
    checkout = Path(__file__).resolve().parents[2]  # src/portatlas/paths.py -> checkout root
    for base in (checkout, Path.cwd()):
        for shared in (base.parent / "shared" / "data", base / "shared" / "data"):
            if shared not in candidates:
                candidates.append(shared)
    return candidates


def registry_candidates() -> list[str]:
    """Registry sources in search order (only the ones that exist, plus the env override)."""
    found: list[str] = []
    env = os.environ.get("PORTATLAS_REGISTRY")
    if env:
        found.append(env)
    sources = data_dir() / "sources"
    for name in REGISTRY_FILES:
        if (sources / name).is_file():
            found.append(str(sources / name))
    for shared in _shared_dirs():
        for name in REGISTRY_FILES:
            path = shared / "iana" / name
            if path.is_file():
                found.append(str(path))
    return found


def history_candidates() -> list[str]:
    """Older registry releases (XML) for the change history, in search order.

    The first of these that holds any *.xml: the folders of $PORTATLAS_HISTORY (all of them),
    <data dir>/sources/history/, or the shared reference data (iana/history/ and
    iana/releases/ together). Files are sorted by name within each folder.
    """
    from pathlib import Path  # lazy: pathlib, as in data_dir (off the lookup path)

    env = os.environ.get("PORTATLAS_HISTORY")
    groups: list[list[Path]] = []
    if env:
        groups.append([Path(p) for p in env.split(os.pathsep) if p])
    groups.append([data_dir() / "sources" / "history"])
    groups.extend([shared / "iana" / "history", shared / "iana" / "releases"]
                  for shared in _shared_dirs())
    for folders in groups:
        found: list[Path] = []
        for folder in folders:
            if folder.is_dir():
                found.extend(sorted(folder.glob("*.xml")))
        if found:
            return [str(p) for p in found]
    return []


def trojan_candidates() -> list[str]:
    found: list[str] = []
    env = os.environ.get("PORTATLAS_TROJANS")
    if env is not None:
        return [env] if env else []
    own = data_dir() / "sources" / TROJAN_FILE
    if own.is_file():
        found.append(str(own))
    for shared in _shared_dirs():
        path = shared / "trojans" / TROJAN_FILE
        if path.is_file():
            found.append(str(path))
    return found
