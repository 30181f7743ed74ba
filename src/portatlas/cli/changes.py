"""`portatlas changes`: what appeared, disappeared or changed between saved snapshots.

    portatlas changes [--since WHEN] [--until WHEN] [--host NAME] [--json]
    portatlas changes --scan NAME [--since WHEN] [--json]
    portatlas changes --list [--json]

Snapshots are saved by `portatlas local --save` (this machine's listeners) and
`portatlas scan ... --save NAME` (a network); docs/changes.md.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from portatlas.cli.common import parser
from portatlas.cli.output import Style, print_json
from portatlas.errors import NotFound

SCHEMA = "portatlas.changes/1"


def build_parser():
    p = parser("portatlas changes", "What appeared, disappeared or changed between saved "
                                    "snapshots of this machine's listeners or of a scan.")
    p.add_argument("--scan", metavar="NAME", help="snapshots of the scan saved as NAME "
                                                  "(default: this machine's listeners)")
    p.add_argument("--host", metavar="NAME", help="listeners saved on another host name "
                                                  "(default: this machine's)")
    p.add_argument("--since", metavar="WHEN", help="every change since WHEN (2026-12-01, "
                   "2026-12-01T09:30, 30m, 2h, 7d); default: the last two snapshots only")
    p.add_argument("--until", metavar="WHEN", help="only snapshots up to WHEN")
    p.add_argument("--list", action="store_true", help="list the saved snapshots instead")
    p.add_argument("--snapshots", metavar="PATH", help="snapshot file (default: beside the "
                   "database, or $PORTATLAS_SNAPSHOTS)")
    return p


def main(argv: list[str]) -> int:
    from portatlas.changes import SnapshotStore, parse_when, snapshot_path

    args = build_parser().parse_args(argv)
    kind, name = ("scan", args.scan) if args.scan else ("local", args.host or hostname())
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    path = args.snapshots or snapshot_path(args.db)
    with SnapshotStore(path, create=False) as store:
        if args.list:
            return list_snapshots(store, args.json)
        snaps = store.snapshots(kind, name)
        if not snaps:
            known = ", ".join(store.names(kind)) or "none"
            raise NotFound(f"no {'scan' if args.scan else 'listener'} snapshots saved as "
                           f"{name!r} (saved: {known})")
        intervals = store.changes(kind, name, since=since, until=until)
    doc = {"schema": SCHEMA, "kind": kind, "name": name,
           "since": _iso(since) if since is not None else None,
           "until": _iso(until) if until is not None else None,
           "intervals": [i.to_dict() for i in intervals]}
    if args.json:
        print_json(doc)
        return 0
    print("\n".join(document_lines(doc, Style())))
    return 0


def list_snapshots(store, as_json: bool) -> int:
    rows = [s.to_dict() for kind in ("local", "scan") for s in store.snapshots(kind)]
    if as_json:
        print_json({"schema": "portatlas.snapshots/1", "snapshots": rows})
        return 0
    for r in rows:
        print(f"{r['id']:>6}  {r['time']}  {r['kind']:<5}  {safe(r['name'])}  ({r['items']} items)")
    return 0


# -- text ----------------------------------------------------------------------------------------
def document_lines(doc: dict[str, Any], style) -> list[str]:
    what = f"scan {doc['name']!r}" if doc["kind"] == "scan" else f"listeners on {doc['name']}"
    intervals = doc["intervals"]
    if not intervals:
        return [f"{safe(what)}: only one snapshot so far; nothing to compare yet"]
    out = [style(f"Changes of {safe(what)}", "bold")
           + (f" since {doc['since']}" if doc["since"] else "")]
    for interval in intervals:
        span = f"{_short(interval['from']['time'])} → {_short(interval['to']['time'])}"
        if not interval["changes"]:
            out.append(style(f"{span}  no changes", "dim"))
            continue
        out.append(style(span, "bold"))
        out += ["  " + change_line(c, style) for c in interval["changes"]]
    return out


_MARKS = {"appeared": ("+", "green"), "disappeared": ("-", "red"), "changed": ("~", "cyan")}


def change_line(change: dict[str, Any], style) -> str:
    mark, colour = _MARKS[change["change"]]
    label = change["label"]
    facets = change["facets"]
    if change["change"] == "changed":
        told = "; ".join(f"{_facet_word(f['facet'])}: {_value(f['before'])} → {_value(f['after'])}"
                         for f in change["fields"])
    else:
        told = "  ".join(_value(facets[f]) for f in ("status", "state", "process", "exposure",
                                                     "reachability", "identification")
                         if facets.get(f) is not None)
    return f"{style(mark, colour, 'bold')} {safe(label):<28} {safe(told)}".rstrip()


def _facet_word(facet: str) -> str:
    from portatlas.changes.diff import FACET_WORDS

    return FACET_WORDS.get(facet, facet)


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "none"
    if isinstance(value, dict):
        if "verdict" in value:
            return str(value["verdict"])
        shown = [str(value[k]) for k in ("service", "protocol", "product", "version")
                 if value.get(k)]
        if shown:
            return " ".join(dict.fromkeys(shown))
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    return str(value)


def safe(text: str) -> str:
    """Control characters (from process names, banners) shown as escapes, never sent raw."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z") + " UTC"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def hostname() -> str:
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")
