"""What changed between two snapshots' items."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from portatlas.changes.items import Item, expand_compact

APPEARED, DISAPPEARED, CHANGED = "appeared", "disappeared", "changed"

# facet -> the word a person reads; the order is the order they are told in
FACET_WORDS = {
    "status": "host status",
    "state": "state",
    "process": "process",
    "user": "user",
    "binary": "binary",
    "exposure": "exposure",
    "reachability": "reachability",
    "identification": "identification",
    "pids": "restarted",
}


@dataclass(frozen=True)
class FieldChange:
    facet: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"facet": self.facet, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class Change:
    change: str              # appeared | disappeared | changed
    key: str
    label: str
    facets: dict[str, Any]   # the item as it is now (as it was, for 'disappeared')
    fields: tuple[FieldChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.change, "key": self.key, "label": self.label,
                "facets": self.facets, "fields": [f.to_dict() for f in self.fields]}


@dataclass
class Interval:
    """The changes between two consecutive snapshots (`before` is None for the first one)."""

    before: dict[str, Any] | None
    after: dict[str, Any]
    changes: list[Change] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after,
                "changes": [c.to_dict() for c in self.changes]}


def diff(before: dict[str, Item], after: dict[str, Item],
         covered: Callable[[str], bool] | None = None) -> list[Change]:
    """Appeared, disappeared and changed items, in key order (hosts before their ports).
    `covered(key)` says whether both looks could have seen the key (two scans of different
    ports or hosts): a port the later scan did not probe has not disappeared."""
    out: list[Change] = []
    for key in sorted(before.keys() | after.keys(), key=_order):
        if covered is not None and not covered(key):
            continue
        old, new = before.get(key), after.get(key)
        if old is None:
            out.append(Change(APPEARED, key, new.label, new.facets))
        elif new is None:
            out.append(Change(DISAPPEARED, key, old.label, old.facets))
        else:
            fields = tuple(FieldChange(f, old.facets.get(f), new.facets.get(f))
                           for f in _facet_order(old.facets, new.facets)
                           if old.facets.get(f) != new.facets.get(f))
            if fields:
                out.append(Change(CHANGED, key, new.label, new.facets, fields))
    return out


def _facet_order(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    names = a.keys() | b.keys()
    known = [f for f in FACET_WORDS if f in names]
    return known + sorted(names - set(known))


def _order(key: str) -> tuple:
    """'host 198.18.0.2' first, then its ports by number; the rest by transport, address, port."""
    kind, _, rest = key.partition(" ")
    address, _, port = rest.rpartition(" ")
    if kind == "host":
        return (rest, 0, "", 0)
    return (address, 1, kind, int(port) if port.isdigit() else 0)


def scan_coverage(meta_a: dict[str, Any], meta_b: dict[str, Any]) -> Callable[[str], bool] | None:
    """For two scan snapshots: a predicate true for keys both scans covered (hosts and ports),
    or None when either snapshot does not say what it covered."""
    try:
        hosts = set(meta_a["hosts"]) & set(meta_b["hosts"])
        ports = {t: set(expand_compact(meta_a["ports"].get(t) or ""))
                 & set(expand_compact(meta_b["ports"].get(t) or ""))
                 for t in set(meta_a["ports"]) | set(meta_b["ports"])}
    except (KeyError, TypeError, AttributeError):
        return None

    def covered(key: str) -> bool:
        kind, _, rest = key.partition(" ")
        if kind == "host":
            return rest in hosts
        address, _, port = rest.rpartition(" ")
        return address in hosts and port.isdigit() and int(port) in ports.get(kind, ())

    return covered
