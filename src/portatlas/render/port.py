"""Terminal text of a registry answer: `portatlas PORT`, `portatlas RANGE`, `portatlas SERVICE`,
and the extra sections of a port answer (portatlas.sections) by their key.

On the start-up path of `portatlas PORT`: imports only the terminal helpers at module level.
"""

from __future__ import annotations

from portatlas.model import distinct_entries
from portatlas.render.terminal import Style, table, terminal_width, wrap

# section key (portatlas.sections.SECTIONS) -> (module, function) that renders its data
SECTION_RENDERERS = {
    "here": ("portatlas.render.here", "here_lines"),
    "history": ("portatlas.render.history", "section_lines"),
}


def section_lines(key: str, data: dict, style: Style) -> list[str]:
    """Terminal lines for one section's data; a section without a renderer shows nothing."""
    import importlib

    where = SECTION_RENDERERS.get(key)
    if where is None:
        return []
    return getattr(importlib.import_module(where[0]), where[1])(data, style)


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


def port_lines(answer, style: Style, modules: dict) -> list[str]:
    """The text of `portatlas PORT` (modules: the sections sections.collect filled in)."""
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
    for key in modules:
        out.append("")
        out += section_lines(key, answer.extra[key], style)
    return out


def entries_lines(title: str, entries, style: Style, source: str) -> list[str]:
    """The text of `portatlas RANGE` and `portatlas SERVICE`."""
    width = terminal_width()
    out = [style(title, "bold", "cyan") + f"  ·  {len(entries)} entries  ·  {source}", ""]
    for e in entries:
        where = f"{e.ports}/{e.transport}" if e.transport else (e.ports or "no port")
        out.append(style(where, "bold"))
        out += entry_lines(e, style, width)
    return out
