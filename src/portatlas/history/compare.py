"""Comparing two registry releases: which records are the same record, and what changed.

A release is a list of *history records*: plain tuples (cheap to build, store, pickle and
compare) with the fields below, one per registry record. "Unassigned" rows are left out:
they are the registry's way of listing the gaps between assignments and move whenever a
neighbour is assigned, so they carry no history of their own.

Record identity (docs/history.md, "How releases are compared"):
  1. (service name in lower case, first port, last port, transport) — plus an occurrence
     number for the rare exact duplicates (e.g. the two port-less "rdp" records);
  2. what is left on either side is paired by (first port, last port, transport) — so a
     renamed or de-assigned record (compressnet -> Reserved on port 2) is one record that
     changed, not one removed and one added. Within such a group the most similar records
     are paired first.
Anything still unpaired was added (only in the newer release) or removed (only in the older).
"""

from __future__ import annotations
from portatlas.model import Reference

TYPE_CHECKING = False  # typing is not imported on the lookup path
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# positions in a history record tuple
SERVICE, PORT_LO, PORT_HI, TRANSPORT, DESCRIPTION, STATUS, ASSIGNEE, CONTACT, REGISTERED, \
    MODIFIED, REFS, NOTES, UNAUTHORIZED, SERVICE_CODE = range(14)
WIDTH = 14

# fields whose difference makes a record "changed", by the name used in JSON output
COMPARED = (("service", SERVICE), ("description", DESCRIPTION), ("assignee", ASSIGNEE),
            ("contact", CONTACT), ("references", REFS), ("registered", REGISTERED),
            ("modified", MODIFIED), ("notes", NOTES), ("unauthorized_use", UNAUTHORIZED),
            ("service_code", SERVICE_CODE))
_TEXT_FIELDS = {DESCRIPTION, NOTES, UNAUTHORIZED}

# separators of the compact reference encoding (same idea as kb.store: no JSON needed)
_RS, _US = "\x1e", "\x1f"

Record = tuple


def encode_refs(refs: Iterable) -> str:
    """References as one string, sorted so that their order in the file does not matter."""
    items = sorted({(r.kind, r.value.lower(), r.section or "") for r in refs})
    return _RS.join(f"{k}{_US}{v}{_US}{s}" for k, v, s in items)


def decode_refs(text: str | None) -> list[tuple[str, str, str | None]]:
    if not text:
        return []
    out = []
    for item in text.split(_RS):
        kind, value, section = item.split(_US)
        out.append((kind, value, section or None))
    return out


def ref_labels(encoded: object) -> list[str]:
    """Readable labels ("RFC 793, section 3") of encoded references, people left out."""

    if not isinstance(encoded, str):
        return []
    return [Reference(k, v, s).label for k, v, s in decode_refs(encoded) if k != "person"]


def from_entry(entry) -> Record | None:
    """The history record of a registry Entry; None for an "Unassigned" gap row."""
    if entry.status == "unassigned":
        return None
    return (entry.service, entry.port_lo, entry.port_hi, entry.transport,
            entry.description or "", entry.status,
            entry.assignee.id if entry.assignee else None,
            entry.contact.id if entry.contact else None,
            entry.registered, entry.modified, encode_refs(entry.references), entry.notes,
            entry.unauthorized, entry.service_code)


def _norm(value) -> object:
    if isinstance(value, str):
        return " ".join(value.split())
    return value


def field_value(record: Record, index: int) -> object:
    value = record[index]
    if index in _TEXT_FIELDS:
        value = _norm(value) or None
    elif value == "":
        value = None
    return value


def changes(old: Record, new: Record) -> list[tuple[str, object, object]]:
    """(field, old value, new value) for every compared field that differs."""
    out = []
    for name, index in COMPARED:
        a, b = field_value(old, index), field_value(new, index)
        if a != b:
            out.append((name, a, b))
    return out


def sort_key(record: Record) -> tuple:
    """A total order on records (None sorts first) so that matching never depends on file order."""
    return tuple((0, "") if v is None else (1, v) for v in record)


def _identity(records: Sequence[Record]) -> dict[tuple, Record]:
    counts: dict[tuple, int] = {}
    keyed = {}
    for record in sorted(records, key=sort_key):
        base = ((record[SERVICE] or "").lower(), record[PORT_LO], record[PORT_HI], record[TRANSPORT])
        n = counts.get(base, 0)
        counts[base] = n + 1
        keyed[base + (n,)] = record
    return keyed


def _similarity(a: Record, b: Record) -> int:
    return sum(1 for _, i in COMPARED if field_value(a, i) == field_value(b, i))


def match(old: Sequence[Record], new: Sequence[Record]
          ) -> tuple[list[tuple[Record, Record]], list[Record], list[Record]]:
    """Pairs (old, new) of the same record, then the removed and the added records."""
    old_keyed, new_keyed = _identity(old), _identity(new)
    pairs = [(old_keyed[k], new_keyed[k]) for k in old_keyed if k in new_keyed]
    old_left = [r for k, r in old_keyed.items() if k not in new_keyed]
    new_left = [r for k, r in new_keyed.items() if k not in old_keyed]
    if not old_left or not new_left:
        return pairs, old_left, new_left
    # second pass: same ports and transport, different name (renamed, de-assigned, reserved)
    groups: dict[tuple, list[Record]] = {}
    for record in new_left:
        if record[PORT_LO] is not None:
            groups.setdefault((record[PORT_LO], record[PORT_HI], record[TRANSPORT]), []).append(record)
    removed = []
    paired_new: set[int] = set()
    for record in old_left:
        candidates = groups.get((record[PORT_LO], record[PORT_HI], record[TRANSPORT])) \
            if record[PORT_LO] is not None else None
        if not candidates:
            removed.append(record)
            continue
        best = max(range(len(candidates)), key=lambda i: (_similarity(record, candidates[i]), -i))
        partner = candidates.pop(best)
        paired_new.add(id(partner))
        pairs.append((record, partner))
    added = [r for r in new_left if id(r) not in paired_new]
    return pairs, removed, added


def range_class_name(record: Record) -> str:
    """system, user or dynamic by the first port (RFC 6335); "none" for a port-less record."""
    lo = record[PORT_LO]
    if lo is None:
        return "none"
    if lo <= 1023:
        return "system"
    if lo <= 49151:
        return "user"
    return "dynamic"


def ports_label(record: Record) -> str | None:
    lo, hi = record[PORT_LO], record[PORT_HI]
    if lo is None:
        return None
    return str(lo) if lo == hi else f"{lo}-{hi}"


def covers(record: Record, port: int, transport: str | None) -> bool:
    lo, hi = record[PORT_LO], record[PORT_HI]
    return (lo is not None and lo <= port <= hi
            and (transport is None or record[TRANSPORT] in (transport, None)))
