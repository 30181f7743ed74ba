"""The "here" section of a port answer (`portatlas PORT`): what listens on that port on this
machine. Its own small module: it is rendered on every lookup, and the socket helpers of
render.local (regular expressions, typing) are imported only when something listens.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any


def here_lines(data: dict[str, Any], style) -> list[str]:
    """The \"here\" section of a port answer (data from portatlas.local.here.section)."""
    out = [style("Here", "bold") + style("  (this machine: portatlas local for everything)", "dim")]
    transports = "/".join(data["transports"]) or "-"
    if data["listening"] is False:
        out.append(f"  Nothing listens on {data['port']} here ({transports}, IPv4 and IPv6).")
    elif data["sockets"]:
        # only when something listens: render.local is not free at start-up (see above)
        from portatlas.render.local import (command_of, endpoint, name_of, owner_label,
                                            printable, where_from)

        for sock in data["sockets"]:
            line = (f"  {sock['transport']}  {endpoint(sock)}  {sock['state']}  "
                    f"{sock['exposure']}")
            if sock["stack"] in ("dual-stack", "ipv6-only"):
                line += f" ({sock['stack']})"
            out.append(line)
            for proc in sock["processes"]:
                facts = [f"pid {proc['pid']}", name_of(proc),
                         f"user {owner_label(proc, sock)}"]
                place = where_from(proc)
                if place:
                    facts.append(("container " if proc.get("container") else "unit ") + place)
                out.append("      " + "  ".join(facts))
                command = command_of(proc)
                if command:
                    out.append("        " + style(command, "dim"))
            if not sock["processes"]:
                out.append("      " + style(f"process not visible (socket owner "
                                            f"{owner_label(None, sock)})", "dim"))
            for flag in sock.get("flags") or ():
                out.append("      " + style(flag["flag"], "yellow") + f": {printable(flag['text'])}")
            if sock.get("reachability"):
                # lazy: render.exposure only for listeners with reachability details
                from portatlas.render.exposure import detail_lines

                out += detail_lines(sock["reachability"], style)
    for warning in data["warnings"]:
        out.append("  " + style("note: ", "yellow") + warning["text"])
    return out
