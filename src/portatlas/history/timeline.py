"""A port's registry timeline: what each imported release said, and the dates inside the records.

For each transport, the records covering the port in consecutive releases are compared with
compare.match; each difference becomes an event. Dates come from the records themselves
where they fall inside the window between the two releases (a registration date for an
addition, a "De-assigned on ..." note or the modification date for a change); otherwise the
event says only "between release A and release B".
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any

import re

from portatlas.history import compare
from portatlas.model import TRANSPORTS
from portatlas.history.store import record_dict

# "De-assigned on 2025-02-13", "This entry has been removed on 2017-05-18.", "Removed 2004-2-6"
_NOTE_DATE = re.compile(r"\b(de-?assigned|removed)\b(?:\s+on)?\s+(\d{4})-(\d{1,2})-(\d{1,2})", re.I)


def note_date(notes: str | None) -> str | None:
    """The de-assignment/removal date written in a record's note, as YYYY-MM-DD."""
    if not notes:
        return None
    match = _NOTE_DATE.search(notes)
    if not match:
        return None
    year, month, day = match.group(2), int(match.group(3)), int(match.group(4))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{year}-{month:02d}-{day:02d}"


def _within(date: str | None, after: str | None, by: str | None) -> bool:
    if not date:
        return False
    date = date[:10]
    return (after is None or date > after) and (by is None or date <= by)


def _status_kind(old: tuple, new: tuple) -> str:
    before, after = old[compare.STATUS], new[compare.STATUS]
    if before == after:
        return "changed"
    if after in ("deassigned", "reserved"):
        return after
    return "assigned" if after == "assigned" else "changed"


def events_for(states: list[list[tuple]], labels: list[str], dates: list[str | None]
               ) -> list[dict[str, Any]]:
    """Events for one port and transport, from the records covering it in each release."""
    events: list[dict[str, Any]] = []
    for i, records in enumerate(states):
        if i == 0:
            for record in sorted(records, key=compare.sort_key):
                events.append(_first(record, labels[0], dates[0]))
            continue
        after, by = dates[i - 1], dates[i]
        pairs, removed, added = compare.match(states[i - 1], records)
        window = {"after_release": labels[i - 1], "by_release": labels[i]}
        for old, new in sorted(pairs, key=lambda p: compare.sort_key(p[1])):
            diffs = compare.changes(old, new)
            if not diffs:
                continue
            kind = _status_kind(old, new)
            date, basis = None, None
            noted = note_date(new[compare.NOTES])
            if kind in ("deassigned", "reserved") and _within(noted, after, by):
                date, basis = noted, "note"
            elif _within(new[compare.MODIFIED], after, by):
                date, basis = new[compare.MODIFIED][:10], "modified"
            events.append({"kind": kind, "date": date, "date_basis": basis, **window,
                           "record": new, "before": old,
                           "changes": [{"field": f, "old": a, "new": b} for f, a, b in diffs]})
        for new in sorted(added, key=compare.sort_key):
            date, basis = None, None
            if _within(new[compare.REGISTERED], after, by):
                date, basis = new[compare.REGISTERED][:10], "registered"
            elif _within(new[compare.MODIFIED], after, by):
                date, basis = new[compare.MODIFIED][:10], "modified"
            events.append({"kind": "added", "date": date, "date_basis": basis, **window,
                           "record": new})
        for old in sorted(removed, key=compare.sort_key):
            events.append({"kind": "removed", "date": None, "date_basis": None, **window,
                           "record": old})
    return events


def _first(record: tuple, label: str, release_date: str | None) -> dict[str, Any]:
    """A record already in the oldest imported release."""
    event: dict[str, Any] = {"kind": "present", "date": None, "date_basis": None,
                             "after_release": None, "by_release": label, "record": record}
    noted = note_date(record[compare.NOTES])
    if record[compare.STATUS] in ("deassigned", "reserved") and _within(noted, None, release_date):
        event.update(kind=record[compare.STATUS], date=noted, date_basis="note")
    elif _within(record[compare.REGISTERED], None, release_date):
        event.update(date=record[compare.REGISTERED][:10], date_basis="registered")
    return event


def port_timeline(reader, port: int, transport: str | None = None) -> dict[str, Any]:
    """{"releases": [...], "events": {transport: [event, ...]}} with JSON-ready events."""

    releases = reader.releases()
    versions = reader.records_covering(port) if releases else []
    labels = [r["label"] for r in releases]
    dates = [r["date"] for r in releases]
    by_transport: dict[str, list[dict[str, Any]]] = {}
    for t in (transport,) if transport else TRANSPORTS:
        mine = [(mask, rec) for mask, rec in versions if rec[compare.TRANSPORT] in (t, None)]
        if not mine:
            continue
        states = [[rec for mask, rec in mine if mask >> i & 1] for i in range(len(releases))]
        events = events_for(states, labels, dates)
        if events:
            by_transport[t] = events
    people_ids = {e[k][compare.ASSIGNEE] for evs in by_transport.values() for e in evs
                  for k in ("record", "before") if k in e}
    people = reader.people(people_ids) if people_ids else {}
    for events in by_transport.values():
        for event in events:
            event["record"] = record_dict(event["record"], people)
            if "before" in event:
                event["before"] = record_dict(event["before"], people)
            for change in event.get("changes", ()):
                if change["field"] == "references":
                    change["old"] = compare.ref_labels(change["old"])
                    change["new"] = compare.ref_labels(change["new"])
    return {"releases": [{k: r[k] for k in ("label", "date", "date_basis", "format", "records",
                                            "current")} for r in releases],
            "events": by_transport}


def unchanged_since_first(events: list[dict[str, Any]]) -> bool:
    """True when a transport's only events are records present, unchanged, in every release."""
    return all(e["kind"] == "present" for e in events)
