"""`portatlas changes`: what appeared, disappeared or changed between saved snapshots.

    portatlas changes [--since WHEN] [--until WHEN] [--host NAME] [--json]
    portatlas changes --scan NAME [--since WHEN] [--json]
    portatlas changes --list [--json]

Snapshots are saved by `portatlas local --save` (this machine's listeners) and
`portatlas scan ... --save NAME` (a network); docs/changes.md.
"""

from __future__ import annotations

from portatlas.cli.common import parser
from portatlas.render.changes import document_lines, safe
from portatlas.render.terminal import Style, print_json
from portatlas.errors import NotFound
from portatlas.stamps import host_name, utc_iso
from portatlas.changes import SnapshotStore, parse_when, snapshot_path

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
    args = build_parser().parse_args(argv)
    kind, name = ("scan", args.scan) if args.scan else ("local", args.host or host_name())
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
           "since": utc_iso(since) if since is not None else None,
           "until": utc_iso(until) if until is not None else None,
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


