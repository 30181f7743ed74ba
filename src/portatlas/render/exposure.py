"""Terminal text for reachability (portatlas.exposure): the REACH cell, the lines under a
listener, and the "reachable from other machines" part of `portatlas local`."""

from __future__ import annotations

from typing import Any

from portatlas.textsafe import printable

COLOURS = {"exposed": "red", "limited": "yellow", "local-only": "green", "blocked": "dim",
           "unknown": "cyan"}
CLASS_WORDS = {"loopback": "this machine", "subnet": "own subnets", "anywhere": "anywhere"}


def cell(reach: dict[str, Any] | None, style) -> str:
    if not reach:
        return ""
    verdict = reach["verdict"]
    return style(verdict, COLOURS.get(verdict, ""))


def detail_lines(reach: dict[str, Any], style, indent: str = "      ",
                 classes: bool = False) -> list[str]:
    """The verdict with its reason, warnings and ways to close (and per class if asked)."""
    out = [indent + cell(reach, style) + ": " + printable(reach["reason"])]
    if classes:
        for c in reach["classes"]:
            if c["verdict"] == "not-applicable":
                continue
            out.append(f"{indent}  from {CLASS_WORDS.get(c['class'], c['class'])}: "
                       f"{c['verdict']}" + (f" — {printable(c['reason'])}" if c["reason"] else ""))
    for note in reach.get("notes") or ():
        out.append(indent + style("! ", "yellow") + printable(note))
    for way in reach.get("close") or ():
        out.append(indent + style("close: ", "dim") + printable(way))
    return out


def summary_lines(sockets: list[dict[str, Any]], head: dict[str, Any] | None, style,
                  endpoint) -> list[str]:
    """After the table: every listener other machines can reach, and why some answers are
    unknown (grouped by reason)."""
    out: list[str] = []
    reachable = [s for s in sockets if (s.get("reachability") or {}).get("verdict")
                 in ("exposed", "limited")]
    if reachable:
        out += ["", style("Reachable from other machines", "bold")]
        for sock in reachable:
            out.append(f"  {sock['transport']}  {endpoint(sock)}")
            out += detail_lines(sock["reachability"], style, indent="    ")
    unknown: dict[str, int] = {}
    for s in sockets:
        r = s.get("reachability")
        if r and r["verdict"] == "unknown":
            unknown[r["reason"]] = unknown.get(r["reason"], 0) + 1
    if unknown:
        out += ["", style("Reachability unknown", "bold")]
        for reason, count in sorted(unknown.items(), key=lambda kv: -kv[1]):
            out.append(f"  {count} listener{'s' if count != 1 else ''}: {printable(reason)}")
    pf = (head or {}).get("packet_filter")
    if pf and pf.get("problems"):
        for problem in pf["problems"]:
            out.append(style("note: ", "yellow") + printable(problem))
    return out
