"""`portatlas search TEXT`: ranked free-text search of the registry and our curated notes."""

from __future__ import annotations

from portatlas.cli.common import open_atlas, parser
from portatlas.render.terminal import Style, print_json, table
from portatlas.errors import EXIT_NOT_FOUND


def main(argv: list[str]) -> int:
    p = parser("portatlas search", "Ranked free-text search: portatlas search \"mail transfer\"")
    p.add_argument("text", nargs="+", help="words to look for")
    p.add_argument("-n", "--limit", type=int, default=20, help="at most this many results (20)")
    args = p.parse_args(argv)
    atlas = open_atlas(args.db)
    text = " ".join(args.text)
    hits = atlas.search(text, args.limit)
    if args.json:
        print_json({"schema": "portatlas.search/1", "query": text, "source": atlas.source_label,
                    "results": [h.to_dict() for h in hits]})
    else:
        style = Style()
        if not hits:
            print(f"nothing in the registry or the notes matches {text!r}")
        rows = []
        for h in hits:
            if h.entry is not None:
                rows.append([h.entry.ports or "-", h.entry.transport or "-",
                             h.entry.service or "-", h.entry.description])
            else:
                note = h.note or {}
                rows.append([str(h.port), "/".join(note.get("transports", [])) or "-",
                             "[note]", note.get("title", "")])
        print("\n".join(table(rows, ["port", "proto", "service", "description"], style)))
        if any(h.entry is None for h in hits):
            print(style("[note]: portatlas's own note on the port, with sources "
                        "(portatlas history PORT shows it)", "dim"))
    return 0 if hits else EXIT_NOT_FOUND
