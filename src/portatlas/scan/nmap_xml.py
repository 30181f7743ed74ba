"""Scan results as nmap XML (xmloutputversion 1.05), valid against Debian's nmap.dtd, so that
tools that ingest nmap's XML (ndiff, xsltproc with nmap.xsl, importers of security tools)
read portatlas scans too.

The DTD fixes scanner="nmap"; the real author is named in `args`, `profile_name` and a
comment. Registered services appear as <service method="table" conf="3"> like nmap's own
table guesses; an identification verdict, when present, as method="probed" with product and
version. The catch-all ports of an accept-all host are one <extraports state="open"> with
reason "accept-all", not thousands of <port> elements.
"""

from __future__ import annotations

import time
from xml.sax.saxutils import escape, quoteattr

from portatlas import __version__
from portatlas.scan.output import _status_reason, only_open, partition, shown_hosts
from portatlas.scan.ports import compact
from portatlas.scan.results import HostReport, ScanReport


def _attrs(**kw) -> str:
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in kw.items() if v is not None)


def to_xml(report: ScanReport, show_all: bool = False, open_only: bool = False) -> str:
    start = int(report.started)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           "<!DOCTYPE nmaprun>",
           f"<!-- portatlas {escape(__version__)} {escape(report.command)}: nmap-compatible XML -->"]
    args = " ".join(["portatlas", *report.argv])
    out.append("<nmaprun" + _attrs(scanner="nmap", args=args, start=start,
                                   startstr=time.ctime(start), version=f"portatlas-{__version__}",
                                   profile_name=f"portatlas {__version__}",
                                   xmloutputversion="1.05") + ">")
    for transport in ("tcp", "udp"):
        ports = sorted(set().union(*(hr.scanned(transport) for hr in report.hosts)))
        if ports:
            tcp_type = "syn" if report.options.get("tcp_scan") == "syn" else "connect"
            out.append("<scaninfo" + _attrs(type=tcp_type if transport == "tcp" else "udp",
                                            protocol=transport, numservices=len(ports),
                                            services=compact(ports)) + "/>")
    out.append('<verbose level="0"/>')
    out.append('<debugging level="0"/>')
    up = sum(1 for hr in report.hosts if hr.status == "up")
    down = sum(1 for hr in report.hosts if hr.status == "down")
    for hr in shown_hosts(report, open_only):
        out.extend(_host(hr, report, show_all, open_only))
    end = int(report.finished or time.time())
    summary = (f"portatlas done: {len(report.hosts)} IP address{'es' if len(report.hosts) != 1 else ''}"
               f" ({up} host{'s' if up != 1 else ''} up) scanned in {report.elapsed:.2f} seconds")
    out.append("<runstats><finished" + _attrs(time=end, timestr=time.ctime(end), summary=summary,
                                              elapsed=f"{report.elapsed:.2f}",
                                              exit="error" if report.interrupted else "success",
                                              errormsg="interrupted" if report.interrupted else None)
               + "/>" + "<hosts" + _attrs(up=up, down=down, total=len(report.hosts)) + "/></runstats>")
    out.append("</nmaprun>")
    return "\n".join(out) + "\n"


def _host(hr: HostReport, report: ScanReport, show_all: bool, open_only: bool = False) -> list[str]:
    host = hr.host
    status = hr.status
    # the DTD knows up, down, unknown and skipped
    lines = ["<host" + _attrs(starttime=int(report.started),
                              endtime=int(report.finished or time.time())) + ">",
             "<status" + _attrs(state=status, reason=_status_reason(hr) or "no-response",
                                reason_ttl=0) + "/>",
             "<address" + _attrs(addr=host.address, addrtype=host.family_name) + "/>"]
    disc = hr.discovery
    if disc is not None and disc.mac:
        lines.append("<address" + _attrs(addr=disc.mac.upper(), addrtype="mac",
                                         vendor=disc.vendor) + "/>")
    if host.target != host.address and "/" not in host.target and "-" not in host.target:
        lines.append("<hostnames><hostname" + _attrs(name=host.target, type="user") + "/></hostnames>")
    else:
        lines.append("<hostnames></hostnames>")
    if status == "down":
        lines.append("</host>")
        return lines
    listed, extra = partition(hr, show_all)
    if open_only:
        listed, extra = only_open(hr, listed), []
    lines.append("<ports>")
    for group in extra:
        lines.append("<extraports" + _attrs(state=group["state"], count=group["count"]) + ">")
        for g in group["reasons"]:
            lines.append("<extrareasons" + _attrs(reason=g["reason"], count=g["count"],
                                                  proto=group["transport"], ports=g["ports"]) + "/>")
        lines.append("</extraports>")
    wild = [r for r in hr.detailed_ports() if r.wildcard]
    if wild and not show_all and not open_only:
        by_transport: dict[str, list[int]] = {}
        for r in wild:
            by_transport.setdefault(r.transport, []).append(r.port)
        for transport, ports in by_transport.items():
            lines.append("<extraports" + _attrs(state="open", count=len(ports)) + ">")
            lines.append("<extrareasons" + _attrs(reason="accept-all", count=len(ports),
                                                  proto=transport, ports=compact(ports)) + "/>")
            lines.append("</extraports>")
    for r in listed:
        lines.append("<port" + _attrs(protocol=r.transport, portid=r.port) + ">"
                     + "<state" + _attrs(state=r.state, reason=r.reason, reason_ttl=0) + "/>"
                     + _service(r) + "</port>")
    lines.append("</ports>")
    timing = hr.timing.get("tcp") or hr.timing.get("udp")
    if timing and timing.get("srtt_ms") is not None:
        us = (lambda v: str(int((v or 0) * 1000)))
        lines.append("<times" + _attrs(srtt=us(timing["srtt_ms"]), rttvar=us(timing["rttvar_ms"]),
                                       to=us(timing["timeout_ms"])) + "/>")
    lines.append("</host>")
    return lines


def _service(r) -> str:
    svc = r.service
    if svc and svc.get("outcome") == "identified" and svc.get("protocol"):
        conf = max(0, min(10, round(float(svc.get("confidence") or 0) * 10)))
        return "<service" + _attrs(name=svc["protocol"], product=svc.get("product") or None,
                                   version=svc.get("version") or None,
                                   tunnel="ssl" if svc.get("tls") else None,
                                   method="probed", conf=conf) + "/>"
    names = r.registered_names
    if names:
        return "<service" + _attrs(name=names[0], method="table", conf=3) + "/>"
    return ""
