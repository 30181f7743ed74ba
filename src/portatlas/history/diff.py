"""`portatlas data diff OLD NEW`: what changed between two registry releases.

OLD and NEW are each a release file (XML or CSV) or a release the database knows, named by
its label (its date, e.g. 2017-03-10), or "current", "oldest", "previous" (the release before
the current one). The comparison is compare.match: the counts are of records, not ports.
"""

from __future__ import annotations

import os
from typing import Any

from portatlas.errors import UsageError
from portatlas.history import compare
from portatlas.history.releases import parse_file

RANGE_CLASSES = ("system", "user", "dynamic", "none")
ALIASES = ("current", "oldest", "previous")


class Side:
    """One side of a comparison: release facts and its history records."""

    def __init__(self, info: dict[str, Any], records: list[tuple],
                 people: dict[str, tuple[str | None, str | None]] | None = None) -> None:
        self.info = info
        self.records = records
        self.people = people or {}


def resolve(spec: str, reader) -> Side:
    """A file path, or a release label/alias known to the database."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty release: give a file or a release date known to the database")
    known = reader.releases() if reader is not None else []
    by_label = {r["label"]: r for r in known}
    chosen = None
    if spec in by_label:
        chosen = by_label[spec]
    elif spec in ALIASES and known:
        current = [r for r in known if r["current"]]
        if spec == "oldest":
            chosen = known[0]
        elif spec == "current":
            chosen = current[0] if current else known[-1]
        else:
            top = (current[0] if current else known[-1])["idx"]
            if top == 0:
                raise UsageError("there is no release before the current one in this database")
            chosen = known[top - 1]
    if chosen is not None:
        info = {k: chosen[k] for k in ("label", "date", "date_basis", "location", "format",
                                       "sha256", "current")}
        info["from"] = "database"
        return Side(info, reader.release_records(chosen["idx"]))
    if os.path.exists(spec) or "/" in spec or spec.endswith((".xml", ".csv")):
        release = parse_file(spec)
        info = {k: v for k, v in release.info().items() if k != "records"}
        info["from"] = "file"
        return Side(info, release.records, release.people)
    labels = ", ".join([r["label"] for r in known] + list(ALIASES if known else ()))
    raise UsageError(f"{spec!r} is neither a file nor a release known to the database"
                     + (f" (known: {labels})" if labels else
                        " (this database holds no releases; run 'portatlas data update')"))


def summarise(old: Side, new: Side) -> dict[str, Any]:
    """Counts (overall and by range class), changed fields, status changes, and the lists."""
    pairs, removed, added = compare.match(old.records, new.records)
    changed = []
    unchanged = 0
    for a, b in pairs:
        diffs = compare.changes(a, b)
        if diffs:
            changed.append((a, b, diffs))
        else:
            unchanged += 1
    by_class = {c: {"added": 0, "removed": 0, "changed": 0} for c in RANGE_CLASSES}
    for record in added:
        by_class[compare.range_class_name(record)]["added"] += 1
    for record in removed:
        by_class[compare.range_class_name(record)]["removed"] += 1
    for _, b, _ in changed:
        by_class[compare.range_class_name(b)]["changed"] += 1
    fields: dict[str, int] = {}
    status: dict[str, int] = {}
    for a, b, diffs in changed:
        for name, _, _ in diffs:
            fields[name] = fields.get(name, 0) + 1
        if a[compare.STATUS] != b[compare.STATUS]:
            key = f"{a[compare.STATUS]}->{b[compare.STATUS]}"
            status[key] = status.get(key, 0) + 1
    return {
        "schema": "portatlas.data-diff/1",
        "old": dict(old.info, records=len(old.records)),
        "new": dict(new.info, records=len(new.records)),
        "counts": {"added": len(added), "removed": len(removed), "changed": len(changed),
                   "unchanged": unchanged},
        "by_range_class": by_class,
        "changed_fields": dict(sorted(fields.items())),
        "status_changes": dict(sorted(status.items())),
        "added": [_brief(r) for r in sorted(added, key=_port_order)],
        "removed": [_brief(r) for r in sorted(removed, key=_port_order)],
        "changed": [dict(_brief(b), changes=[{"field": f, "old": _plain(f, x), "new": _plain(f, y)}
                                             for f, x, y in diffs])
                    for _, b, diffs in sorted(changed, key=lambda c: _port_order(c[1]))],
    }


def _port_order(record: tuple) -> tuple:
    lo = record[compare.PORT_LO]
    return (lo is None, lo if lo is not None else 0) + compare.sort_key(record)


def _plain(field: str, value: Any) -> Any:
    if field == "references":
        return compare.ref_labels(value)
    return value


def _brief(record: tuple) -> dict[str, Any]:
    return {"service": record[compare.SERVICE], "ports": compare.ports_label(record),
            "transport": record[compare.TRANSPORT], "description": record[compare.DESCRIPTION],
            "status": record[compare.STATUS], "range_class": compare.range_class_name(record),
            "registered": record[compare.REGISTERED], "modified": record[compare.MODIFIED]}
