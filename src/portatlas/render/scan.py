"""The terminal table of a scan or check (the machine formats are in portatlas.scan.output).

Which ports are listed is decided once, by scan.output.partition, so the table and every
machine format agree.
"""

from __future__ import annotations

from typing import Any

from portatlas.identify.claim import claim_vs_truth as sentence
from portatlas.render.identify import lines as identify_lines
from portatlas.render.terminal import table, wrap
from portatlas.scan.output import only_open, partition, shown_hosts
from portatlas.scan.results import HostReport, PortResult, ScanReport, reason_words
from portatlas.textsafe import printable
from portatlas.scan.hoststatus import describe


# table ------------------------------------------------------------------------------------
def down_groups(report: ScanReport) -> list[tuple[str, int]]:
    """(why, count) of the hosts that are down, most common first: one table line each."""

    counts: dict[str, int] = {}
    for hr in report.hosts:
        if hr.status == "down":
            why = describe(hr.discovery) if hr.discovery is not None else "no response"
            counts[why] = counts.get(why, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _discovery_words(hr: HostReport) -> str:
    """How a live host answered discovery, its MAC and vendor (the vendor file is the
    system's, not ours to trust: made printable)."""
    d = hr.discovery
    if d is None or d.state != "up" or d.reason == "user-set":
        return ""
    text = f" · {d.words()}"
    if d.mac:
        text += f" · MAC {d.mac}" + (f" ({printable(d.vendor)[:60]})" if d.vendor else "")
    return text


def table_lines(report: ScanReport, style, show_all: bool = False, width: int = 100,
                open_only: bool = False) -> list[str]:
    """The scan table: live hosts one block each (with --open only those with open ports),
    then one line per reason for the hosts that are down ("248 hosts down: no ARP reply").
    A ping scan (no ports) lists each live host on one line."""
    out = []
    n_tcp = len(set().union(*(hr.scanned("tcp") for hr in report.hosts)))
    n_udp = len(set().union(*(hr.scanned("udp") for hr in report.hosts)))
    what = " + ".join(x for x in (f"{n_tcp:,} tcp" if n_tcp else "", f"{n_udp:,} udp" if n_udp else "") if x)
    head = (f"portatlas {report.command} · {len(report.hosts)} host{'s' if len(report.hosts) != 1 else ''}"
            f" · {what or 'no'} port{'s' if (n_tcp + n_udp) != 1 else ''} · {report.elapsed:.2f} s")
    out.append(style(head, "bold"))
    if report.interrupted:
        out.append(style("interrupted: results so far (ports not probed are counted as unscanned)",
                         "yellow"))
    for note in report.notes:
        out.append(style(f"note: {note}", "dim"))
    any_service = any(r.service for hr in report.hosts for r in hr.ports.values())
    ping_only = not (n_tcp or n_udp)
    shown = shown_hosts(report, open_only)
    for hr in shown:
        if hr.status == "down":
            continue  # one summary line per reason below
        if ping_only:
            host = hr.host
            label = host.address if host.target == host.address else f"{host.address} ({host.target})"
            rtt = hr.discovery.rtt if hr.discovery is not None else None
            out.append(style(label, "bold", "cyan") + f"  {hr.status}{_discovery_words(hr)}"
                       + (f" · {_ms(rtt)}" if rtt is not None else ""))
            continue
        out.append("")
        host = hr.host
        label = host.address if host.target == host.address else f"{host.address} ({host.target})"
        timing = hr.timing.get("tcp") or hr.timing.get("udp") or {}
        srtt = timing.get("srtt_ms")
        extra = f" · srtt {srtt:.2f} ms" if srtt is not None else ""
        out.append(style(label, "bold", "cyan") + f"  {hr.status}{_discovery_words(hr)}{extra}")
        listed, extraports = partition(hr, show_all)
        if open_only:
            listed, extraports = only_open(hr, listed), []
        if hr.accept_all:
            out += _accept_all_lines(hr.accept_all, style, width)
        rows = []
        for r in listed:
            row = [f"  {r.port}/{r.transport}", _state(r.state, style), reason_words(r.reason),
                   "" if r.rtt is None else _ms(r.rtt), _registered(r)]
            if any_service:
                row.append(_service(r.service))
            rows.append(row)
        headers = ["  PORT", "STATE", "REASON", "RTT", "REGISTERED"] + (["IDENTIFIED"] if any_service else [])
        if rows:
            out += table(rows, headers, style)
        elif not hr.accept_all:
            out.append("  no port to list")
        for group in extraports:
            reasons = ", ".join(f"{g['count']:,} {reason_words(g['reason'])}" for g in group["reasons"])
            ports = ",".join(g["ports"] for g in group["reasons"])
            if len(ports) > width - 20:
                ports = ports[:width - 23] + "..."
            out.append(style(f"  not shown: {group['count']:,} {group['transport']} {group['state']} "
                             f"({reasons})", "dim"))
            if not show_all:
                out.append(style(f"    ports {ports}", "dim"))
    if ping_only or any(hr.status == "down" for hr in report.hosts):
        out.append("")
    if ping_only:
        up = sum(1 for hr in report.hosts if hr.status == "up")
        out.append(style(f"{up:,} host{'s' if up != 1 else ''} up", "bold"))
    for why, count in down_groups(report):
        out.append(style(f"{count:,} host{'s' if count != 1 else ''} down: {why}", "dim"))
    hidden = len([hr for hr in report.hosts if hr.status != "down"]) - len(
        [hr for hr in shown if hr.status != "down"])
    if hidden:
        out.append(style(f"not shown: {hidden:,} host{'s' if hidden != 1 else ''} up without "
                         "open ports (--open)", "dim"))
    return out


def _accept_all_lines(info: dict[str, Any], style, width: int) -> list[str]:
    text = (f"accepts connections on every port: {info['catch_all_ports']:,} of "
            f"{info['scanned_ports']:,} scanned {info['transport']} ports behave the same "
            f"({info['description']})")
    lines = wrap(style("accept-all: ", "yellow", "bold") + text, width, "  ")
    if info.get("banner"):
        lines.append(f"    banner: {info['banner']}")
    ports = info.get("catch_all") or ""
    if len(ports) > width - 24:
        ports = ports[:width - 27] + "..."
    lines.append(style(f"    catch-all ports (not listed): {ports}", "dim"))
    if info.get("distinct_ports"):
        lines.append("    ports that behave differently (listed below): "
                     + ",".join(str(p) for p in info["distinct_ports"]))
    elif info.get("checked") == "sample":
        lines.append(style(f"    checked a sample of {info['sample_size']} ports; others may differ", "dim"))
    return lines


def _state(state: str, style) -> str:
    colour = {"open": "green", "closed": "red", "filtered": "yellow", "open|filtered": "yellow"}
    return style(state, colour.get(state, "dim"))


def _ms(rtt: float) -> str:
    return f"{rtt * 1000:.2f} ms" if rtt < 0.1 else f"{rtt * 1000:.0f} ms"


def _registered(r: PortResult) -> str:
    if r.registered is None:
        return ""
    if not r.registered:
        return "-"
    first = r.registered[0]
    if not first["service"]:
        text = f"\"{first['description'][:50]}\""
    else:
        text = first["service"]
        if first.get("description") and first["description"].lower() != first["service"].lower():
            text += f" ({first['description'][:40]})"
    if len(r.registered) > 1:
        text += f" +{len(r.registered) - 1}"
    return text


def _service(svc: dict[str, Any] | None) -> str:
    if not svc:
        return ""
    if svc.get("outcome") not in (None, "identified"):
        return svc.get("outcome") or ""
    parts = [svc.get("protocol") or "?", svc.get("product") or "", svc.get("version") or ""]
    return " ".join(p for p in parts if p)


# check ------------------------------------------------------------------------------------
def claim_vs_truth(r: PortResult) -> str | None:
    """The registry's claim beside what answered (identify.claim), when something was
    identified."""
    svc = r.service or {}
    if svc.get("outcome") != "identified" or not svc.get("protocol"):
        return None
    names = list(r.registered_names)
    description = r.registered[0]["description"] if r.registered and not names else None
    return sentence(f"{r.port}/{r.transport}", names, description, svc)


def check_lines(report: ScanReport, style) -> list[str]:
    """The text of `portatlas check`: each port, what is registered and what answers."""
    out: list[str] = []
    for hr in report.hosts:
        host = hr.host
        label = host.address if host.target == host.address else f"{host.target} ({host.address})"
        for r in hr.sorted_ports():
            rtt = f", {_ms(r.rtt)}" if r.rtt is not None else ""
            tries = f", {r.tries} tries" if r.tries > 1 else ""
            out.append(f"{style(label, 'bold')} {r.port}/{r.transport} {_state(r.state, style)}"
                       f"  ({reason_words(r.reason)}{rtt}{tries})")
            reg = _registered(r)
            out.append(f"  registered: {reg if reg and reg != '-' else 'nothing registered for this port'}")
            if r.service:
                out.append(f"  identified: {_service(r.service)}")
                summary = claim_vs_truth(r)
                if summary:
                    out.append(f"  {summary}")
                for line in identify_lines(r.service):
                    out.append(line)
                if r.service.get("evidence"):
                    out.append(f"  evidence:   {r.service['evidence'][:100]}")
    for note in report.notes:
        out.append(style(f"note: {note}", "dim"))
    return out
