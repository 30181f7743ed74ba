"""Changes over time: snapshots of this machine's listeners and of named network scans,
stored in a SQLite file of their own, and what appeared, disappeared or changed between them.

Public API (both front ends use it; docs/changes.md has the JSON schema):

    items = local_items(report)            # a `portatlas.local/1` report -> {key: Item}
    items = scan_items(report)             # a `portatlas.scan/1` report  -> {key: Item}
    store = SnapshotStore(snapshot_path(db))
    saved = store.save("local", name, taken_at, items)      # -> Saved (id, changes vs previous)
    diff(before_items, after_items) -> list[Change]
    history = store.changes(kind, name, since=..., until=...)  # -> list[Interval]

Everything here works on the documented JSON documents of `local` and `scan`, not on their
internal objects, so a snapshot stays readable when those internals move.
"""

from __future__ import annotations

from portatlas.changes.diff import Change, FieldChange, Interval, diff
from portatlas.changes.items import Item, local_items, scan_items
from portatlas.changes.store import Saved, SnapshotInfo, SnapshotStore, snapshot_path
from portatlas.changes.when import parse_when

__all__ = ["Change", "FieldChange", "Interval", "Item", "Saved", "SnapshotInfo",
           "SnapshotStore", "diff", "local_items", "parse_when", "scan_items", "snapshot_path"]
