"""`portatlas PORT|RANGE|SERVICE`: the registry's answer plus context."""

from __future__ import annotations

from portatlas.cli import open_atlas
from portatlas.errors import EXIT_NOT_FOUND, UsageError
from portatlas.render.port import entries_lines, port_lines
from portatlas.render.terminal import Style, print_json
from portatlas.atlas import PortAnswer, RangeAnswer
from portatlas.sections import collect

_FLAGS = {"--json": "json", "--no-local": "no_local", "--no-history": "no_history"}
_VALUED = {"--db": "db", "-t": "transport", "--transport": "transport"}


class _Args:
    query: str | None = None
    json = no_local = no_history = False
    db: str | None = None
    transport: str | None = None


def _quick_parse(argv: list[str]) -> _Args | None:
    """The common shapes (`57`, `57/tcp --json`) without argparse, whose set-up and gettext
    look-ups cost more than the whole answer; anything else goes to argparse."""
    args = _Args()
    items = iter(argv)
    for item in items:
        if item in _FLAGS:
            setattr(args, _FLAGS[item], True)
        elif item in _VALUED:
            value = next(items, None)
            if value is None:
                return None
            setattr(args, _VALUED[item], value)
        elif item.startswith("-") and not item[1:2].isdigit() or args.query is not None:
            return None
        else:
            args.query = item
    return args


def _full_parse(argv: list[str]):
    # lazy: argparse (cli.common) only for shapes _quick_parse leaves to it; `57` skips it
    from portatlas.cli.common import parser

    p = parser("portatlas", "What runs on a port: portatlas 57, 57/tcp, 6000-6010, http")
    p.add_argument("query", nargs="?", help="port, port/transport, range or service name")
    p.add_argument("-t", "--transport", help="only this transport (tcp, udp, sctp, dccp)")
    p.add_argument("--no-local", action="store_true", help="leave out what listens here")
    p.add_argument("--no-history", action="store_true", help="leave out history and de-facto use")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _quick_parse(argv) or _full_parse(argv)
    if args.query is None:
        raise UsageError("give a port (57), port/transport (57/tcp), range or service name")
    atlas = open_atlas(args.db)

    answer = atlas.query(args.query, args.transport)
    modules = {}
    if isinstance(answer, PortAnswer):
        skip = tuple(k for k, off in (("here", args.no_local), ("history", args.no_history)) if off)
        modules = collect(answer, skip)
    if args.json:
        print_json(answer.to_dict())
    else:
        style = Style()
        if isinstance(answer, PortAnswer):
            lines = port_lines(answer, style, modules)
        elif isinstance(answer, RangeAnswer):
            lines = entries_lines(f"{answer.lo}-{answer.hi}", answer.entries, style, atlas.source_label)
        else:
            lines = entries_lines(f"service {answer.name}", answer.entries, style, atlas.source_label)
        print("\n".join(lines))
    if isinstance(answer, PortAnswer) and not answer.found:
        return EXIT_NOT_FOUND
    return 0
