"""What a look at this machine's sockets yields: sockets, the processes holding them, warnings.

Plain classes with __slots__ (not dataclasses): the "here" section of every `portatlas PORT`
imports this module, and dataclasses would cost milliseconds of start-up.
"""

from __future__ import annotations

# typing is not imported at run time: this module is on the path of every port lookup, and
# importing typing costs about 2.5 ms there. Annotations are strings (PEP 563).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Socket states, named as `ss` names them so the output reads the same.
LISTEN = "LISTEN"
UNCONN = "UNCONN"
LISTENING_STATES = (LISTEN, UNCONN)

_user_names: dict[int, str] = {}

LOOPBACK = "loopback"
WILDCARD = "wildcard"
SPECIFIC = "specific"


class Holder:
    """One process holding a socket through one file descriptor."""

    __slots__ = ("pid", "fd")

    def __init__(self, pid: int, fd: int | None) -> None:
        self.pid = pid
        self.fd = fd

    def __repr__(self) -> str:
        return f"Holder({self.pid}, {self.fd})"


class Process:
    """What a user needs to act on a process: who runs it, what it is, where it came from."""

    __slots__ = ("pid", "name", "exe", "cmdline", "uid", "user", "ppid", "unit", "container",
                 "cgroup", "start_time")

    def __init__(self, pid: int, name: str | None = None, *, exe: str | None = None,
                 cmdline: list[str] | None = None, uid: int | None = None,
                 user: str | None = None, ppid: int | None = None, unit: str | None = None,
                 container: dict[str, str] | None = None, cgroup: str | None = None,
                 start_time: int | float | None = None) -> None:
        self.pid = pid
        self.name = name
        self.exe = exe
        self.cmdline = cmdline
        self.uid = uid
        self.user = user
        self.ppid = ppid
        self.unit = unit
        self.container = container
        self.cgroup = cgroup
        # Kernel start time (clock ticks since boot on Linux, epoch seconds from psutil): with
        # the pid it identifies a process for certain, so `free` never signals a reused pid.
        self.start_time = start_time

    @property
    def command(self) -> str:
        if self.cmdline:
            return " ".join(self.cmdline)
        return f"[{self.name}]" if self.name else ""

    def to_dict(self, fd: int | None = None) -> dict[str, Any]:
        return {"pid": self.pid, "fd": fd, "name": self.name, "exe": self.exe,
                "cmdline": self.cmdline, "user": self.user, "uid": self.uid, "ppid": self.ppid,
                "unit": self.unit, "container": self.container, "cgroup": self.cgroup}

    def __repr__(self) -> str:
        return f"Process({self.pid}, {self.name!r})"


class Socket:
    """One TCP or UDP socket of this machine's network namespace."""

    __slots__ = ("transport", "family", "address", "port", "state", "remote_address",
                 "remote_port", "interface", "v6only", "inode", "uid", "holders", "services",
                 "flags", "expected_program")

    def __init__(self, transport: str, family: str, address: str, port: int, state: str,
                 remote_address: str | None = None, remote_port: int | None = None,
                 interface: str | None = None, v6only: bool | None = None,
                 inode: int | None = None, uid: int | None = None) -> None:
        self.transport = transport      # tcp | udp
        self.family = family            # ipv4 | ipv6
        self.address = address
        self.port = port
        self.state = state
        self.remote_address = remote_address
        self.remote_port = remote_port
        self.interface = interface      # bound to a device (SO_BINDTODEVICE or a scope id)
        self.v6only = v6only            # IPv6 only: True/False; None when unknown or IPv4
        self.inode = inode
        self.uid = uid                  # the socket's owner (who created it)
        self.holders: list[Holder] = []
        # filled by classify.classify()
        self.services: list[dict[str, Any]] = []
        self.flags: list[tuple[str, str]] = []
        self.expected_program: bool | None = None

    @property
    def listening(self) -> bool:
        return self.state in LISTENING_STATES

    @property
    def dual_stack(self) -> bool:
        """An IPv6 wildcard socket that also accepts IPv4 (IPV6_V6ONLY off)."""
        return self.family == "ipv6" and self.v6only is False and self.address == "::"

    @property
    def stack(self) -> str:
        """ipv4, ipv6, ipv6-only or dual-stack: which IP versions reach this socket."""
        if self.family == "ipv4":
            return "ipv4"
        if self.address == "::":
            if self.v6only is None:
                return "ipv6"
            return "ipv6-only" if self.v6only else "dual-stack"
        return "ipv6"

    @property
    def exposure(self) -> str:
        """loopback (this machine only), wildcard (every address) or specific (one address)."""
        return exposure_of(self.address, self.interface)

    @property
    def endpoint(self) -> str:
        """The local end as ss writes it: 0.0.0.0:22, [::1]:53, *:80 (dual-stack), 0.0.0.0%lo:9."""
        return format_endpoint(self.address, self.port, self.interface, self.dual_stack)

    @property
    def peer(self) -> str:
        if self.remote_address is None:
            return ""
        if self.remote_port == 0 and self.remote_address in ("0.0.0.0", "::"):
            return "*"
        return format_endpoint(self.remote_address, self.remote_port or 0, None, False)

    def key(self) -> tuple:
        """Identity across two looks at the machine (what --watch compares)."""
        return (self.transport, self.family, self.address, self.port, self.interface,
                self.remote_address, self.remote_port, self.inode)

    def __repr__(self) -> str:
        return f"Socket({self.transport} {self.endpoint} {self.state})"


def exposure_of(address: str, interface: str | None = None) -> str:
    if interface == "lo" or address == "::1" or address.startswith("127.") \
            or address.startswith("::ffff:127."):
        return LOOPBACK
    if address in ("0.0.0.0", "::"):
        return WILDCARD
    return SPECIFIC


def format_endpoint(address: str, port: int, interface: str | None, dual_stack: bool) -> str:
    if dual_stack:
        host = "*"
    elif ":" in address:
        host = f"[{address}]"
    else:
        host = address
    if interface:
        host += f"%{interface}"
    return f"{host}:{port}"


def user_name(uid: int | None) -> str | None:
    """The login name of a uid (cached), or the number as text when it has none."""
    if uid is None:
        return None
    name = _user_names.get(uid)
    if name is None:
        try:
            import pwd  # platform: pwd exists on Unix only

            name = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError, OverflowError):
            name = str(uid)
        _user_names[uid] = name
    return name


class Notice:
    """Something the user should know about a snapshot: what could not be seen, and why."""

    __slots__ = ("code", "text")

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.text = text

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}

    def __repr__(self) -> str:
        return f"Notice({self.code!r})"


class Snapshot:
    """The sockets of one moment, the processes behind them, and what could not be seen."""

    __slots__ = ("sockets", "processes", "warnings", "backend", "privileged", "taken_at",
                 "classified", "selection", "extras", "head_extras", "_process_dicts")

    def __init__(self, sockets: list[Socket], processes: dict[int, Process], *,
                 warnings: list[Notice] | None = None, backend: str = "",
                 privileged: bool = False, taken_at: float = 0.0) -> None:
        self.sockets = sockets
        self.processes = processes
        self.warnings = warnings or []
        self.backend = backend
        self.privileged = privileged
        self.taken_at = taken_at
        self.classified = False
        self.selection = None  # the local.Selection it was taken for (set by local.query)
        # fields other packages add: per socket (id(socket) -> {field: JSON value}, written
        # before "processes"; values may be shared between sockets) and to the report's head
        # (e.g. portatlas.exposure's "reachability" and "packet_filter")
        self.extras: dict[int, dict[str, Any]] = {}
        self.head_extras: dict[str, Any] = {}
        self._process_dicts: dict[int, dict[str, Any]] = {}

    def holders_of(self, sock: Socket) -> list[tuple[Holder, Process | None]]:
        return [(h, self.processes.get(h.pid)) for h in sock.holders]

    def socket_dict(self, sock: Socket) -> dict[str, Any]:
        """One socket as JSON-ready data (the schema is in docs/local.md). `processes` comes
        last: the JSON writer of the CLI relies on that to encode shared process details once."""
        processes = [{"pid": h.pid, "fd": h.fd, **self.socket_process_dict(h.pid)}
                     for h in sock.holders]
        family = sock.family
        address = sock.address
        out = {
            "transport": sock.transport,
            "family": family,
            "address": address,
            "port": sock.port,
            "interface": sock.interface,
            "stack": sock.stack,
            "v6only": sock.v6only,
            "state": sock.state,
            "remote_address": sock.remote_address,
            "remote_port": sock.remote_port,
            "exposure": exposure_of(address, sock.interface),
            "inode": sock.inode,
            "uid": sock.uid,
            "user": user_name(sock.uid),
        }
        if self.classified:
            out["services"] = sock.services
            out["expected_program"] = sock.expected_program
            out["flags"] = [{"flag": code, "text": text} for code, text in sock.flags]
        extra = self.extras.get(id(sock))
        if extra:
            out.update(extra)
        out["processes"] = processes
        return out

    def socket_process_dict(self, pid: int) -> dict[str, Any]:
        """A holder's details as they appear in a socket's `processes` (without pid and fd)."""
        base = self._process_dicts.get(pid)
        if base is None:
            base = (self.processes.get(pid) or Process(pid)).to_dict()
            del base["pid"], base["fd"]
            self._process_dicts[pid] = base
        return base

    def filter(self, keep) -> "Snapshot":
        """A snapshot with only the sockets for which keep(socket, snapshot) is true."""
        sockets = [s for s in self.sockets if keep(s, self)]
        pids = {h.pid for s in sockets for h in s.holders}
        snap = Snapshot(sockets, {p: v for p, v in self.processes.items() if p in pids},
                        warnings=self.warnings, backend=self.backend, privileged=self.privileged,
                        taken_at=self.taken_at)
        snap.classified = self.classified
        snap.selection = self.selection
        snap.extras = self.extras
        snap.head_extras = self.head_extras
        return snap
