"""Terminal text for `portatlas local`: sockets, from their JSON-ready dicts (so the CLI, the
"here" section of a port answer and --watch all print the same way)."""

from __future__ import annotations

import sys
import time
from typing import Any

from portatlas.local.model import format_endpoint
from portatlas.render.terminal import Style, terminal_width
from portatlas.textsafe import TAG, printable, visible  # noqa: F401  (printable: this module's vocabulary)
from portatlas.render.exposure import cell, detail_lines, summary_lines


def endpoint(sock: dict[str, Any]) -> str:
    return format_endpoint(sock["address"], sock["port"], sock.get("interface"),
                           sock.get("stack") == "dual-stack")


def peer(sock: dict[str, Any]) -> str:
    if sock.get("remote_address") is None:
        return "*"
    return format_endpoint(sock["remote_address"], sock["remote_port"] or 0, None, False)


def registered(sock: dict[str, Any]) -> str:
    """The registered service names, one per distinct service: 80 is registered as http, www
    and www-http, all "World Wide Web HTTP", and shows as http."""
    names, seen = [], set()
    for s in sock.get("services") or ():
        what = s.get("description") or s.get("service")
        if what in seen:
            continue
        seen.add(what)
        names.append(s.get("service") or s.get("description") or "?")
    if not names:
        return "-"
    label = ",".join(names)
    if sock.get("expected_program") is False:
        label += "?"
    return label


def owner_label(proc: dict[str, Any] | None, sock: dict[str, Any]) -> str:
    if proc is not None and proc.get("user"):
        return printable(proc["user"])
    return printable(sock.get("user")) or (str(sock["uid"]) if sock.get("uid") is not None else "?")


def where_from(proc: dict[str, Any]) -> str:
    """The systemd unit or container a process belongs to, in a few characters."""
    container = proc.get("container")
    if container:
        return printable(f"{container['runtime']}:{container['id']}")
    return printable(proc.get("unit"))


def socket_rows(sockets: list[dict[str, Any]], *, peers: bool, style: Style,
                reach: bool = False) -> list[list[str]]:
    rows = []
    for sock in sockets:
        flags = ",".join(f["flag"] for f in sock.get("flags") or ())
        head = [sock["transport"], endpoint(sock)]
        if peers:
            head.append(peer(sock))
        head += [sock["state"], sock["exposure"]]
        if reach:
            head.append(cell(sock.get("reachability"), style))
        tail = [registered(sock), style(flags, "yellow") if flags else ""]
        procs = sock.get("processes") or [None]
        for n, proc in enumerate(procs):
            if proc is None:
                who = ["-", style("?", "dim"), owner_label(None, sock), "", style("(process not visible)", "dim")]
            else:
                who = [str(proc["pid"]), name_of(proc), owner_label(proc, sock),
                       where_from(proc), command_of(proc)]
            if n == 0:
                rows.append(head + who[:4] + tail + who[4:])
            else:
                rows.append([""] * len(head) + who[:4] + ["", ""] + who[4:])
    return rows


def command_of(proc: dict[str, Any]) -> str:
    if proc.get("cmdline"):
        return printable(" ".join(proc["cmdline"]))
    if proc.get("exe"):
        return printable(proc["exe"])
    return f"[{printable(proc['name'])}]" if proc.get("name") else ""


def name_of(proc: dict[str, Any]) -> str:
    return printable(proc.get("name")) or "?"


def headers(peers: bool, reach: bool = False) -> list[str]:
    return (["PROTO", "LOCAL"] + (["PEER"] if peers else [])
            + ["STATE", "EXPOSURE"] + (["REACH"] if reach else [])
            + ["PID", "PROGRAM", "USER", "UNIT", "REGISTERED", "FLAGS", "COMMAND"])


def socket_table(sockets: list[dict[str, Any]], *, peers: bool, style: Style,
                 width: int | None = None) -> list[str]:
    # REACH (portatlas.exposure's verdict) only when the report has it
    reach = any("reachability" in s for s in sockets)
    rows = socket_rows(sockets, peers=peers, style=style, reach=reach)
    lines = columns(rows, headers(peers, reach), style)
    if width:
        lines = [_cut(line, width) for line in lines]
    return lines


def _visible_len(cell: str) -> int:
    return len(visible(cell))


def columns(rows: list[list[str]], head: list[str], style: Style) -> list[str]:
    """Left-aligned columns two spaces apart, the last one unpadded (as render.terminal.table, but
    linear in the number of cells: a busy server's table has tens of thousands of them)."""
    count = len(head)
    measure = len if not style.enabled else _visible_len
    widths = [max(len(head[i]), max(map(measure, (row[i] for row in rows)), default=0))
              for i in range(count - 1)]
    lines = [style("  ".join([h.ljust(w) for h, w in zip(head, widths)] + [head[-1]]).rstrip(), "bold")]
    last = count - 1
    for row in rows:
        if measure is len:
            cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        else:
            cells = [cell + " " * (w - _visible_len(cell)) for cell, w in zip(row, widths)]
        cells.append(row[last])
        lines.append("  ".join(cells).rstrip())
    return lines


def _cut(line: str, width: int) -> str:
    """Shorten a line to the terminal width (only the COMMAND column, which is last, suffers)."""
    if TAG in line:
        return line  # coloured lines hold escapes; cutting them could leave a colour open
    return line if len(line) <= width else line[:width - 1] + "…"


def flag_lines(sockets: list[dict[str, Any]], style: Style) -> list[str]:
    """One line per flag: the socket, the flag, and what it means."""
    out = []
    for sock in sockets:
        for flag in sock.get("flags") or ():
            out.append(f"  {endpoint(sock)}/{sock['transport']}  "
                       + style(flag["flag"], "yellow") + f": {printable(flag['text'])}")
    return out


def long_lines(sock: dict[str, Any], style: Style) -> list[str]:
    """Everything about one socket, one fact per line (portatlas local --long)."""
    head = f"{sock['transport']} {endpoint(sock)}"
    if sock.get("remote_address") is not None:
        head += f" -> {peer(sock)}"
    out = [style(head, "bold") + f"  {sock['state']}  {sock['exposure']}  {sock['stack']}"
           + f"  owner {owner_label(None, sock)}"]
    services = sock.get("services")
    if services is not None:
        if services:
            for s in services:
                out.append(f"  registered  {s.get('service') or '(no name)'}: {s.get('description')}")
        else:
            out.append("  registered  nothing")
        if sock.get("expected_program") is not None:
            out.append("  program     " + ("commonly serves this service" if sock["expected_program"]
                                          else "not one commonly serving the registered service"))
    for proc in sock.get("processes") or ():
        facts = [f"pid {proc['pid']}", name_of(proc), f"user {owner_label(proc, sock)}"]
        if proc.get("fd") is not None:
            facts.append(f"fd {proc['fd']}")
        if proc.get("ppid") is not None:
            facts.append(f"parent {proc['ppid']}")
        place = where_from(proc)
        if place:
            facts.append(("container " if proc.get("container") else "unit ") + place)
        out.append("  process     " + "  ".join(facts))
        out.append(f"    exe       {printable(proc.get('exe')) or style('(not visible)', 'dim')}")
        out.append(f"    command   {command_of(proc) or style('(none)', 'dim')}")
        if proc.get("cgroup"):
            out.append(f"    cgroup    {printable(proc['cgroup'])}")
    if not sock.get("processes"):
        out.append("  process     " + style("not visible", "dim"))
    for flag in sock.get("flags") or ():
        out.append("  " + style("flag", "yellow") + f"        {flag['flag']}: {printable(flag['text'])}")
    if sock.get("reachability"):
        out.append("  reach")
        out += detail_lines(sock["reachability"], style, indent="    ", classes=True)
    return out


def warning_lines(warnings: list[dict[str, str]], style: Style) -> list[str]:
    return [style("note: ", "yellow") + printable(w["text"]) for w in warnings]


def report_lines(data: dict[str, Any], style: Style, long: bool = False) -> list[str]:
    """The text of `portatlas local` from a portatlas.local/1 report dict."""
    sockets = data["sockets"]
    what = "socket" if data["include_established"] else "listening socket"
    what += "s" if data["count"] != 1 else ""
    who = "as root" if data["privileged"] else "without root: other users' processes are hidden"
    procs = data["process_count"]
    out = [style(f"{data['count']} {what}", "bold")
           + f", {procs} process{'es' if procs != 1 else ''}  ·  {data['host']}  ·  {data['backend']}  ·  {who}"]
    if sockets:
        out.append("")
        if long:
            for sock in sockets:
                out += long_lines(sock, style)
                out.append("")
            out.pop()
        else:
            width = terminal_width() if sys.stdout.isatty() else None
            out += socket_table(sockets, peers=data["include_established"], style=style, width=width)
            flags = flag_lines(sockets, style)
            if flags:
                out += ["", style("Flags", "bold")] + flags
            if any(s.get("expected_program") is False for s in sockets):
                out += ["", style("REGISTERED x? = registered for x, but held by a program not "
                                  "known to serve x", "dim")]
    if any("reachability" in s for s in sockets) or "packet_filter" in data:
        out += summary_lines(sockets, data, style, endpoint)
    if data["warnings"]:
        out.append("")
        out += warning_lines(data["warnings"], style)
    return out


def event_line(event: str, sock: dict[str, Any], when: float, style: Style) -> str:
    """One line of `portatlas local --watch` (event: appeared, disappeared, changed)."""
    mark, colour = {"appeared": ("+", "green"), "disappeared": ("-", "red"),
                    "changed": ("~", "cyan")}[event]
    who = ", ".join(f"pid {p['pid']} {name_of(p)} ({owner_label(p, sock)})"
                    for p in sock["processes"]) or f"process not visible (owner {owner_label(None, sock)})"
    flags = ",".join(f["flag"] for f in sock.get("flags") or ())
    parts = [time.strftime("%H:%M:%S", time.localtime(when)), style(mark, colour, "bold"),
             sock["transport"], endpoint(sock), sock["state"], sock["exposure"],
             ("now held by " if event == "changed" else "") + who]
    if sock.get("services"):
        parts.append(f"registered {registered(sock)}")
    if flags:
        parts.append(style(f"[{flags}]", "yellow"))
    return "  ".join(parts)
