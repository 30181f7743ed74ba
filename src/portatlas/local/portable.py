"""The portable reader: psutil on macOS, Windows and the BSDs (and on Linux when asked for).

psutil gives no socket inode, owner uid or IPv6-only bit, so two sockets on the same address and
port (SO_REUSEPORT) show as one with several holders, `v6only` is unknown and the socket's user
is its first holder's. On Linux psutil names only one holder of a socket shared by several
processes (the netlink and proc readers name them all). On Linux the cgroup (systemd unit,
container) is still read from /proc.
"""

from __future__ import annotations

import sys
from typing import Any
import socket as socketmod

from portatlas.local.model import Holder, Notice, Process, Socket, user_name
from portatlas.errors import PortatlasError
from portatlas.local.cgroup import describe_cgroup

# psutil status -> the ss-style names used everywhere in portatlas
_STATES = {"LISTEN": "LISTEN", "ESTABLISHED": "ESTAB", "SYN_SENT": "SYN-SENT",
           "SYN_RECV": "SYN-RECV", "FIN_WAIT1": "FIN-WAIT-1", "FIN_WAIT2": "FIN-WAIT-2",
           "TIME_WAIT": "TIME-WAIT", "CLOSE": "UNCONN", "CLOSE_WAIT": "CLOSE-WAIT",
           "LAST_ACK": "LAST-ACK", "CLOSING": "CLOSING", "BOUND": "UNCONN"}


def _import_psutil():
    try:
        import psutil  # optional: psutil is an extra; the error below says how to get it
    except ImportError:
        raise PortatlasError("listing sockets on this system needs psutil (pip install psutil)") from None
    return psutil


def read(transports: tuple[str, ...], families: tuple[str, ...], *, everything: bool,
         ports: tuple[int, int] | None, processes: bool,
         warnings: list[Notice]) -> tuple[list[Socket], dict[int, Process]]:
    psutil = _import_psutil()

    conns = _connections(psutil, warnings)
    family_names = {socketmod.AF_INET: "ipv4", socketmod.AF_INET6: "ipv6"}
    grouped: dict[tuple, Socket] = {}
    for conn in conns:
        family = family_names.get(conn.family)
        transport = "tcp" if conn.type == socketmod.SOCK_STREAM else "udp"
        if family not in families or transport not in transports or not conn.laddr:
            continue
        address, port = conn.laddr[0], conn.laddr[1]
        if ports is not None and not ports[0] <= port <= ports[1]:
            continue
        remote = conn.raddr[0] if conn.raddr else None
        remote_port = conn.raddr[1] if conn.raddr else None
        if transport == "udp":
            state = "ESTAB" if conn.raddr else "UNCONN"
        else:
            state = _STATES.get(conn.status, conn.status)
        if not everything and state not in ("LISTEN", "UNCONN"):
            continue
        interface = None
        if "%" in address:  # a scoped IPv6 address: fe80::1%eth0
            address, _, interface = address.partition("%")
        key = (transport, family, address, port, remote, remote_port, state)
        sock = grouped.get(key)
        if sock is None:
            sock = grouped[key] = Socket(transport, family, address, port, state,
                                         remote_address=remote, remote_port=remote_port,
                                         interface=interface)
        if conn.pid is not None and not any(h.pid == conn.pid and h.fd == conn.fd
                                            for h in sock.holders):
            sock.holders.append(Holder(conn.pid, conn.fd if conn.fd is not None and conn.fd >= 0 else None))
    sockets = list(grouped.values())
    procs: dict[int, Process] = {}
    if processes:
        for pid in sorted({h.pid for s in sockets for h in s.holders}):
            info = _process(psutil, pid)
            if info is not None:
                procs[pid] = info
    for sock in sockets:
        sock.holders.sort(key=lambda h: (h.pid, h.fd if h.fd is not None else -1))
        owner = procs.get(sock.holders[0].pid) if sock.holders else None
        sock.uid = owner.uid if owner else None
    if any(not s.holders for s in sockets):
        warnings.append(Notice("processes-hidden",
                              f"{sum(1 for s in sockets if not s.holders)} of {len(sockets)} "
                              "sockets show no process: the system did not say who holds them "
                              "(run as administrator/root to see more)"))
    return sockets, procs


def _connections(psutil, warnings: list[Notice]) -> list[Any]:
    try:
        return psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        pass
    # macOS without root: ask each process we may inspect instead.
    warnings.append(Notice("partial-view", "the system-wide socket list needs administrator "
                                          "rights here; showing the sockets of the processes "
                                          "this user may inspect"))
    found = []
    for proc in psutil.process_iter():
        getter = getattr(proc, "net_connections", None) or proc.connections
        try:
            for conn in getter(kind="inet"):
                found.append(_WithPid(conn, proc.pid))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


class _WithPid:
    """A per-process connection tuple extended with its process id."""

    def __init__(self, conn: Any, pid: int) -> None:
        self.fd, self.family, self.type = conn.fd, conn.family, conn.type
        self.laddr, self.raddr, self.status = conn.laddr, conn.raddr, conn.status
        self.pid = pid


def _process(psutil, pid: int) -> Process | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = _safe(proc.name)
            exe = _safe(proc.exe) or None
            cmdline = _safe(proc.cmdline) or None
            uids = _safe(proc.uids) if hasattr(proc, "uids") else None
            username = _safe(proc.username)
            ppid = _safe(proc.ppid)
            created = _safe(proc.create_time)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    uid = uids.effective if uids else None
    unit = container = cgroup = None
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
                unit, container, cgroup = describe_cgroup(f.read())
        except OSError:
            pass
    return Process(pid, name, exe=exe, cmdline=cmdline, uid=uid,
                   user=username or user_name(uid), ppid=ppid, unit=unit, container=container,
                   cgroup=cgroup, start_time=created)


def _safe(getter):
    import psutil  # optional: psutil (an extra), as in _import_psutil

    try:
        return getter()
    except psutil.AccessDenied:  # a field this user may not read stays empty
        return None
