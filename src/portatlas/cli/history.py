"""`portatlas history PORT[/TRANSPORT]` and `portatlas data diff OLD NEW`."""

from __future__ import annotations
import os

from portatlas.cli.common import open_atlas, parser
from portatlas.render.terminal import Style, print_json, table, terminal_width, wrap
from portatlas.errors import EXIT_NOT_FOUND, UsageError
from portatlas.parsing import parse_query
from portatlas.history.section import history_data
from portatlas.render.history import section_lines
from portatlas.history.diff import resolve, summarise
from portatlas.history.store import HistoryReader


def main(argv: list[str]) -> int:
    p = parser("portatlas history", "A port's registry history (computed from the imported IANA "
               "releases and the dates in their records) and our curated notes on its origin "
               "and real-world use.")
    p.add_argument("port", nargs="?", help="port or port/transport, e.g. 57 or 9200/tcp")
    p.add_argument("-t", "--transport", help="only this transport (tcp, udp, sctp, dccp)")
    args = p.parse_args(argv)
    if args.port is None:
        raise UsageError("give a port (57) or port/transport (57/tcp)")

    query = parse_query(args.port, args.transport)
    if query.kind != "port":
        what = "a range" if query.kind == "range" else "a service name"
        raise UsageError(f"{args.port!r} is {what}; history takes one port, e.g. 57 or 57/tcp"
                         + (f" (find its port with: portatlas {query.name})" if query.name else ""))
    atlas = open_atlas(args.db)

    data = history_data(atlas.store.conn, query.lo, query.transport)
    found = bool(data["registry_timeline"] or data["curated_history"] or data["de_facto_uses"])
    if args.json:
        print_json({"schema": "portatlas.history/1", "port": query.lo,
                    "transport": query.transport, **data})
    else:
        style = Style()
        where = f"{query.lo}/{query.transport}" if query.transport else str(query.lo)
        lines = [style(f"Port {where}", "bold", "cyan") + "  ·  history and real-world use", ""]
        lines += section_lines(data, style, compact=False)
        if data["releases"]:
            lines.append("")
            lines.append(style("Releases imported", "bold") + f"  ({len(data['releases'])})")
            lines += table([[f"  {r['label']}", r["format"], f"{r['records']} records" if r["records"] != "" else "",
                             "current" if r["current"] else ""]
                            for r in _some(data["releases"])])
        if data.get("releases_not_imported"):
            lines.append(style(f"  {data['releases_not_imported']} more releases were found but "
                               "not imported (quick first build): run 'portatlas data history'",
                               "dim"))
        print("\n".join(lines))
    return 0 if found else EXIT_NOT_FOUND


def _some(releases: list[dict], edge: int = 3) -> list[dict]:
    """The first and last few releases, with a "…" row between when there are many."""
    if len(releases) <= 2 * edge + 1:
        return releases
    gap = {"label": f"… {len(releases) - 2 * edge} more", "format": "", "records": "",
           "current": False}
    return releases[:edge] + [gap] + releases[-edge:]


def diff_main(argv: list[str]) -> int:
    p = parser("portatlas data diff", "What changed between two registry releases: records "
               "added, removed and changed, by range class. OLD and NEW are release files (XML "
               "or CSV) or releases the database knows: a date such as 2017-03-10, or current, "
               "previous, oldest.")
    p.add_argument("old", nargs="?", help="the older release (file, date, or alias)")
    p.add_argument("new", nargs="?", help="the newer release (file, date, or alias)")
    p.add_argument("--limit", type=int, default=15, metavar="N",
                   help="records listed per kind in the text output (default 15; 0 for counts only)")
    p.add_argument("--all", action="store_true", help="list every record in the text output")
    args = p.parse_args(argv)
    if args.old is None or args.new is None:
        raise UsageError("give two releases: portatlas data diff OLD NEW "
                         "(files, or dates known to the database such as 2017-03-10, or current)")
    if args.limit < 0:
        raise UsageError("--limit must be 0 or more")

    reader = None
    if not (_looks_like_file(args.old) and _looks_like_file(args.new)):
        reader = HistoryReader(open_atlas(args.db).store.conn)
    old, new = resolve(args.old, reader), resolve(args.new, reader)
    result = summarise(old, new)
    if args.json:
        print_json(result)
        return 0
    print("\n".join(_diff_lines(result, Style(), None if args.all else args.limit)))
    return 0


def _looks_like_file(spec: str) -> bool:
    return os.path.isfile(spec)


def _diff_lines(result: dict, style: Style, limit: int | None) -> list[str]:
    width = terminal_width()
    old, new = result["old"], result["new"]
    out = [style(f"Registry diff {old['label']} → {new['label']}", "bold", "cyan"),
           style(f"  old: {old['location']} ({old['records']} records)", "dim"),
           style(f"  new: {new['location']} ({new['records']} records)", "dim"), ""]
    counts = result["counts"]
    rows = []
    for name, per in result["by_range_class"].items():
        label = "no port" if name == "none" else name
        rows.append([f"  {label}", str(per["added"]), str(per["removed"]), str(per["changed"])])
    rows.append(["  total", str(counts["added"]), str(counts["removed"]), str(counts["changed"])])
    out += table(rows, ["  range class", "added", "removed", "changed"], style)
    out.append(f"  {counts['unchanged']} records unchanged")
    if result["status_changes"]:
        out.append("")
        out += wrap("status changes: " + ", ".join(f"{k} {v}" for k, v in result["status_changes"].items()),
                    width, "  ")
    if result["changed_fields"]:
        out += wrap("changed fields: " + ", ".join(f"{k} {v}" for k, v in result["changed_fields"].items()),
                    width, "  ")
    for kind in ("added", "removed", "changed"):
        items = result[kind]
        if not items or limit == 0:
            continue
        shown = items if limit is None else items[:limit]
        out.append("")
        out.append(style(kind.capitalize(), "bold") + f"  ({len(items)})")
        for item in shown:
            where = (f"{item['ports']}/{item['transport']}" if item["ports"] and item["transport"]
                     else item["ports"] or (f"no port/{item['transport']}" if item["transport"] else "no port"))
            text = f"{where:<14} {item['service'] or '(no service name)'}: {item['description']}"
            if kind == "changed":
                text += "  [" + ", ".join(c["field"] for c in item["changes"]) + "]"
            out += wrap(text, width, "  ")
        if limit is not None and len(items) > limit:
            out.append(style(f"  … {len(items) - limit} more (--all, or --json for everything)", "dim"))
    return out
