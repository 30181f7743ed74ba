"""Scan results as a table, JSON, NDJSON, CSV (nmap-compatible XML lives in nmap_xml.py).

Which ports are listed: every open port (except the catch-all ports of an accept-all host,
summarised once), and every other port unless more than COLLAPSE_OVER ports of the host
share its state; those are summarised as "extraports" with their count, their reasons and
the exact list of ports in compact range form, so no output format loses information.
`show_all` lists every port.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from portatlas.scan import results as R
from portatlas.scan.ports import compact
from portatlas.scan.results import HostReport, PortResult, ScanReport, reason_words

COLLAPSE_OVER = 25
SCHEMA = "portatlas.scan/1"
PORT_SCHEMA = "portatlas.scan.port/1"


def partition(hr: HostReport, show_all: bool = False) -> tuple[list[PortResult], list[dict[str, Any]]]:
    """(listed ports, extraports groups) for one host."""
    if show_all:
        return hr.sorted_ports(), []
    detailed = hr.detailed_ports()
    # (transport, state) -> reason -> ports, over detailed and bulk answers
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}
    for r in detailed:
        if r.state != R.OPEN and not r.wildcard:
            groups.setdefault((r.transport, r.state), {}).setdefault(r.reason, []).append(r.port)
    for (transport, state, reason), ports in hr.bulk.items():
        if ports:
            groups.setdefault((transport, state), {}).setdefault(reason, []).extend(ports)
    sizes = {k: sum(len(v) for v in reasons.values()) for k, reasons in groups.items()}
    collapsed = {k for k, n in sizes.items() if n > COLLAPSE_OVER}
    listed = [r for r in detailed if not r.wildcard and (r.transport, r.state) not in collapsed]
    for (transport, state, reason), ports in hr.bulk.items():
        if (transport, state) not in collapsed:
            listed.extend(PortResult(p, transport, state, reason) for p in ports)
    listed.sort(key=lambda r: (r.transport, r.port))
    extra = []
    for key in sorted(collapsed):
        transport, state = key
        reasons = groups[key]
        extra.append({
            "state": state, "transport": transport, "count": sizes[key],
            "reasons": [{"reason": reason, "count": len(ps), "ports": compact(ps)}
                        for reason, ps in sorted(reasons.items(), key=lambda kv: -len(kv[1]))],
        })
    return listed, extra


def shown_hosts(report: ScanReport, open_only: bool = False) -> list[HostReport]:
    """The hosts a rendering lists: all of them, or with --open those with an open port."""
    if not open_only:
        return list(report.hosts)
    return [hr for hr in report.hosts if hr.status != "down" and any(
        r.state == R.OPEN for r in hr.ports.values())]


def only_open(hr: HostReport, listed: list[PortResult]) -> list[PortResult]:
    return [r for r in listed if r.state == R.OPEN]


# JSON -------------------------------------------------------------------------------------
def host_dict(hr: HostReport, show_all: bool = False, with_ports: bool = True,
              open_only: bool = False) -> dict[str, Any]:
    listed, extra = partition(hr, show_all)
    if open_only:
        listed, extra = only_open(hr, listed), []
    disc = hr.discovery
    out: dict[str, Any] = {
        **hr.host.to_dict(),
        "status": hr.status,
        "status_reason": _status_reason(hr),
        "discovery": disc.to_dict() if disc is not None else None,
        "counts": {k: v for k, v in hr.counts().items() if v},
        "timing": hr.timing,
        "accept_all": hr.accept_all,
    }
    if with_ports:
        out["ports"] = [r.to_dict() for r in listed]
        out["extraports"] = extra
    return out


def _status_reason(hr: HostReport) -> str | None:
    """nmap's word for why the host has its status (XML <status reason>)."""
    if hr.discovery is not None and (hr.discovery.reason != "user-set" or hr.status != "up"):
        if hr.status == hr.discovery.state or hr.discovery.reason == "user-set":
            return hr.discovery.reason
    answering = ("syn-ack", "conn-refused", "reset", "udp-response", "port-unreach", "proto-unreach")
    if hr.status == "up":
        first = next((r.reason for r in hr.detailed_ports() if r.reason in answering), None)
        return first or next((reason for (_, _, reason), ports in hr.bulk.items()
                              if ports and reason in answering), "user-set")
    return "no-response"


def report_dict(report: ScanReport, show_all: bool = False, open_only: bool = False) -> dict[str, Any]:
    import datetime as dt

    def iso(ts: float | None) -> str | None:
        if ts is None:
            return None
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds")

    return {
        "schema": SCHEMA,
        "command": report.command,
        "args": report.argv,
        "started": iso(report.started),
        "finished": iso(report.finished),
        "elapsed_s": round(report.elapsed, 3),
        "interrupted": report.interrupted,
        "options": report.options,
        "notes": report.notes,
        "summary": summary(report),
        "hosts": [host_dict(hr, show_all, open_only=open_only)
                  for hr in shown_hosts(report, open_only)],
    }


def summary(report: ScanReport) -> dict[str, Any]:
    totals = {s: 0 for s in R.STATES}
    for hr in report.hosts:
        for k, v in hr.counts().items():
            totals[k] += v
    return {"hosts": len(report.hosts),
            "hosts_up": sum(1 for hr in report.hosts if hr.status == "up"),
            "hosts_down": sum(1 for hr in report.hosts if hr.status == "down"),
            "ports": {k: v for k, v in totals.items() if v},
            "accept_all_hosts": sum(1 for hr in report.hosts if hr.accept_all)}


# NDJSON -----------------------------------------------------------------------------------
_PREFIXES: dict[int, str] = {}


def ndjson_port(hr: HostReport, result: PortResult) -> str:
    """One line per port. Plain answers (the thousands of closed ports of a sweep) are
    written from a template: same keys and order as PortResult.to_dict()."""
    if result.service is None and result.registered is None and not result.wildcard:
        prefix = _PREFIXES.get(id(hr))
        if prefix is None:
            prefix = (f'{{"type":"port","schema":"{PORT_SCHEMA}","target":'
                      f'{json.dumps(hr.host.target, ensure_ascii=False)},"address":'
                      f'{json.dumps(hr.host.address)},')
            _PREFIXES[id(hr)] = prefix
        rtt = "null" if result.rtt is None else repr(round(result.rtt * 1000, 3))
        return (f'{prefix}"port":{result.port},"transport":"{result.transport}","state":'
                f'"{result.state}","reason":"{result.reason}","rtt_ms":{rtt},"tries":'
                f'{result.tries},"registered":null,"service":null}}')
    d = {"type": "port", "schema": PORT_SCHEMA, "target": hr.host.target,
         "address": hr.host.address, **result.to_dict()}
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def ndjson_tail(report: ScanReport, open_only: bool = False) -> Iterable[str]:
    """After the stream of ports: one line per host (with what only the end can tell:
    accept-all verdicts, identification, timing), then one summary line."""
    for hr in shown_hosts(report, open_only):
        d = {"type": "host", **host_dict(hr, with_ports=False)}
        late = [r.to_dict() for r in hr.detailed_ports() if r.service is not None or r.wildcard]
        if late:
            d["updated_ports"] = late
        yield json.dumps(d, ensure_ascii=False, separators=(",", ":"))
    d = {"type": "summary", "schema": SCHEMA, "elapsed_s": round(report.elapsed, 3),
         "interrupted": report.interrupted, "notes": report.notes, **summary(report)}
    yield json.dumps(d, ensure_ascii=False, separators=(",", ":"))


# CSV --------------------------------------------------------------------------------------
CSV_FIELDS = ["target", "address", "port", "transport", "state", "reason", "rtt_ms", "tries",
              "registered", "service_protocol", "service_product", "service_version", "wildcard"]


def csv_text(report: ScanReport, show_all: bool = False, open_only: bool = False) -> str:
    """One row per listed port. A host that is down, and every host of a ping scan (no
    ports probed), is one row with the port and transport empty, the host's status in
    `state` and its reason in `reason`."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    ping_only = not any(hr.scanned("tcp") or hr.scanned("udp") for hr in report.hosts)
    for hr in shown_hosts(report, open_only):
        if hr.status == "down" or (ping_only and not hr.ports and not hr.bulk):
            rtt = hr.discovery.rtt if hr.discovery is not None else None
            w.writerow([hr.host.target, hr.host.address, "", "", hr.status, _status_reason(hr) or "",
                        "" if rtt is None else f"{rtt * 1000:.3f}", "", "", "", "", "", ""])
            continue
        listed, _ = partition(hr, show_all)
        if open_only:
            listed = only_open(hr, listed)
        rows = listed if show_all or open_only else listed + [r for r in hr.detailed_ports() if r.wildcard]
        for r in sorted(rows, key=lambda r: (r.transport, r.port)):
            svc = r.service or {}
            w.writerow([hr.host.target, hr.host.address, r.port, r.transport, r.state, r.reason,
                        "" if r.rtt is None else f"{r.rtt * 1000:.3f}", r.tries,
                        " ".join(r.registered_names), svc.get("protocol") or "",
                        svc.get("product") or "", svc.get("version") or "",
                        "yes" if r.wildcard else ""])
    return buf.getvalue()


# table ------------------------------------------------------------------------------------
def down_groups(report: ScanReport) -> list[tuple[str, int]]:
    """(why, count) of the hosts that are down, most common first: one table line each."""
    from portatlas.scan.discovery import describe

    counts: dict[str, int] = {}
    for hr in report.hosts:
        if hr.status == "down":
            why = describe(hr.discovery) if hr.discovery is not None else "no response"
            counts[why] = counts.get(why, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _discovery_words(hr: HostReport, style) -> str:
    d = hr.discovery
    if d is None or d.state != "up" or d.reason == "user-set":
        return ""
    text = f" · {d.words()}"
    if d.mac:
        text += f" · MAC {d.mac}" + (f" ({_printable(d.vendor)})" if d.vendor else "")
    return text


def _printable(text: str) -> str:
    """No control characters reach the terminal (the vendor file is not ours to trust)."""
    return "".join(c if c.isprintable() else "?" for c in text)[:60]


def table_lines(report: ScanReport, style, show_all: bool = False, width: int = 100,
                open_only: bool = False) -> list[str]:
    from portatlas.cli.output import table

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
            out.append(style(label, "bold", "cyan") + f"  {hr.status}{_discovery_words(hr, style)}"
                       + (f" · {_ms(rtt)}" if rtt is not None else ""))
            continue
        out.append("")
        host = hr.host
        label = host.address if host.target == host.address else f"{host.address} ({host.target})"
        timing = hr.timing.get("tcp") or hr.timing.get("udp") or {}
        srtt = timing.get("srtt_ms")
        extra = f" · srtt {srtt:.2f} ms" if srtt is not None else ""
        out.append(style(label, "bold", "cyan") + f"  {hr.status}{_discovery_words(hr, style)}{extra}")
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
    from portatlas.cli.output import wrap

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
