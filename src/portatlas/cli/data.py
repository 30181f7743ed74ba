"""`portatlas data update|info|diff`: manage the registry database."""

from __future__ import annotations

import os
import sys
import time

from portatlas.cli.common import parser
from portatlas.render.terminal import Style, print_json, table
from portatlas.errors import UsageError
from portatlas.cli.history import diff_main
from portatlas import paths
from portatlas.kb.build import build, choose_default_update_source
from portatlas.atlas import Atlas
from portatlas.history.rebuild import rebuild

USAGE = ("usage: portatlas data {update,info,diff,history} [options]\n\n"
         "  update [--from PATH|URL]  (re)build the database from a registry source\n"
         "  info                      what is loaded, from where, how old\n"
         "  diff OLD NEW              what changed between two registry releases\n"
         "  history                   import every registry release found into the timeline")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        # asked for (--help): stdout and 0; nothing given: a usage error, on stderr with 2
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if sub == "update":
        return update(rest)
    if sub == "info":
        return info(rest)
    if sub == "diff":
        return diff_main(rest)
    if sub == "history":
        return history(rest)
    raise UsageError(f"unknown data command {sub!r}; use update, info, diff or history")


def update(argv: list[str]) -> int:
    p = parser("portatlas data update", "Rebuild the database from IANA's registry (XML or CSV), "
               "a local file, or /etc/services. The old database stays until the new one is complete.")
    p.add_argument("--from", dest="source", metavar="PATH|URL",
                   help="registry file or URL (default: $PORTATLAS_REGISTRY, else IANA's "
                        "official XML URL)")
    args = p.parse_args(argv)

    db = paths.db_path(args.db)
    location = args.source or choose_default_update_source()
    started = time.monotonic()
    result = build(db, location)
    result["seconds"] = round(time.monotonic() - started, 3)
    if args.json:
        print_json({"schema": "portatlas.data-update/1", **result})
    else:
        print(f"built {db} in {result['seconds']:.2f}s")
        for src in result["sources"]:
            date = f", registry date {src['registry_date']}" if src.get("registry_date") else ""
            print(f"  {src['kind']}: {src['records']} records from {src['location']}{date}")
    return 0


def info(argv: list[str]) -> int:
    p = parser("portatlas data info", "What the database holds, where it came from, how old it is.")
    args = p.parse_args(argv)

    atlas = Atlas(args.db, autobuild=False)
    db = atlas.db_path
    meta = atlas.store.meta()
    prov = atlas.provenance()
    counts = dict(atlas.store.conn.execute(
        "SELECT 'entries', count(*) FROM entries UNION ALL SELECT 'people', count(*) FROM people "
        "UNION ALL SELECT 'trojans', count(*) FROM trojans UNION ALL SELECT 'nmap', count(*) FROM nmap"
    ).fetchall())
    age_days = None
    registry = next((p for p in prov if p["kind"] in ("iana-registry", "etc-services")), None)
    if registry and registry.get("registry_date"):
        try:
            then = time.mktime(time.strptime(registry["registry_date"][:10], "%Y-%m-%d"))
            age_days = int((time.time() - then) // 86400)
        except ValueError:
            pass
    data = {"schema": "portatlas.data-info/1", "database": str(db),
            "size_bytes": os.path.getsize(db), "built_at": meta.get("built_at"),
            "schema_version": meta.get("schema_version"), "source": atlas.source_label,
            "registry_age_days": age_days, "counts": counts, "provenance": prov,
            "search_order": paths.registry_candidates() + [paths.ETC_SERVICES]}
    if args.json:
        print_json(data)
        return 0
    style = Style()
    print(style("database", "bold") + f"  {db} ({data['size_bytes'] // 1024} KiB, built {data['built_at']})")
    print(style("source", "bold") + f"    {atlas.source_label}"
          + (f", {age_days} days old" if age_days is not None else ""))
    print(style("counts", "bold") + "    " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    rows = [[p["kind"], str(p["records"]), p["registry_date"] or "-", (p["sha256"] or "")[:12],
             p["location"]] for p in prov]
    print()
    print("\n".join(table(rows, ["kind", "records", "date", "sha256", "location"], style)))
    return 0


def history(argv: list[str]) -> int:
    p = parser("portatlas data history", "Import every registry release found (see "
               "docs/history.md) into the database's timeline, keeping the registry as it is. "
               "Releases already in the database are reused; new ones are parsed.")
    args = p.parse_args(argv)

    result = rebuild(paths.db_path(args.db))
    if args.json:
        print_json(result)
        return 0
    older = [r for r in result["releases"] if not r["current"]]
    print(f"history of {result['database']}: {len(result['releases'])} releases "
          f"({len(older)} older + {'the current one' if len(older) < len(result['releases']) else 'no current one'}) "
          f"in {result['seconds']:.2f}s")
    print(f"  {result['parsed']} parsed, {result['reused']} reused from the database, "
          f"{len(result['skipped'])} skipped; {result['records_parsed']} records parsed, "
          f"{result['records_reused']} recognised from earlier releases")
    if result["releases"]:
        first, last = result["releases"][0], result["releases"][-1]
        print(f"  from {first['label']} to {last['label']}")
    return 0
