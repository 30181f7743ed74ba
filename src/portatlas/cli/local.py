"""`portatlas local`: what listens on this machine; `portatlas free PORT`: end the holder of a port.

    portatlas local [PORT[/TRANSPORT] | LO-HI] [-t] [-u] [-4] [-6] [--user U] [--pid N]
                    [--process NAME] [--all] [--sort KEY[,KEY]] [--long] [--json]
                    [--watch [--interval S] [--count N]] [--kill [--yes] [--grace S]]
    portatlas free PORT[/TRANSPORT] [--yes] [--grace S] [--json]

This module only turns arguments into a portatlas.local Selection and prints: the selection,
the look, sorting and the portatlas.local/1 report are portatlas.local's public API
(local/selection.py, local/reports.py), the text is portatlas.render.local. Extending (e.g.
--identify): add options in build_parser(); add fields to report()'s sockets and print with
write_report_json(). Plain --json takes a faster route to the same document (write_json,
local.jsonout) that knows only the fields of Snapshot.socket_dict().
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from portatlas.cli.common import Parser, parser
from portatlas.errors import EXIT_NOT_FOUND, EXIT_SYSTEM, NotFound, PortatlasError, UsageError
from portatlas.local.reports import (DEFAULT_SORT, SORT_KEYS, _dumps, classified,
                                     parse_sort, report, write_json, write_report_json)
from portatlas.local import kill
from portatlas.local.selection import Selection
from portatlas.local.watch import diff
from portatlas.render import local as render
from portatlas.render.terminal import Style, print_json
from portatlas.cli.identify import nmap_note
from portatlas.stamps import utc_iso

FREE_SCHEMA = "portatlas.free/1"
WATCH_SCHEMA = "portatlas.local.watch/1"


def build_parser(prog: str = "portatlas local") -> Parser:
    p = parser(prog, "What listens on this machine (like ss -tulpn / lsof -i / netstat -ano), "
                     "who holds it, and whether it should worry you.")
    p.add_argument("port", nargs="?", metavar="PORT[/TRANSPORT]",
                   help="only this port or range (8080, 53/udp, 6000-6010)")
    add_selection_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("-a", "--all", action="store_true",
                     help="also established connections and other non-listening sockets")
    out.add_argument("--sort", default=",".join(DEFAULT_SORT), metavar="KEY[,KEY]",
                     help=f"order by {', '.join(SORT_KEYS)} (default: port,transport,address)")
    out.add_argument("-r", "--reverse", action="store_true", help="reverse the order")
    out.add_argument("--long", action="store_true",
                     help="everything about each socket (exe, command, cgroup) instead of a table")
    out.add_argument("--watch", action="store_true",
                     help="keep looking; print listeners as they appear and disappear (Ctrl-C ends)")
    out.add_argument("--interval", type=float, default=2.0, metavar="S",
                     help="seconds between looks with --watch (default 2)")
    out.add_argument("--count", type=int, default=0, metavar="N",
                     help="with --watch: stop after N more looks (default: until interrupted)")
    out.add_argument("--exposed", action="store_true",
                     help="only listeners other machines can reach through the packet filter "
                          "(exposed or limited; docs/exposure.md)")
    out.add_argument("--no-exposure", action="store_true",
                     help="do not read the packet filter (no REACH column; faster)")
    out.add_argument("--identify", action="store_true",
                     help="connect to each listener of this host (in this namespace) and say "
                          "what answers there (docs/identify.md)")
    keep = p.add_argument_group("snapshots (docs/changes.md)")
    keep.add_argument("--save", action="store_true",
                      help="record this look (listeners, processes, exposure, identification "
                           "with --identify) for `portatlas changes`; with --watch, every look")
    keep.add_argument("--changes", action="store_true",
                      help="with --save: print only what changed since the previous snapshot "
                           "(nothing when nothing did: for a cron line or systemd timer)")
    keep.add_argument("--snapshots", metavar="PATH",
                      help="snapshot file (default: beside the database, or $PORTATLAS_SNAPSHOTS)")
    act = p.add_argument_group("ending the holder of a port")
    act.add_argument("--kill", action="store_true",
                     help="end the processes holding PORT (shows them and asks first)")
    add_free_arguments(act)
    return p


def add_selection_arguments(p) -> None:
    sel = p.add_argument_group("selection")
    sel.add_argument("-t", "--tcp", action="store_true", help="TCP only")
    sel.add_argument("-u", "--udp", action="store_true", help="UDP only")
    sel.add_argument("-4", dest="ipv4", action="store_true", help="IPv4 sockets only")
    sel.add_argument("-6", dest="ipv6", action="store_true", help="IPv6 sockets only")
    sel.add_argument("--user", metavar="USER", help="sockets or processes of this user (name or uid)")
    sel.add_argument("--pid", type=int, action="append", metavar="PID",
                     help="sockets held by this process (repeatable)")
    sel.add_argument("--process", action="append", metavar="NAME",
                     help="sockets held by a process whose name or executable contains NAME "
                          "(case-insensitive; repeatable)")
    sel.add_argument("--backend", choices=("netlink", "proc", "psutil"),
                     help="how to read the sockets (default: netlink on Linux, psutil elsewhere)")


def add_free_arguments(group) -> None:
    group.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    group.add_argument("--grace", type=float, default=3.0, metavar="S",
                       help="seconds between SIGTERM and SIGKILL (default 3)")


def selection_from(args) -> Selection:
    """The Selection the parsed arguments ask for (checked by Selection.make)."""
    return Selection.make(args.port, tcp=args.tcp, udp=args.udp, ipv4=args.ipv4, ipv6=args.ipv6,
                          everything=getattr(args, "all", False), user=args.user,
                          pids=args.pid or (), processes=args.process or (), backend=args.backend)


# -- commands -----------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    if argv and argv[0] == "free":
        return free_main(argv[1:])
    args = build_parser().parse_args(argv)
    selection = selection_from(args)
    sort = parse_sort(args.sort)
    if not 0.1 <= args.interval <= 86400:  # also refuses nan and inf
        raise UsageError("--interval must be from 0.1 to 86400 seconds")
    if args.count < 0:
        raise UsageError("--count cannot be negative")
    if args.kill:
        if args.watch:
            raise UsageError("--kill and --watch do not go together")
        return free_port(args, selection, "portatlas local --kill")
    if args.yes:
        raise UsageError("--yes only goes with --kill (or portatlas free)")
    if args.watch and args.exposed:
        raise UsageError("--exposed and --watch do not go together")
    if args.changes and not args.save:
        raise UsageError("--changes goes with --save")
    if args.watch and args.save:
        return watch_saving(args, selection, sort)
    if args.watch and not args.identify:
        return watch(args, selection, sort)
    gc.disable()  # a one-shot run allocating an object or two per socket: collections only cost
    if args.exposed and args.no_exposure:
        raise UsageError("--exposed needs the packet filter: drop --no-exposure")
    if args.no_exposure:
        snap = selection.take()
        classified(snap, args.db)
    else:
        from portatlas import exposure  # lazy: --no-exposure never loads the packet filter

        # nft and iptables-save run while the sockets are read (their output is collected
        # by the look, after)
        exposure.prepare()
        try:
            snap = selection.take()
            classified(snap, args.db)
        except BaseException:
            exposure.cancel()
            raise
        snap = with_reachability(snap, args.exposed)
    if args.identify:
        return identify_listeners(args, snap, selection, sort)
    if args.save:
        data = report(snap, sort, args.reverse)
        saved = save_snapshot(args, data)
        if args.changes:
            return print_saved_changes(saved, args.json)
        if args.json:
            write_report_json(data)
        else:
            print("\n".join(render.report_lines(data, Style(), args.long)))
        print(saved_line(saved), file=sys.stderr)
    elif args.json:
        write_json(snap, sort, args.reverse)
    else:
        print("\n".join(render.report_lines(report(snap, sort, args.reverse), Style(), args.long)))
    if not snap.sockets and (selection.filtered or args.exposed):
        if not args.json:
            what = "is reachable from other machines" if args.exposed else "listens"
            print(f"nothing {what} on {selection.what()} here", file=sys.stderr)
        return EXIT_NOT_FOUND
    return 0


def with_reachability(snap, only_reachable: bool):
    """The snapshot with each listener's reachability (portatlas.exposure), and only the
    reachable ones with --exposed."""
    # lazy: exposure (packet-filter reading) only when reachability is asked for
    from portatlas import exposure

    exposure.annotate(snap)
    if only_reachable:
        snap = snap.filter(exposure.reachable)
    return snap


def identify_listeners(args, snap, selection: Selection, sort: list[str]) -> int:
    """`local --identify`: the report, each listener with what answers on it."""
    # only with --identify: the probes, asyncio and ssl are not loaded for a plain look
    from portatlas.identify.listeners import identify_listeners as identify_all
    from portatlas.render.identify import local_lines

    if args.watch:
        raise UsageError("--identify and --watch do not go together")
    data = report(snap, sort, args.reverse)
    identify_all(data["sockets"], _identify_options())
    if args.save:
        saved = save_snapshot(args, data)
        if args.changes:
            return print_saved_changes(saved, args.json)
        print(saved_line(saved), file=sys.stderr)
    if args.json:
        print_json(data)
    else:
        style = Style()
        print("\n".join(render.report_lines(data, style, args.long) + local_lines(data["sockets"], style)))
    if not snap.sockets and selection.filtered:
        return EXIT_NOT_FOUND
    return 0


def _identify_options():
    from portatlas.identify.options import Options  # only with --identify

    opts = Options(timeout=4.0, probe_timeout=1.0)
    note = nmap_note(opts)
    if note:
        print(f"portatlas: note: {note}", file=sys.stderr)
    return opts


def watch(args, selection: Selection, sort: list[str]) -> int:
    """Print the current listeners, then every change until interrupted (or --count looks)."""
    style = Style()
    snap = selection.take()
    classifier = classified(snap, args.db)
    data = report(snap, sort, args.reverse)
    out = sys.stdout
    if args.json:
        _emit({"schema": WATCH_SCHEMA, "event": "snapshot", "time": data["time"],
               "sockets": data["sockets"], "warnings": data["warnings"]})
    else:
        print("\n".join(render.report_lines(data, style)))
        print(style(f"\nwatching every {args.interval:g} s (Ctrl-C to stop); "
                    "+ appeared, - disappeared, ~ other processes", "dim"))
        out.flush()
    looks = 0
    try:
        while not args.count or looks < args.count:
            time.sleep(args.interval)
            looks += 1
            after = selection.take()
            classified(after, args.db, classifier)
            for event, sock, owner in diff(snap, after):
                as_dict = owner.socket_dict(sock)
                stamp = utc_iso(after.taken_at)
                if args.json:
                    _emit({"schema": WATCH_SCHEMA, "event": event, "time": stamp, "socket": as_dict})
                else:
                    print(render.event_line(event, as_dict, after.taken_at, style))
            out.flush()
            snap = after
    except KeyboardInterrupt:
        pass  # the normal way to end a watch
    return 0


# -- snapshots (portatlas changes) ---------------------------------------------------------------
def save_snapshot(args, data: dict[str, Any]):
    """Store a report() as this host's listener snapshot; returns the changes package's Saved."""
    # only with --save: the snapshot store is not loaded for a plain look
    from portatlas.changes import SnapshotStore, local_items, snapshot_path

    with SnapshotStore(args.snapshots or snapshot_path(args.db)) as store:
        meta = {"backend": data["backend"], "privileged": data["privileged"],
                "selection": data["selection"]}
        return store.save("local", data["host"], local_items(data), meta=meta)


def saved_line(saved) -> str:
    n = len(saved.changes)
    if saved.previous is None:
        return f"saved snapshot {saved.snapshot.id} (the first one; 'portatlas changes' compares later ones)"
    return (f"saved snapshot {saved.snapshot.id}: {n} change{'s' if n != 1 else ''} since the "
            f"previous one ('portatlas changes' shows them)")


def print_saved_changes(saved, as_json: bool) -> int:
    """--save --changes: only the changes since the previous snapshot (silent when none)."""
    # only with --save --changes (as above)
    from portatlas.cli.changes import SCHEMA
    from portatlas.render.changes import change_line

    changes = [c.to_dict() for c in saved.changes]
    if as_json:
        _emit({"schema": SCHEMA, "kind": "local", "name": saved.snapshot.name,
               "intervals": [{"from": saved.previous.to_dict() if saved.previous else None,
                              "to": saved.snapshot.to_dict(), "changes": changes}]})
    elif changes:
        style = Style()
        when = utc_iso(saved.snapshot.taken_at)
        for change in changes:
            print(f"{when}  " + change_line(change, style))
    return 0


def watch_saving(args, selection: Selection, sort: list[str]) -> int:
    """--watch --save: save every look and print what changed, as `portatlas changes` words it."""
    # only with --watch --save (as above)
    from portatlas.cli.changes import SCHEMA
    from portatlas.render.changes import change_line

    if args.identify:
        raise UsageError("--identify and --watch do not go together")
    style = Style()
    classifier = None
    looks = 0
    try:
        while True:
            snap = selection.take()
            classifier = classified(snap, args.db, classifier)
            if not args.no_exposure:
                snap = with_reachability(snap, False)  # snapshots keep each listener's verdict
            saved = save_snapshot(args, report(snap, sort, args.reverse))
            stamp = utc_iso(saved.snapshot.taken_at)
            if looks == 0:
                if args.json:
                    _emit({"schema": SCHEMA, "event": "snapshot", "time": stamp,
                           "snapshot": saved.snapshot.to_dict()})
                else:
                    print(style(f"{saved_line(saved)}; watching every {args.interval:g} s "
                                "(Ctrl-C to stop)", "dim"))
            for change in saved.changes:
                as_dict = change.to_dict()
                if args.json:
                    _emit({"schema": SCHEMA, "event": change.change, "time": stamp,
                           "change": as_dict})
                else:
                    print(f"{stamp}  " + change_line(as_dict, style))
            sys.stdout.flush()
            if args.count and looks >= args.count:
                break
            looks += 1
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass  # the normal way to end a watch
    return 0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(_dumps(obj) + "\n")
    sys.stdout.flush()


def free_main(argv: list[str]) -> int:
    p = parser("portatlas free", "End the processes holding a port (\"Address already in use\"): "
                                 "shows who, asks, sends SIGTERM, then SIGKILL after a grace period.")
    p.add_argument("port", metavar="PORT[/TRANSPORT]", help="the port to free (8080, 53/udp)")
    p.add_argument("-t", "--tcp", action="store_true", help="only TCP sockets")
    p.add_argument("-u", "--udp", action="store_true", help="only UDP sockets")
    add_free_arguments(p)
    args = p.parse_args(argv)
    return free_port(args, Selection.make(args.port, tcp=args.tcp, udp=args.udp), "portatlas free")


def free_port(args, selection: Selection, prog: str) -> int:
    if selection.ports is None or selection.ports[0] != selection.ports[1]:
        raise UsageError(f"{prog} needs one PORT (e.g. 8080 or 53/udp)")
    if not 0 <= args.grace <= 3600:  # also refuses nan and inf
        raise UsageError("--grace must be from 0 to 3600 seconds")
    port = selection.ports[0]
    snap = selection.take()
    if not snap.sockets:
        raise NotFound(f"nothing listens on {selection.what()} here; nothing to do")
    classified(snap, getattr(args, "db", None))
    chosen = kill.targets(snap)
    hidden = [s for s in snap.sockets if not s.holders]
    if not chosen:
        owners = sorted({render.owner_label(None, snap.socket_dict(s)) for s in hidden})
        if snap.privileged:
            raise PortatlasError(f"port {port} is held by sockets no process has open (kernel "
                                 "sockets, or closing ones); there is no process to end")
        raise PortatlasError(f"port {port} is held by {', '.join(owners)}, whose processes this "
                             f"user cannot see; run as root (sudo {prog.split(' --')[0]} {port} ...)")
    style = Style(sys.stderr.isatty() and Style().enabled) if args.json else Style()
    show = sys.stderr if args.json else sys.stdout
    dicts = [snap.socket_dict(s) for s in snap.sockets]
    print(f"port {port} is held by:", file=show)
    print("\n".join(render.socket_table(dicts, peers=False, style=style)), file=show)
    if hidden:
        print(style(f"note: {len(hidden)} of these sockets show no process (not visible to this "
                    "user); ending the others may not free the port", "yellow"), file=show)
    kill.check_allowed(chosen)
    for target in chosen:
        unit = target.process.unit if target.process else None
        if unit and unit.endswith(".service"):
            print(style(f"note: {target.label} belongs to {unit}; systemd may restart it "
                        f"(systemctl stop {unit} stops it for good)", "dim"), file=show)
    if not args.yes and not confirm(chosen, args.grace):
        print("nothing done", file=sys.stderr)
        if args.json:
            _free_json(port, selection, snap, chosen, [], None, confirmed=False)
        return EXIT_NOT_FOUND
    outcomes = kill.end(chosen, args.grace, progress=lambda m: print(m, file=sys.stderr))
    after = selection.take()
    for outcome in outcomes:
        print(outcome.sentence(), file=show)
    freed = not after.sockets
    if freed:
        print(f"port {port} ({'/'.join(selection.transports)}) is free now", file=show)
    else:
        holders = ", ".join(f"pid {h.pid}" for s in after.sockets for h in s.holders) or "processes not visible"
        print(f"port {port} is still in use ({holders})", file=show)
    if args.json:
        _free_json(port, selection, snap, chosen, outcomes, after, confirmed=True)
    return 0 if freed else EXIT_SYSTEM


def confirm(chosen, grace: float) -> bool:
    who = "; ".join(t.label for t in chosen)
    sys.stderr.write(f"End {who}? SIGTERM now, SIGKILL after {grace:g} s if still running [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline() if sys.stdin else ""
    if not answer:
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _free_json(port: int, selection: Selection, before, chosen, outcomes, after, *, confirmed: bool) -> None:
    print_json({
        "schema": FREE_SCHEMA,
        "port": port,
        "transports": list(selection.transports),
        "targets": [t.process.to_dict() if t.process else {"pid": t.pid} for t in chosen],
        "sockets": [before.socket_dict(s) for s in before.sockets],
        "confirmed": confirmed,
        "outcomes": [o.to_dict() for o in outcomes],
        "freed": (not after.sockets) if after is not None else False,
        "still_held": [after.socket_dict(s) for s in after.sockets] if after is not None else [],
    })
