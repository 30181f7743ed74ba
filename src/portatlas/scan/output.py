"""Scan results as JSON, NDJSON, CSV (nmap-compatible XML lives in nmap_xml.py; the terminal
table in portatlas.render.scan).

Which ports are listed: every open port (except the catch-all ports of an accept-all host,
summarised once), and every other port unless more than COLLAPSE_OVER ports of the host
share its state; those are summarised as "extraports" with their count, their reasons and
the exact list of ports in compact range form, so no output format loses information.
`show_all` lists every port.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any, Iterable

from portatlas.scan import results as R
from portatlas.scan.ports import compact
from portatlas.scan.results import HostReport, PortResult, ScanReport

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
def ndjson_port(hr: HostReport, result: PortResult) -> str:
    """One line per port. Plain answers (the thousands of closed ports of a sweep) are
    written from a template: same keys and order as PortResult.to_dict()."""
    if result.service is None and result.registered is None and not result.wildcard:
        prefix = hr.ndjson_prefix  # kept on the report: a cache by id() would outlive it
        if prefix is None:
            prefix = hr.ndjson_prefix = (
                f'{{"type":"port","schema":"{PORT_SCHEMA}","target":'
                f'{json.dumps(hr.host.target, ensure_ascii=False)},"address":'
                f'{json.dumps(hr.host.address)},')
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
