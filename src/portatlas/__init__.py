"""portatlas: what runs on port N?

    >>> import portatlas
    >>> answer = portatlas.lookup(57)
    >>> [e.description for e in answer.entries]
    ['any private terminal access', 'any private terminal access']

The functions here use one process-wide Atlas on the default database (built on first use);
open your own with portatlas.Atlas(db=...) for another database.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from portatlas.atlas import Atlas, PortAnswer, ServiceAnswer
    from portatlas.ranking import SearchHit

__all__ = ["Atlas", "lookup", "search", "service", "query", "__version__"]


def lookup(port: int | str, transport: str | None = None) -> "PortAnswer":
    """Everything known about one port, e.g. lookup(57) or lookup(53, "udp")."""
    # lazy: `import portatlas.x` runs this file first, so it imports nothing at module level
    from portatlas.atlas import default_atlas

    return default_atlas().port(port, transport)


def service(name: str, transport: str | None = None) -> "ServiceAnswer":
    """All ports of a service name or alias, e.g. service("http")."""
    # lazy: as in lookup(), the package __init__ stays import-free
    from portatlas.atlas import default_atlas

    return default_atlas().service(name, transport)


def search(text: str, limit: int = 20) -> list["SearchHit"]:
    """Ranked free-text search, e.g. search("mail transfer")."""
    # lazy: as in lookup(), the package __init__ stays import-free
    from portatlas.atlas import default_atlas

    return default_atlas().search(text, limit)


def query(text: str) -> Any:
    """Whatever the CLI would answer for `portatlas TEXT`."""
    # lazy: as in lookup(), the package __init__ stays import-free
    from portatlas.atlas import default_atlas

    return default_atlas().query(text)


def __getattr__(name: str) -> Any:
    if name == "Atlas":
        # lazy: `portatlas.Atlas` resolves on first use, keeping this __init__ import-free
        from portatlas.atlas import Atlas

        return Atlas
    raise AttributeError(name)
