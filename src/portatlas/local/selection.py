"""What the user asked to see of this machine's sockets, and the one look that answers it.

    >>> from portatlas import local
    >>> sel = local.Selection.make("8080", tcp=True)     # or Selection(ports=(8080, 8080), ...)
    >>> snap = local.query(sel)                          # a Snapshot of the matching sockets
    >>> local.report(snap, ["port"])["sockets"]          # the portatlas.local/1 document

The CLI builds a Selection from its arguments (cli/local.py), the web UI from query parameters
(web/live.py): both call make(), so a word means the same everywhere and is checked once.

A NamedTuple rather than a dataclass: `dataclasses` imports `inspect`, milliseconds on the
start-up path of `portatlas local`, while typing is imported there anyway.
"""

from __future__ import annotations

from typing import NamedTuple

from portatlas.errors import UsageError

TRANSPORTS = ("tcp", "udp")
FAMILIES = ("ipv4", "ipv6")


class Selection(NamedTuple):
    """Ports, transports, families and who holds the sockets (all of them by default)."""

    ports: tuple[int, int] | None = None      # inclusive range; None for every port
    transports: tuple[str, ...] = TRANSPORTS
    families: tuple[str, ...] = FAMILIES
    everything: bool = False                  # established and other non-listening sockets too
    user: str | None = None                   # as the user wrote it (shown in the report)
    uid: int | None = None                    # the user, resolved
    pids: frozenset[int] = frozenset()
    names: tuple[str, ...] = ()               # process name fragments, lower case
    backend: str | None = None                # netlink, proc, psutil; None for the default

    @classmethod
    def make(cls, port: str | None = None, *, tcp: bool = False, udp: bool = False,
             ipv4: bool = False, ipv6: bool = False, everything: bool = False,
             user: str | None = None, pids=(), processes=(), backend: str | None = None
             ) -> "Selection":
        """A Selection from the words of a request: port '8080', '53/udp', '6000-6010'; flags
        for transports and families (none set means both); a user name or uid. Raises
        UsageError with a one-line message for anything that cannot be."""
        ports = None
        transports = [t for t, on in (("tcp", tcp), ("udp", udp)) if on]
        if port is not None:
            ports, transport = parse_ports(port)
            if transport:
                if transports and transport not in transports:
                    raise UsageError(f"{port} conflicts with --{transports[0]}")
                transports = [transport]
        families = [f for f, on in (("ipv4", ipv4), ("ipv6", ipv6)) if on]
        uid = resolve_user(user) if user else None
        chosen = frozenset(pids or ())
        if any(p <= 0 for p in chosen):
            raise UsageError("--pid takes a positive process id")
        return cls(ports=ports, transports=tuple(transports or TRANSPORTS),
                   families=tuple(families or FAMILIES), everything=bool(everything),
                   user=user, uid=uid, pids=chosen,
                   names=tuple(n.lower() for n in (processes or ())), backend=backend)

    @property
    def filtered(self) -> bool:
        return bool(self.ports or self.uid is not None or self.pids or self.names
                    or len(self.transports) < 2 or len(self.families) < 2)

    def take(self, processes: bool = True):
        """A snapshot of the matching sockets (query(self))."""
        return query(self, processes)

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

    def describe(self) -> dict:
        return {"ports": list(self.ports) if self.ports else None,
                "transports": list(self.transports), "families": list(self.families),
                "user": self.user, "pids": sorted(self.pids) or None,
                "processes": list(self.names) or None}

    def what(self) -> str:
        """The selection in words, for "nothing listens on ..." messages."""
        if self.ports:
            lo, hi = self.ports
            where = f"port {lo}" if lo == hi else f"ports {lo}-{hi}"
        else:
            where = "any port"
        families = " and ".join(f.replace("ipv", "IPv") for f in self.families)
        return f"{where} ({'/'.join(self.transports)}, {families})"


def query(selection: Selection, processes: bool = True):
    """One look at this machine: a Snapshot of the sockets the selection asks for (the
    snapshot remembers the selection, for report())."""
    from portatlas.local import listeners

    snap = listeners(selection.everything, port=selection.ports, transports=selection.transports,
                     families=selection.families, processes=processes, backend=selection.backend)
    if selection.uid is not None or selection.pids or selection.names:
        snap = snap.filter(selection.keep)
    snap.selection = selection
    return snap


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
