"""The `portatlas.local/1` report of a look at this machine: sorting, the JSON-ready document
and its fast --json writer, and the registry classification that flags sockets.

    report(snapshot, sort, reverse) -> dict    the document (docs/local.md); text is rendered
                                              from it (portatlas.render.local)
    write_json(snapshot, sort, reverse, stream)  the same document, written faster
    parse_sort("pid,port") -> ["pid", "port"]  the --sort / ?sort= words, checked
"""

from __future__ import annotations

import _socket
import json
import sys
from typing import Any

from portatlas.errors import UsageError
from portatlas.local import jsonout
from portatlas.local.classify import open_classifier
from portatlas.local.model import Notice, exposure_of
from portatlas.local.model import user_name as name
from portatlas.local.selection import Selection
from portatlas.stamps import host_name, utc_iso

SCHEMA = "portatlas.local/1"

# sort keys -> what a socket (as a report dict) is ordered by
SORT_KEYS = ("port", "transport", "address", "state", "exposure", "pid", "process", "user", "flags")
DEFAULT_SORT = ("port", "transport", "address")

_EXPOSURE_ORDER = {"wildcard": 0, "specific": 1, "loopback": 2}


def sort_sockets(snap, keys: list[str], reverse: bool = False) -> list:
    """The snapshot's sockets in the order --sort asks for (ties keep the kernel's order)."""
    addresses: dict[str, bytes] = {}

    def address(sock) -> tuple[str, bytes]:
        raw = addresses.get(sock.address)
        if raw is None:
            raw = addresses[sock.address] = _address_key(sock.address)
        return sock.family, raw

    def first(sock):
        return snap.processes.get(sock.holders[0].pid) if sock.holders else None

    getters = {
        "port": lambda s: s.port,
        "transport": lambda s: s.transport,
        "address": address,
        "state": lambda s: s.state,
        "exposure": lambda s: _EXPOSURE_ORDER[exposure_of(s.address, s.interface)],
        "pid": lambda s: s.holders[0].pid if s.holders else 0,
        "process": lambda s: ((first(s).name or "") if first(s) else "").lower(),
        "user": lambda s: (first(s).user if first(s) and first(s).user else None)
                          or (user_name(s.uid) or ""),
        "flags": lambda s: -len(s.flags),
    }
    # the default order breaks ties, so that equal keys still come out in a stable order
    keys = list(keys) + [k for k in DEFAULT_SORT if k not in keys]
    if keys == list(DEFAULT_SORT):
        # the common case, without a tuple of calls per socket
        def key(s):
            return s.port, s.transport, address(s)
    else:
        chosen = [getters[k] for k in keys]

        def key(s):
            return tuple(g(s) for g in chosen)
    return sorted(snap.sockets, key=key, reverse=reverse)


def user_name(uid):
    return name(uid)


def _address_key(address: str) -> bytes:
    """Addresses in numeric order (10.0.0.2 before 10.0.0.10)."""
    try:
        if ":" in address:
            return _socket.inet_pton(_socket.AF_INET6, address)
        return _socket.inet_pton(_socket.AF_INET, address)
    except (OSError, ValueError):
        return address.encode()


def parse_sort(text: str) -> list[str]:
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    for key in keys:
        if key not in SORT_KEYS:
            raise UsageError(f"unknown sort key {key!r}; use {', '.join(SORT_KEYS)}")
    return keys or list(DEFAULT_SORT)


def report_head(snap, sort: list[str], ordered: list) -> dict[str, Any]:
    selection = _selection_of(snap)
    return {
        "schema": SCHEMA,
        "host": host_name(),
        "time": utc_iso(snap.taken_at),
        "backend": snap.backend,
        "privileged": snap.privileged,
        "include_established": selection.everything,
        "selection": selection.describe(),
        "sort": sort,
        "count": len(ordered),
        "process_count": len({h.pid for s in ordered for h in s.holders}),
        **getattr(snap, "head_extras", {}),
    }


def report(snap, sort: list[str] | None = None, reverse: bool = False) -> dict[str, Any]:
    """The JSON-ready result of one look (schema portatlas.local/1, docs/local.md), for the
    selection the snapshot was taken with (query()). Text output is rendered from it; --json
    writes the same document faster (write_json, local.jsonout)."""
    sort = list(sort or DEFAULT_SORT)
    ordered = sort_sockets(snap, sort, reverse)
    data = report_head(snap, sort, ordered)
    data["sockets"] = [snap.socket_dict(s) for s in ordered]
    data["warnings"] = [w.to_dict() for w in snap.warnings]
    return data


def write_json(snap, sort: list[str] | None = None, reverse: bool = False, stream=None) -> None:
    """Write report(snap, sort, reverse) as --json does, without building the dicts."""
    sort = list(sort or DEFAULT_SORT)
    ordered = sort_sockets(snap, sort, reverse)
    jsonout.write_document(report_head(snap, sort, ordered),
                           jsonout.socket_lines(snap, ordered),
                           {"warnings": [w.to_dict() for w in snap.warnings]},
                           stream or sys.stdout)


def write_report_json(data: dict[str, Any], stream=None) -> None:
    """Write a report() dict (possibly with added fields) in the --json layout."""
    head = {k: v for k, v in data.items() if k not in ("sockets", "warnings")}
    jsonout.write_document(head, (jsonout.dumps(s) for s in data["sockets"]),
                           {"warnings": data["warnings"]}, stream or sys.stdout)


def _selection_of(snap):
    selection = getattr(snap, "selection", None)
    if selection is None:
        selection = Selection()
    return selection


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def classified(snap, db: str | None, classifier=None):
    """Classify a snapshot, opening the registry once (returns the classifier for reuse)."""
    if classifier is None:
        classifier = open_classifier(db, snap.warnings)
    elif classifier.atlas is None:
        snap.warnings.append(Notice("no-registry", "the port registry is not available; "
                                                   "listeners are shown without registry flags"))
    classifier.classify(snap)
    return classifier


