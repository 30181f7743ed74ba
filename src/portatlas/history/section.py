"""The "history" section of a port answer (`portatlas 57`, the web page, --json).

Three parts, each labelled with where it comes from and kept apart from the registry's
current entry: the registry timeline (computed from the imported releases), our curated
history notes, and our notes on de-facto use. Cheap enough for every lookup: two indexed
queries on the database already open, no JSON parsing.
"""

from __future__ import annotations
from portatlas.history.store import HistoryReader
from portatlas.history.timeline import port_timeline
from portatlas.history.notes import from_file, from_row

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any


LABELS = {
    "registry_timeline": "Registry timeline: computed by portatlas from the IANA registry "
                         "releases listed in 'releases' and the dates inside their records",
    "curated_history": "Origin and history: portatlas's own notes, each citing its sources; "
                       "not the registry's words",
    "de_facto_uses": "De-facto use: what is commonly found on this port in practice, from "
                     "portatlas's own notes with sources; the registry may say otherwise, and "
                     "an open port may run anything",
}


def history_data(conn, port: int, transport: str | None) -> dict[str, Any]:
    """Timeline, releases and notes for a port (the body of `history --json` too)."""

    reader = HistoryReader(conn)
    timeline = port_timeline(reader, port, transport)
    rows = reader.notes(port)
    if rows is None:  # a database built before history existed: read our file instead

        notes = from_file(port)
    else:
        notes = [from_row(r) for r in rows]
    if transport:
        notes = [n for n in notes if transport in n["transports"]]
    return {
        "releases": timeline["releases"],
        # older releases found at build time but left out (the quick automatic build)
        "releases_not_imported": reader.older_not_imported(),
        "registry_timeline": timeline["events"],
        "curated_history": [n for n in notes if n["kind"] == "history"],
        "de_facto_uses": [n for n in notes if n["kind"] == "use"],
        "labels": LABELS,
    }


def section(answer) -> dict[str, Any] | None:
    """The section for a PortAnswer; None when there is nothing to say."""
    data = history_data(answer.atlas.store.conn, answer.port, answer.transport)
    if not (data["registry_timeline"] or data["curated_history"] or data["de_facto_uses"]):
        return None
    return data
