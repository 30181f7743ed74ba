"""`portatlas check HOST PORT[/udp]` and `portatlas scan TARGETS [-p SPEC | --top N]`.

The dispatcher passes the full argument list: argv[0] is "check" or "scan".
Design, defaults and the JSON schema: docs/scan.md.
"""

from __future__ import annotations

import sys
from typing import Any
import os
import socket

from portatlas.cli.common import parser, open_atlas
from portatlas.errors import EXIT_INTERRUPTED, EXIT_NOT_FOUND, UsageError, DataError, NotFound
from portatlas.scan.timing import TimingOptions
from portatlas.cli.identify import nmap_note, options_from, add_arguments as add_identify_arguments
from portatlas.scan.ports import (parse_port_spec, top_ports, has_transports, parse_transport_spec,
                                  compact)
from portatlas.scan.targets import parse_targets, DEFAULT_MAX_HOSTS
from portatlas.scan.scanner import attach_registered, registered_for, Scanner
from portatlas.render.terminal import print_json, Style, terminal_width
from portatlas.scan.output import report_dict, ndjson_port, ndjson_tail, csv_text
from portatlas.scan.discovery import DiscoveryOptions, can_use_raw
from portatlas.scan.progress import Progress

DEFAULT_TOP = 1000  # what `scan` covers without -p or --top (nmap's default, too)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv and argv[0] in ("check", "scan") else ("scan", argv)
    if command == "check":
        return check_main(rest)
    return scan_main(rest)


# --- options shared by both commands ------------------------------------------------------
def _timing_options(p) -> None:
    g = p.add_argument_group("timing (defaults adapt to the network; see docs/scan.md)")
    g.add_argument("--rate", type=float, metavar="N",
                   help="at most N probes per second over all hosts (default: no fixed rate; "
                        "an adaptive window of outstanding probes)")
    g.add_argument("--max-concurrency", type=int, metavar="N", default=1024,
                   help="probes outstanding at once (default 1024; lowered automatically when "
                        "file descriptors run short)")
    g.add_argument("--max-retries", type=int, metavar="N", default=6,
                   help="most retries of a silent port once packet loss is seen (default 6)")
    g.add_argument("--tries", type=int, metavar="N", default=3,
                   help="probes per silent port before loss is seen (default 3)")
    g.add_argument("--initial-timeout", type=float, metavar="S", default=1.0,
                   help="wait for an answer before the first RTT sample (default 1.0 s)")
    g.add_argument("--min-timeout", type=float, metavar="S", default=0.1,
                   help="shortest wait for an answer (default 0.1 s)")
    g.add_argument("--max-timeout", type=float, metavar="S", default=1.5,
                   help="longest wait for an answer (default 1.5 s)")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 addresses only")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 addresses only")
    p.add_argument("--syn", action="store_true",
                   help="raw-socket SYN scan instead of connect() for TCP (root, IPv4 only)")


def _timing(args):
    for name in ("initial_timeout", "min_timeout", "max_timeout"):
        value = getattr(args, name)
        if not value > 0 or value > 60:
            raise UsageError(f"--{name.replace('_', '-')} must be between 0 and 60 seconds")
    if args.min_timeout > args.max_timeout:
        raise UsageError("--min-timeout is longer than --max-timeout")
    if args.rate is not None and not args.rate > 0:
        raise UsageError("--rate must be a positive number of probes per second")
    if not 1 <= args.max_concurrency <= 100000:
        raise UsageError("--max-concurrency must be between 1 and 100000")
    if not 0 <= args.max_retries <= 50:
        raise UsageError("--max-retries must be between 0 and 50")
    if not 1 <= args.tries <= 50:
        raise UsageError("--tries must be between 1 and 50")
    return TimingOptions(initial_timeout=min(args.initial_timeout, args.max_timeout),
                         min_timeout=args.min_timeout, max_timeout=args.max_timeout,
                         base_tries=min(args.tries, args.max_retries + 1),
                         max_retries=args.max_retries, max_concurrency=args.max_concurrency,
                         initial_window=min(256, args.max_concurrency), rate=args.rate)


def _check_root_features(args) -> None:
    if getattr(args, "syn", False):
        if os.geteuid() != 0:
            raise UsageError("--syn needs root (raw sockets); run as root, or leave out --syn "
                             "for a connect scan")


def _check_syn_hosts(args, hosts) -> None:
    if getattr(args, "syn", False) and any(h.family != socket.AF_INET for h in hosts):
        raise UsageError("--syn scans IPv4 addresses only; leave out --syn for IPv6 targets "
                         "(or add -4)")


def _family(args):
    return {4: socket.AF_INET, 6: socket.AF_INET6}.get(args.family)


def identify_hook(enabled: bool, options=None):
    """THE place where service identification plugs into check and scan.

    Returns an async callable (host, PortResult) -> Verdict | dict | None that the scanner
    runs on every open port after the sweep (the verdict's dict lands in PortResult.service
    and is shown by every output format), or None to skip identification.
    `options` are portatlas.identify Options (see portatlas.cli.identify.options_from).
    """
    if not enabled:
        return None
    try:
        # optional: a build may lack portatlas.identify; then no identification
        from portatlas.identify import scan_hook
    except ImportError:
        return None
    return scan_hook(options)


def _identify_options(args):

    opts = options_from(args)
    note = nmap_note(opts)
    if note:
        print(f"portatlas: note: {note}", file=sys.stderr)
    return opts


def _open_atlas_quietly(db: str | None):
    """The knowledge base for registered names; a scan still runs without one."""

    try:
        return open_atlas(db)
    except DataError as exc:
        print(f"portatlas: warning: {exc}; registered services are not shown", file=sys.stderr)
        return None


# --- check --------------------------------------------------------------------------------
def check_main(argv: list[str]) -> int:
    p = parser("portatlas check", "Is HOST:PORT open, what is it registered for, and what "
                                  "answers there? Exit status 0 when open, 1 when not.")
    p.add_argument("host", nargs="?", help="host name or address")
    p.add_argument("port", nargs="?", help="port, or port/udp")
    p.add_argument("--no-identify", action="store_true", help="do not identify what answers")
    _timing_options(p)

    add_identify_arguments(p)
    args = p.parse_args(argv)
    if not args.host or not args.port:
        raise UsageError("usage: portatlas check HOST PORT[/udp]")
    _check_root_features(args)
    port_text, _, transport = args.port.partition("/")
    transport = (transport or "tcp").lower()
    if transport not in ("tcp", "udp"):
        raise UsageError(f"check speaks tcp or udp, not {transport!r}")

    ports = parse_port_spec(port_text)
    if len(ports) != 1:
        raise UsageError("check takes one port; use 'portatlas scan' for more")
    timing = _timing(args)
    hosts = parse_targets([args.host], family=_family(args))
    _check_syn_hosts(args, hosts)
    report = _run(hosts, ports if transport == "tcp" else [], ports if transport == "udp" else [],
                  timing, args, command="check", argv=["check", *argv],
                  identify=identify_hook(not args.no_identify, _identify_options(args)),
                  progress=False, syn=args.syn)
    atlas = _open_atlas_quietly(args.db)

    for hr in report.hosts:
        hr.expand_bulk()  # check reports the registry for its one port whatever its state
    attach_registered(report.hosts, atlas, states=("open", "open|filtered", "closed", "filtered"))
    if args.json:
        print_json(report_dict(report, show_all=True))
    else:
        # lazy: render.scan pulls in identify's renderer (ssl, asyncio); `check --help` stays light
        from portatlas.render.scan import check_lines

        lines = check_lines(report, Style())
        if lines:
            print("\n".join(lines))
    if report.interrupted:
        return EXIT_INTERRUPTED
    any_open = any(r.state == "open" for hr in report.hosts for r in hr.ports.values())
    return 0 if any_open else EXIT_NOT_FOUND


# --- scan ---------------------------------------------------------------------------------
def scan_main(argv: list[str]) -> int:
    p = parser("portatlas scan", "Sweep ports on the hosts you name (TCP connect; --udp for "
                                 "UDP) and say what each open port is registered for.")
    p.add_argument("targets", nargs="*", help="addresses, host names, CIDR blocks, A-B ranges "
                                              "or @FILE")
    p.add_argument("-iL", "--targets-file", action="append", default=[], metavar="FILE",
                   help="read targets from FILE ('-' for standard input)")
    ports = p.add_mutually_exclusive_group()
    ports.add_argument("-p", "--ports", metavar="SPEC",
                       help="ports: 22,80,8000-8100, -1024, 60000-, '-' for all, or service "
                            "names; per transport: U:53,161,T:22,80 or 53/udp,22/tcp (both "
                            "transports in one run)")
    ports.add_argument("--top", type=int, metavar="N",
                       help=f"the N most often open ports (default: --top {DEFAULT_TOP})")
    p.add_argument("--udp", action="store_true", help="scan UDP (instead of TCP unless --tcp)")
    p.add_argument("--tcp", action="store_true", help="scan TCP (the default; with --udp: both)")
    p.add_argument("--identify", action="store_true", help="identify what answers on open ports")
    p.add_argument("--all", action="store_true", help="list every port, not just the telling ones")
    p.add_argument("--format", choices=("table", "json", "ndjson", "csv", "xml"),
                   help="output format (default table; --json is the same as --format json)")
    p.add_argument("--ndjson", action="store_const", dest="format", const="ndjson",
                   help="one JSON object per port as answers arrive, then host and summary lines")
    p.add_argument("--csv", action="store_const", dest="format", const="csv", help="CSV")
    p.add_argument("--xml", action="store_const", dest="format", const="xml",
                   help="nmap-compatible XML")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on the terminal")
    disc = p.add_mutually_exclusive_group()
    disc.add_argument("-Pn", "--no-ping", action="store_true", dest="no_ping",
                      help="no host discovery: treat every target as up and scan it")
    disc.add_argument("-sn", "--ping-only", action="store_true", dest="ping_only",
                      help="host discovery only: list the live hosts and how each answered")
    p.add_argument("--open", action="store_true", dest="open_only",
                   help="show only hosts with open ports (and only their open ports)")
    p.add_argument("--no-accept-all", action="store_true",
                   help="do not test hosts with many open ports for accept-everything behaviour")

    add_identify_arguments(p)
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for big TCP sweeps (default: one per core, at most 4, "
                        "above 4,096 probes)")
    p.add_argument("--max-hosts", type=int, metavar="N", default=None,
                   help="refuse target lists covering more addresses (default 65536)")
    p.add_argument("--save", metavar="NAME",
                   help="record the result as a snapshot named NAME: `portatlas changes --scan "
                        "NAME` lists what changed between runs (docs/changes.md)")
    p.add_argument("--snapshots", metavar="PATH",
                   help="snapshot file (default: beside the database, or $PORTATLAS_SNAPSHOTS)")
    g = p.add_argument_group("cluster (docs/scan.md: scanning on a cluster)")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="run the scan on a Dask cluster: tcp://SCHEDULER:8786 (its workers "
                        "run the probes, each at its own --rate) or local:N (N local workers)")
    g.add_argument("--shards", type=int, metavar="N",
                   help="with --cluster: split the probes into N shards (default: 4 per "
                        "worker, at most 8,192 probes each)")
    g.add_argument("--shard-seed", type=int, metavar="N",
                   help="with --cluster: seed of the permutation of (address, port) "
                        "(default: random)")
    _timing_options(p)
    args = p.parse_args(argv)
    if args.save is not None and not args.save.strip():
        raise UsageError("--save needs a name for the scan (e.g. --save office-lan)")
    fmt = args.format or ("json" if args.json else "table")
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and --format {args.format} disagree; pick one")
    _check_root_features(args)
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise UsageError("--workers must be between 1 and 64")
    _check_cluster_options(args)
    timing = _timing(args)
    if args.ping_only:
        given = [flag for flag, on in (("-p", args.ports is not None), ("--top", args.top is not None),
                                       ("--udp", args.udp), ("--tcp", args.tcp),
                                       ("--identify", args.identify), ("--syn", args.syn),
                                       ("--open", args.open_only), ("--all", args.all)) if on]
        if given:
            raise UsageError(f"--ping-only lists live hosts and probes no ports; leave out {given[0]}")

    max_hosts = args.max_hosts if args.max_hosts is not None else DEFAULT_MAX_HOSTS
    if max_hosts < 1:
        raise UsageError("--max-hosts must be at least 1")
    transports = [t for t, on in (("tcp", args.tcp or not args.udp), ("udp", args.udp)) if on]
    if args.ping_only:
        transports = []
    # check every argument before resolving names or touching the network
    spec_ports: dict[str, list[int]] = {}
    atlas = None
    port_source = "spec"
    if args.ports is not None:
        if _names_services(args.ports):
            atlas = _open_atlas_quietly(args.db)
        if has_transports(args.ports):
            # U:53,T:22,80 or 53/udp: each transport gets its own ports (and engine) in one run
            spec_ports = parse_transport_spec(
                args.ports, transports,
                service_ports=(lambda name, t: _service_ports(atlas, t)(name)) if atlas else None)
            transports = [t for t in ("tcp", "udp") if t in spec_ports]
        else:
            for t in transports:
                spec_ports[t] = parse_port_spec(
                    args.ports, service_ports=_service_ports(atlas, t) if atlas else None)
    elif transports:
        count = args.top if args.top is not None else DEFAULT_TOP
        atlas = _open_atlas_quietly(args.db)
        nmap_top = atlas.store.nmap_top if atlas is not None else None
        for t in transports:
            spec_ports[t], port_source = top_ports(count, t, nmap_top)
    if not args.targets and not args.targets_file:
        raise UsageError("name the hosts to scan: addresses, names, CIDR blocks or @FILE")
    hosts = parse_targets(args.targets, files=args.targets_file, family=_family(args),
                          max_hosts=max_hosts)
    _check_syn_hosts(args, hosts)
    stream = _ndjson_streamer(atlas, args) if fmt == "ndjson" else None
    if fmt == "ndjson" and atlas is None:
        atlas = stream.atlas
    options = {"transports": transports, "ports": {t: _describe_ports(ps) for t, ps in spec_ports.items()},
               "port_source": port_source if args.ports is None else "spec",
               "timing": timing.to_dict(), "identify": bool(args.identify),
               "tcp_scan": "syn" if args.syn else "connect",
               "accept_all_detection": not args.no_accept_all,
               "discovery": _discovery_description(args), "open_only": bool(args.open_only)}

    discovery = DiscoveryOptions(enabled=not args.no_ping)
    if args.cluster:
        report = _run_cluster(hosts, spec_ports.get("tcp", []), spec_ports.get("udp", []),
                              timing, args, argv=["scan", *argv], on_result=stream,
                              options=options, discovery=discovery)
    else:
        report = _run(hosts, spec_ports.get("tcp", []), spec_ports.get("udp", []), timing,
                      args, command="scan", argv=["scan", *argv],
                      identify=identify_hook(args.identify,
                                             _identify_options(args) if args.identify else None),
                      progress=not args.no_progress and not args.ping_only, on_result=stream,
                      options=options, accept_all=not args.no_accept_all,
                      workers=args.workers, syn=args.syn, discovery=discovery)
    if not args.ping_only:
        if atlas is None:
            atlas = _open_atlas_quietly(args.db)

        attach_registered(report.hosts, atlas)
    _emit(report, fmt, args.all, open_only=args.open_only)
    if args.save:
        _save_scan(report, args)
    return EXIT_INTERRUPTED if report.interrupted else 0


def _discovery_description(args) -> dict[str, Any]:
    """How hosts are found, for --json's options: "ping-only", "on" or "off" (-Pn), and
    whether raw probes (ARP/ND/ICMP/SYN) or TCP connects are used."""
    if args.no_ping:
        return {"mode": "off", "probes": None}

    return {"mode": "ping-only" if args.ping_only else "on",
            "probes": "raw" if can_use_raw() else "connect"}


def _names_services(spec: str) -> bool:
    """Does a -p spec name services (http, U:domain, ssh/tcp), so the registry is needed?"""
    for item in spec.split(","):
        item = item.strip()
        if len(item) >= 2 and item[1] == ":" and item[0].isalpha():
            item = item[2:].strip()
        if item[:1].isalpha():
            return True
    return False


def _save_scan(report, args) -> None:
    """`--save NAME`: the scan as a snapshot; an interrupted scan is not saved (its missing
    ports would read as changes next time)."""
    # lazy: the snapshot store (changes) only with --save
    from portatlas.changes import SnapshotStore, scan_items, snapshot_path

    if report.interrupted:
        print("portatlas: note: the scan was interrupted; not saved as a snapshot", file=sys.stderr)
        return
    doc = report_dict(report)
    meta = {"ports": doc["options"].get("ports") or {},
            "hosts": [h.get("address") or h.get("target") for h in doc["hosts"]]}
    with SnapshotStore(args.snapshots or snapshot_path(args.db)) as store:
        saved = store.save("scan", args.save, scan_items(doc), taken_at=report.started, meta=meta)
    n = len(saved.changes)
    first = " (the first one)" if saved.previous is None else \
        f": {n} change{'s' if n != 1 else ''} since the previous run"
    print(f"saved scan snapshot {args.save!r}{first}; 'portatlas changes --scan {args.save}' "
          "shows them", file=sys.stderr)


def _ndjson_streamer(atlas, args):
    """NDJSON: each port is written as soon as its answer is final, open ones with their
    registered services."""

    if atlas is None:
        atlas = _open_atlas_quietly(args.db)
    out = sys.stdout

    open_only = bool(getattr(args, "open_only", False))

    def stream(hr, result) -> None:
        if open_only and result.state != "open":
            return
        if result.state in ("open", "open|filtered"):
            result.registered = registered_for(atlas, result.port, result.transport)
        out.write(ndjson_port(hr, result) + "\n")

    stream.atlas = atlas
    return stream


def _service_ports(atlas, transport: str):
    def lookup(name: str) -> list[int]:
        try:
            entries = atlas.service(name, transport).entries
        except NotFound:
            return []
        return sorted({e.port_lo for e in entries
                       if e.port_lo is not None and e.port_lo == e.port_hi and e.port_lo > 0})

    return lookup


def _describe_ports(ports: list[int]) -> str:
    return compact(ports)


def _run(hosts, tcp_ports, udp_ports, timing, args, *, command: str, argv: list[str],
         identify=None, progress: bool = True, on_result=None, options: dict[str, Any] | None = None,
         accept_all: bool = True, workers: int | None = None, syn: bool = False,
         discovery=None):
    total = len(hosts) * (len(tcp_ports) + len(udp_ports))
    verb = "checking" if command == "check" else "scanning"
    bar = Progress(total, f"{verb} {len(hosts)} host{'s' if len(hosts) != 1 else ''}",
                   enabled=None if progress else False)
    scanner = Scanner(hosts, tcp_ports=tcp_ports, udp_ports=udp_ports, timing=timing,
                      workers=workers, on_result=on_result,
                      on_progress=bar.update if bar.enabled else None,
                      detect_accept_all=accept_all, identify=identify, syn=syn, command=command,
                      argv=argv, options=options, discovery=discovery)
    try:
        report = scanner.run()
    finally:
        bar.finish()
    return report


def _check_cluster_options(args) -> None:
    if not args.cluster:
        for name in ("shards", "shard_seed"):
            if getattr(args, name) is not None:
                raise UsageError(f"--{name.replace('_', '-')} needs --cluster")
        return
    from portatlas.cluster import parse_cluster  # lazy: portatlas.cluster only with --cluster

    parse_cluster(args.cluster)
    if args.workers is not None:
        raise UsageError("--workers splits a scan over this machine's cores; with --cluster "
                         "the cluster's workers share it")
    if args.shards is not None and not 1 <= args.shards <= 1_000_000:
        raise UsageError("--shards must be between 1 and 1000000")
    if args.shard_seed is not None and not 0 <= args.shard_seed < 2 ** 64:
        raise UsageError("--shard-seed must be between 0 and 2**64-1")


def _run_cluster(hosts, tcp_ports, udp_ports, timing, args, *, argv: list[str], on_result=None,
                 options: dict[str, Any] | None = None, discovery=None):
    """The scan on a Dask cluster (portatlas.cluster): same report, same hooks."""
    # lazy: the cluster client (dask, an optional extra) only with --cluster
    from portatlas.cluster import ClusterScanner

    total = len(hosts) * (len(tcp_ports) + len(udp_ports))
    bar = Progress(total, f"scanning {len(hosts)} host{'s' if len(hosts) != 1 else ''} "
                          f"on {args.cluster}",
                   enabled=None if not (args.no_progress or args.ping_only) else False)

    def note(text: str) -> None:
        print(f"portatlas: warning: {text}", file=sys.stderr)

    scanner = ClusterScanner(hosts, tcp_ports=tcp_ports, udp_ports=udp_ports,
                             cluster=args.cluster, timing=timing, shards=args.shards,
                             seed=args.shard_seed, on_result=on_result,
                             on_progress=bar.update if bar.enabled else None, on_note=note,
                             detect_accept_all=not args.no_accept_all,
                             identify=_identify_options(args) if args.identify else None,
                             syn=args.syn, command="scan", argv=argv, options=options,
                             discovery=discovery)
    try:
        return scanner.run()
    finally:
        bar.finish()


def _emit(report, fmt: str, show_all: bool, open_only: bool = False) -> None:
    out = sys.stdout
    if fmt == "json":
        print_json(report_dict(report, show_all, open_only=open_only))
    elif fmt == "ndjson":
        for line in ndjson_tail(report, open_only=open_only):
            out.write(line + "\n")
    elif fmt == "csv":
        out.write(csv_text(report, show_all, open_only=open_only))
    elif fmt == "xml":
        # lazy: the nmap XML writer only for that output format
        from portatlas.scan.nmap_xml import to_xml

        out.write(to_xml(report, show_all, open_only=open_only))
    else:
        from portatlas.render.scan import table_lines  # lazy: as in check_main (ssl, asyncio)

        out.write("\n".join(table_lines(report, Style(), show_all, terminal_width(),
                                         open_only=open_only)) + "\n")
    out.flush()
