"""`portatlas local`: what listens on this machine; `portatlas free PORT`: end the holder of a port.

    portatlas local [PORT[/TRANSPORT] | LO-HI] [-t] [-u] [-4] [-6] [--user U] [--pid N]
                    [--process NAME] [--all] [--sort KEY[,KEY]] [--long] [--json]
                    [--watch [--interval S] [--count N]] [--kill [--yes] [--grace S]]
    portatlas free PORT[/TRANSPORT] [--yes] [--grace S] [--json]

Extending (e.g. --identify): build_parser() makes the parser (add options there); report() turns
a classified snapshot into the JSON-ready dict that text output is rendered from. Add fields to
its sockets and print with write_report_json(). Plain --json takes a faster route to the same
document (write_json, local.jsonout) that knows only the fields of Snapshot.socket_dict().
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from portatlas.cli.common import Parser, parser
from portatlas.cli.output import Style, terminal_width
from portatlas.errors import EXIT_NOT_FOUND, EXIT_SYSTEM, NotFound, PortatlasError, UsageError

SCHEMA = "portatlas.local/1"
FREE_SCHEMA = "portatlas.free/1"
WATCH_SCHEMA = "portatlas.local.watch/1"

# --sort keys -> what a socket (as a report dict) is ordered by
SORT_KEYS = ("port", "transport", "address", "state", "exposure", "pid", "process", "user", "flags")
DEFAULT_SORT = ("port", "transport", "address")


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
    out.add_argument("--identify", action="store_true",
                     help="connect to each listener of this host (in this namespace) and say "
                          "what answers there (docs/identify.md)")
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


# -- selection ----------------------------------------------------------------------------------
class Selection:
    """What the user asked to see: ports, transports, families and who holds the sockets."""

    def __init__(self, args) -> None:
        self.ports: tuple[int, int] | None = None
        transports = [t for t, on in (("tcp", args.tcp), ("udp", args.udp)) if on]
        if args.port is not None:
            self.ports, transport = parse_ports(args.port)
            if transport:
                if transports and transport not in transports:
                    raise UsageError(f"{args.port} conflicts with --{transports[0]}")
                transports = [transport]
        self.transports = tuple(transports or ("tcp", "udp"))
        families = [f for f, on in (("ipv4", args.ipv4), ("ipv6", args.ipv6)) if on]
        self.families = tuple(families or ("ipv4", "ipv6"))
        self.everything = bool(getattr(args, "all", False))
        self.user = args.user
        self.uid = resolve_user(args.user) if args.user else None
        self.pids = set(args.pid or ())
        self.names = [n.lower() for n in (args.process or ())]
        self.backend = args.backend
        if any(p <= 0 for p in self.pids):
            raise UsageError("--pid takes a positive process id")

    @property
    def filtered(self) -> bool:
        return bool(self.ports or self.uid is not None or self.pids or self.names
                    or len(self.transports) < 2 or len(self.families) < 2)

    def take(self, processes: bool = True):
        """A snapshot of the matching sockets."""
        from portatlas.local import listeners

        snap = listeners(self.everything, port=self.ports, transports=self.transports,
                         families=self.families, processes=processes, backend=self.backend)
        if self.uid is not None or self.pids or self.names:
            snap = snap.filter(self.keep)
        return snap

    def keep(self, sock, snap) -> bool:
        procs = [snap.processes.get(h.pid) for h in sock.holders]
        if self.pids and not any(h.pid in self.pids for h in sock.holders):
            return False
        if self.uid is not None and sock.uid != self.uid \
                and not any(p is not None and p.uid == self.uid for p in procs):
            return False
        if self.names:
            labels = []
            for p in procs:
                if p is not None:
                    labels.append((p.name or "").lower())
                    labels.append((p.exe or "").rsplit("/", 1)[-1].lower())
            if not any(n in label for n in self.names for label in labels if label):
                return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"ports": list(self.ports) if self.ports else None,
                "transports": list(self.transports), "families": list(self.families),
                "user": self.user, "pids": sorted(self.pids) or None,
                "processes": self.names or None}

    def what(self) -> str:
        """The selection in words, for "nothing listens on ..." messages."""
        if self.ports:
            lo, hi = self.ports
            where = f"port {lo}" if lo == hi else f"ports {lo}-{hi}"
        else:
            where = "any port"
        families = " and ".join(f.replace("ipv", "IPv") for f in self.families)
        return f"{where} ({'/'.join(self.transports)}, {families})"


def parse_ports(text: str) -> tuple[tuple[int, int], str | None]:
    """'8080', '53/udp', '6000-6010', '6000-6010/tcp' -> ((lo, hi), transport or None)."""
    from portatlas.parsing import parse_query

    q = parse_query(text)
    if q.kind == "service":
        raise UsageError(f"{text!r} is not a port or port range (try 'portatlas {text}' to find its port)")
    if q.transport not in (None, "tcp", "udp"):
        raise UsageError(f"only TCP and UDP sockets are listed, not {q.transport}")
    return (q.lo, q.hi), q.transport


def resolve_user(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        import pwd

        return pwd.getpwnam(text).pw_uid
    except (KeyError, ImportError):
        raise UsageError(f"no user named {text!r} on this machine") from None


# -- reports ------------------------------------------------------------------------------------
_EXPOSURE_ORDER = {"wildcard": 0, "specific": 1, "loopback": 2}


def sort_sockets(snap, keys: list[str], reverse: bool = False) -> list:
    """The snapshot's sockets in the order --sort asks for (ties keep the kernel's order)."""
    from portatlas.local.model import exposure_of

    addresses: dict[str, bytes] = {}

    def address(sock) -> tuple[str, bytes]:
        raw = addresses.get(sock.address)
        if raw is None:
            raw = addresses[sock.address] = _address_key(sock.address)
        return sock.family, raw

    def first(sock):
        return snap.processes.get(sock.holders[0].pid) if sock.holders else None

    getters = {
        "port": lambda s: s.port,
        "transport": lambda s: s.transport,
        "address": address,
        "state": lambda s: s.state,
        "exposure": lambda s: _EXPOSURE_ORDER[exposure_of(s.address, s.interface)],
        "pid": lambda s: s.holders[0].pid if s.holders else 0,
        "process": lambda s: ((first(s).name or "") if first(s) else "").lower(),
        "user": lambda s: (first(s).user if first(s) and first(s).user else None)
                          or (user_name(s.uid) or ""),
        "flags": lambda s: -len(s.flags),
    }
    # the default order breaks ties, so that equal keys still come out in a stable order
    keys = list(keys) + [k for k in DEFAULT_SORT if k not in keys]
    if keys == list(DEFAULT_SORT):
        # the common case, without a tuple of calls per socket
        def key(s):
            return s.port, s.transport, address(s)
    else:
        chosen = [getters[k] for k in keys]

        def key(s):
            return tuple(g(s) for g in chosen)
    return sorted(snap.sockets, key=key, reverse=reverse)


def user_name(uid):
    from portatlas.local.model import user_name as name

    return name(uid)


def _address_key(address: str) -> bytes:
    """Addresses in numeric order (10.0.0.2 before 10.0.0.10)."""
    import _socket

    try:
        if ":" in address:
            return _socket.inet_pton(_socket.AF_INET6, address)
        return _socket.inet_pton(_socket.AF_INET, address)
    except (OSError, ValueError):
        return address.encode()


def parse_sort(text: str) -> list[str]:
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    for key in keys:
        if key not in SORT_KEYS:
            raise UsageError(f"unknown sort key {key!r}; use {', '.join(SORT_KEYS)}")
    return keys or list(DEFAULT_SORT)


def report_head(snap, selection: Selection, sort: list[str], ordered: list) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "host": _hostname(),
        "time": _iso(snap.taken_at),
        "backend": snap.backend,
        "privileged": snap.privileged,
        "include_established": selection.everything,
        "selection": selection.describe(),
        "sort": sort,
        "count": len(ordered),
        "process_count": len({h.pid for s in ordered for h in s.holders}),
    }


def report(snap, selection: Selection, sort: list[str], reverse: bool) -> dict[str, Any]:
    """The JSON-ready result of one look (schema portatlas.local/1, docs/local.md). Text output
    is rendered from it; --json writes the same document faster (local.jsonout)."""
    ordered = sort_sockets(snap, sort, reverse)
    data = report_head(snap, selection, sort, ordered)
    data["sockets"] = [snap.socket_dict(s) for s in ordered]
    data["warnings"] = [w.to_dict() for w in snap.warnings]
    return data


def write_json(snap, selection: Selection, sort: list[str], reverse: bool, stream=None) -> None:
    from portatlas.local import jsonout

    ordered = sort_sockets(snap, sort, reverse)
    jsonout.write_document(report_head(snap, selection, sort, ordered),
                           jsonout.socket_lines(snap, ordered),
                           {"warnings": [w.to_dict() for w in snap.warnings]},
                           stream or sys.stdout)


def write_report_json(data: dict[str, Any], stream=None) -> None:
    """Write a report() dict (possibly with added fields) in the --json layout."""
    from portatlas.local import jsonout

    head = {k: v for k, v in data.items() if k not in ("sockets", "warnings")}
    jsonout.write_document(head, (jsonout.dumps(s) for s in data["sockets"]),
                           {"warnings": data["warnings"]}, stream or sys.stdout)


def _hostname() -> str:
    if hasattr(os, "uname"):
        return os.uname().nodename
    return os.environ.get("COMPUTERNAME", "")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def render_report(data: dict[str, Any], style: Style, long: bool = False) -> list[str]:
    from portatlas.local import text

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
                out += text.long_lines(sock, style)
                out.append("")
            out.pop()
        else:
            width = terminal_width() if sys.stdout.isatty() else None
            out += text.socket_table(sockets, peers=data["include_established"], style=style, width=width)
            flags = text.flag_lines(sockets, style)
            if flags:
                out += ["", style("Flags", "bold")] + flags
            if any(s.get("expected_program") is False for s in sockets):
                out += ["", style("REGISTERED x? = registered for x, but held by a program not "
                                  "known to serve x", "dim")]
    if data["warnings"]:
        out.append("")
        out += text.warning_lines(data["warnings"], style)
    return out


def classified(snap, db: str | None, classifier=None):
    """Classify a snapshot, opening the registry once (returns the classifier for reuse)."""
    from portatlas.local.classify import open_classifier

    if classifier is None:
        classifier = open_classifier(db, snap.warnings)
    elif classifier.atlas is None:
        from portatlas.local.model import Notice

        snap.warnings.append(Notice("no-registry", "the port registry is not available; "
                                                   "listeners are shown without registry flags"))
    classifier.classify(snap)
    return classifier


# -- commands -----------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    if argv and argv[0] == "free":
        return free_main(argv[1:])
    args = build_parser().parse_args(argv)
    selection = Selection(args)
    sort = parse_sort(args.sort)
    if args.interval < 0.1:
        raise UsageError("--interval must be at least 0.1 seconds")
    if args.count < 0:
        raise UsageError("--count cannot be negative")
    if args.kill:
        if args.watch:
            raise UsageError("--kill and --watch do not go together")
        return free_port(args, selection, "portatlas local --kill")
    if args.yes:
        raise UsageError("--yes only goes with --kill (or portatlas free)")
    if args.watch and not args.identify:
        return watch(args, selection, sort)
    import gc

    gc.disable()  # a one-shot run allocating an object or two per socket: collections only cost
    snap = selection.take()
    classified(snap, args.db)
    if args.identify:
        return identify_listeners(args, snap, selection, sort)
    if args.json:
        write_json(snap, selection, sort, args.reverse)
    else:
        print("\n".join(render_report(report(snap, selection, sort, args.reverse), Style(), args.long)))
    if not snap.sockets and selection.filtered:
        if not args.json:
            print(f"nothing listens on {selection.what()} here", file=sys.stderr)
        return EXIT_NOT_FOUND
    return 0


def identify_listeners(args, snap, selection: Selection, sort: list[str]) -> int:
    """`local --identify`: the report, each listener with what answers on it."""
    from portatlas.identify.cli import identify_listeners as identify_all, local_lines

    if args.watch:
        raise UsageError("--identify and --watch do not go together")
    data = report(snap, selection, sort, args.reverse)
    identify_all(data["sockets"], _identify_options())
    if args.json:
        from portatlas.cli.output import print_json

        print_json(data)
    else:
        style = Style()
        print("\n".join(render_report(data, style, args.long) + local_lines(data["sockets"], style)))
    if not snap.sockets and selection.filtered:
        return EXIT_NOT_FOUND
    return 0


def _identify_options():
    import sys

    from portatlas.identify.cli import nmap_note
    from portatlas.identify.options import Options

    opts = Options(timeout=4.0, probe_timeout=1.0)
    note = nmap_note(opts)
    if note:
        print(f"portatlas: note: {note}", file=sys.stderr)
    return opts


def watch(args, selection: Selection, sort: list[str]) -> int:
    """Print the current listeners, then every change until interrupted (or --count looks)."""
    from portatlas.local import text
    from portatlas.local.watch import diff

    style = Style()
    snap = selection.take()
    classifier = classified(snap, args.db)
    data = report(snap, selection, sort, args.reverse)
    out = sys.stdout
    if args.json:
        _emit({"schema": WATCH_SCHEMA, "event": "snapshot", "time": data["time"],
               "sockets": data["sockets"], "warnings": data["warnings"]})
    else:
        print("\n".join(render_report(data, style)))
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
                stamp = _iso(after.taken_at)
                if args.json:
                    _emit({"schema": WATCH_SCHEMA, "event": event, "time": stamp, "socket": as_dict})
                else:
                    print(_event_line(event, as_dict, after.taken_at, style, text))
            out.flush()
            snap = after
    except KeyboardInterrupt:
        pass  # the normal way to end a watch
    return 0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(_dumps(obj) + "\n")
    sys.stdout.flush()


def _event_line(event: str, sock: dict[str, Any], when: float, style: Style, text) -> str:
    mark, colour = {"appeared": ("+", "green"), "disappeared": ("-", "red"),
                    "changed": ("~", "cyan")}[event]
    who = ", ".join(f"pid {p['pid']} {text.name_of(p)} ({text.owner_label(p, sock)})"
                    for p in sock["processes"]) or f"process not visible (owner {text.owner_label(None, sock)})"
    flags = ",".join(f["flag"] for f in sock.get("flags") or ())
    parts = [time.strftime("%H:%M:%S", time.localtime(when)), style(mark, colour, "bold"),
             sock["transport"], text.endpoint(sock), sock["state"], sock["exposure"],
             ("now held by " if event == "changed" else "") + who]
    if sock.get("services"):
        parts.append(f"registered {text.registered(sock)}")
    if flags:
        parts.append(style(f"[{flags}]", "yellow"))
    return "  ".join(parts)


def free_main(argv: list[str]) -> int:
    p = parser("portatlas free", "End the processes holding a port (\"Address already in use\"): "
                                 "shows who, asks, sends SIGTERM, then SIGKILL after a grace period.")
    p.add_argument("port", metavar="PORT[/TRANSPORT]", help="the port to free (8080, 53/udp)")
    p.add_argument("-t", "--tcp", action="store_true", help="only TCP sockets")
    p.add_argument("-u", "--udp", action="store_true", help="only UDP sockets")
    add_free_arguments(p)
    args = p.parse_args(argv)
    args.ipv4 = args.ipv6 = False
    args.user = args.pid = args.process = args.backend = None
    return free_port(args, Selection(args), "portatlas free")


def free_port(args, selection: Selection, prog: str) -> int:
    from portatlas.local import kill, text

    if selection.ports is None or selection.ports[0] != selection.ports[1]:
        raise UsageError(f"{prog} needs one PORT (e.g. 8080 or 53/udp)")
    if args.grace < 0:
        raise UsageError("--grace cannot be negative")
    port = selection.ports[0]
    snap = selection.take()
    if not snap.sockets:
        raise NotFound(f"nothing listens on {selection.what()} here; nothing to do")
    classified(snap, getattr(args, "db", None))
    chosen = kill.targets(snap)
    hidden = [s for s in snap.sockets if not s.holders]
    if not chosen:
        owners = sorted({text.owner_label(None, snap.socket_dict(s)) for s in hidden})
        if snap.privileged:
            raise PortatlasError(f"port {port} is held by sockets no process has open (kernel "
                                 "sockets, or closing ones); there is no process to end")
        raise PortatlasError(f"port {port} is held by {', '.join(owners)}, whose processes this "
                             f"user cannot see; run as root (sudo {prog.split(' --')[0]} {port} ...)")
    style = Style(sys.stderr.isatty() and Style().enabled) if args.json else Style()
    show = sys.stderr if args.json else sys.stdout
    dicts = [snap.socket_dict(s) for s in snap.sockets]
    print(f"port {port} is held by:", file=show)
    print("\n".join(text.socket_table(dicts, peers=False, style=style)), file=show)
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
    from portatlas.cli.output import print_json

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
