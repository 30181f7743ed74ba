"""`portatlas PORT|RANGE|SERVICE`: the registry's answer plus context."""

from __future__ import annotations

from portatlas.cli import open_atlas
from portatlas.cli.output import Style, print_json, table, terminal_width, wrap
from portatlas.errors import EXIT_NOT_FOUND, UsageError
from portatlas.model import distinct_entries

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
    from portatlas.atlas import PortAnswer, RangeAnswer

    answer = atlas.query(args.query, args.transport)
    modules = {}
    if isinstance(answer, PortAnswer):
        from portatlas.sections import collect

        skip = tuple(k for k, off in (("here", args.no_local), ("history", args.no_history)) if off)
        modules = collect(answer, skip)
    if args.json:
        print_json(answer.to_dict())
    else:
        style = Style()
        if isinstance(answer, PortAnswer):
            lines = render_port(answer, style, modules)
        elif isinstance(answer, RangeAnswer):
            lines = render_entries(f"{answer.lo}-{answer.hi}", answer.entries, style, atlas.source_label)
        else:
            lines = render_entries(f"service {answer.name}", answer.entries, style, atlas.source_label)
        print("\n".join(lines))
    if isinstance(answer, PortAnswer) and not answer.found:
        return EXIT_NOT_FOUND
    return 0


def _person(p) -> str:
    return p.display + (f" <{p.email}>" if p.email else "")


def entry_lines(e, style: Style, width: int, indent: str = "    ") -> list[str]:
    head = style(e.service or "(no service name)", "bold") if e.service else style("(no service name)", "dim")
    status = "" if e.status == "assigned" else "  " + style(f"[{e.status}]", "yellow")
    ports = f"  ports {e.ports}" if e.is_range else ""
    lines = [f"  {head}  {e.description}{ports}{status}"]
    facts = []
    if e.assignee:
        facts.append(f"assignee {_person(e.assignee)}")
    if e.contact and (not e.assignee or e.contact.id != e.assignee.id):
        facts.append(f"contact {_person(e.contact)}")
    if e.registered:
        facts.append(f"registered {e.registered}")
    if e.modified:
        facts.append(f"modified {e.modified}")
    if e.service_code:
        facts.append(f"service code {e.service_code}")
    if facts:
        lines += wrap("; ".join(facts), width, indent)
    for ref in e.references:
        if ref.kind == "person":
            continue
        lines.append(f"{indent}ref {ref.label}" + (f"  {style(ref.url, 'blue')}" if ref.url else ""))
    if e.alias_of:
        lines.append(f"{indent}alias of {e.alias_of}")
    if e.notes:
        lines += wrap("note: " + e.notes, width, indent)
    if e.unauthorized:
        lines += wrap(style("unauthorized use reported: ", "red") + e.unauthorized, width, indent)
    if e.source != "iana-xml":
        lines.append(f"{indent}{style('source: ' + e.source, 'dim')}")
    return lines


def render_port(answer, style: Style, modules: dict) -> list[str]:
    width = terminal_width()
    rc = answer.range_class
    transports = ", ".join(answer.by_transport) or (answer.transport or "any transport")
    out = [style(f"Port {answer.port}", "bold", "cyan") + f"  ({transports})  "
           + f"{rc.name} port  ·  {answer.atlas.source_label}"]
    if answer.atlas.is_fallback:
        out.append(style("  Data from the OS services file, not the IANA registry.", "yellow"))
    out.append("")
    status = answer.status
    grouped = answer.by_transport
    if not grouped:
        out.append(f"  No registry entry for {answer.port}"
                   + (f"/{answer.transport}" if answer.transport else "") + ": unassigned.")
    for transport, entries in grouped.items():
        out.append(style(transport.upper(), "bold") + f"  {status.get(transport, 'unassigned')}")
        for e in entries:
            out += entry_lines(e, style, width)
        out.append("")
    out.append(style("Range", "bold") + f"  {rc.name} ({rc.lo}-{rc.hi})")
    out += wrap(rc.meaning, width, "  ")
    nmap = answer.nmap
    if nmap:
        out.append("")
        out.append(style("Seen open (nmap-services)", "bold"))
        for t, (name, freq) in nmap.items():
            out.append(f"  {t}: {name}, open on {freq * 100:.4f}% of scanned hosts")
    trojans = answer.trojans
    if trojans:
        from portatlas.kb.trojans import CAVEAT

        out.append("")
        out.append(style("Historic trojan associations", "bold"))
        for t, names in trojans.items():
            out += wrap(f"{t}: " + ", ".join(names), width, "  ")
        out += wrap(style(CAVEAT, "dim"), width, "  ")
    out.append("")
    out.append(style("Neighbours", "bold"))
    rows = []
    for n, entries in answer.neighbours:
        if not entries:
            rows.append([f"  {n}", "-", "unassigned"])
        for e in distinct_entries(entries):
            rows.append([f"  {n}", e.service or "-", e.description + (f" ({e.ports})" if e.is_range else "")])
    out += table(rows)
    out.append("")
    out.append(style("Check it yourself", "bold") + style("  (HOST = the machine to test)", "dim"))
    for os_name, kinds in answer.howto.items():
        label = {"linux": "Linux", "macos": "macOS", "windows": "Windows"}[os_name]
        for kind in ("local", "remote"):
            for cmd in kinds[kind]:
                out.append(f"  {label:<8}{kind:<7} {cmd}")
    for key, module in modules.items():
        out.append("")
        out += module.render(answer.extra[key], style)
    return out


def render_entries(title: str, entries, style: Style, source: str) -> list[str]:
    width = terminal_width()
    out = [style(title, "bold", "cyan") + f"  ·  {len(entries)} entries  ·  {source}", ""]
    for e in entries:
        where = f"{e.ports}/{e.transport}" if e.transport else (e.ports or "no port")
        out.append(style(where, "bold"))
        out += entry_lines(e, style, width)
    return out
