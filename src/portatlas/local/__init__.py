"""What listens on this machine: sockets, the processes holding them, and what could not be seen.

One public surface over per-platform readers (the psutil model):

    >>> from portatlas import local
    >>> snap = local.listeners()                 # listening TCP + bound UDP, IPv4 and IPv6
    >>> snap = local.listeners(True, port=8080)  # plus established connections, one port
    >>> [(s.transport, s.endpoint, [h.pid for h in s.holders]) for s in snap.sockets]
    >>> snap.warnings                             # what was hidden (without root) and why

What a user asked to see, and the `portatlas.local/1` document (what the CLI and the web
UI both call):

    >>> sel = local.Selection.make("8080", tcp=True, user="www-data")
    >>> snap = local.query(sel)
    >>> doc = local.report(snap, ["port"])

Readers ("backends"):
  netlink  Linux: sock_diag over netlink, like ss (default; fastest; tells v6-only sockets)
  proc     Linux: /proc/net/{tcp,udp}{,6} text (used when netlink is not allowed)
  psutil   everywhere else (macOS, Windows, BSD), and on Linux on request
On Linux the owning processes come from /proc/PID/fd, their details from /proc/PID/*.
PORTATLAS_LOCAL_BACKEND=netlink|proc|psutil picks one (for tests and benchmarks).

This package's __init__ stays import-light: `portatlas PORT` imports portatlas.local.here on
every run.
"""

from __future__ import annotations

import importlib
import os
import sys
import time

from portatlas.local.model import Holder, Notice, Process, Snapshot, Socket, user_name
from portatlas.errors import UsageError, PortatlasError

__all__ = ["listeners", "Snapshot", "Socket", "Process", "Holder", "Notice", "BACKENDS",
           "default_backend", "Selection", "query", "report", "parse_sort"]

# The selection/report API lives in submodules that import typing; loaded on first use so that
# `portatlas PORT` (which imports this package for its "here" section) does not pay for them.
_LAZY = {"Selection": "selection", "query": "selection", "report": "reports",
         "parse_sort": "reports", "write_json": "reports"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'portatlas.local' has no attribute {name!r}")
    return getattr(importlib.import_module(f"portatlas.local.{module}"), name)

BACKENDS = ("netlink", "proc", "psutil")


def default_backend() -> str:
    chosen = os.environ.get("PORTATLAS_LOCAL_BACKEND")
    if chosen:
        if chosen not in BACKENDS:
            raise UsageError(f"PORTATLAS_LOCAL_BACKEND={chosen!r}: use one of {', '.join(BACKENDS)}")
        return chosen
    return "netlink" if sys.platform.startswith("linux") else "psutil"


def listeners(include_established: bool = False, *, port: int | tuple[int, int] | None = None,
              transports: tuple[str, ...] = ("tcp", "udp"),
              families: tuple[str, ...] = ("ipv4", "ipv6"), processes: bool = True,
              backend: str | None = None) -> Snapshot:
    """Every listening TCP socket and bound UDP socket of this machine's network namespace
    (with include_established=True: sockets in every state, like `ss -a`).

    port: one port or an inclusive (lo, hi) range. processes=False skips finding the owners
    (much cheaper). Never raises for lack of privileges: what could not be seen is said in
    Snapshot.warnings."""
    ports = (port, port) if isinstance(port, int) else port
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    warnings: list[Notice] = []
    privileged = _privileged()
    taken_at = time.time()
    if backend == "psutil":
        # optional: the psutil backend (an extra) only when chosen or off Linux
        from portatlas.local import portable

        sockets, procs = portable.read(transports, families, everything=include_established,
                                       ports=ports, processes=processes, warnings=warnings)
        return Snapshot(sockets, procs, warnings=warnings, backend=backend, privileged=privileged,
                        taken_at=taken_at)
    sockets = None
    if backend == "netlink":
        from portatlas.local import netlink  # platform: the netlink reader is for Linux only

        try:
            sockets = netlink.dump(transports, families, everything=include_established, ports=ports)
        except OSError as exc:
            warnings.append(Notice(
                "netlink-unavailable",
                f"the kernel's socket diagnostics (netlink sock_diag) are not available here "
                f"({exc.strerror or exc}); read /proc/net instead, which cannot tell IPv6-only "
                "sockets from dual-stack ones"))
            backend = "proc"
    if sockets is None:
        # lazy: the /proc/net reader only when netlink is not used
        from portatlas.local import procnet

        try:
            sockets = procnet.read(transports, families, everything=include_established, ports=ports)
        except OSError as exc:
            raise PortatlasError(f"cannot read this machine's sockets: {exc}") from None
    procs: dict[int, Process] = {}
    if processes and sockets:
        procs = attach_processes(sockets, warnings, privileged)
    return Snapshot(sockets, procs, warnings=warnings, backend=backend, privileged=privileged,
                    taken_at=taken_at)


def attach_processes(sockets: list[Socket], warnings: list[Notice], privileged: bool) -> dict[int, Process]:
    """Linux: fill each socket's holders from /proc and return the holders' details by pid."""
    # lazy: /proc/PID reading only when there are sockets to attach processes to
    from portatlas.local import procfs

    inodes = {s.inode for s in sockets if s.inode}
    if not inodes:
        return {}
    try:
        scan = procfs.scan_holders(inodes)
    except OSError as exc:
        warnings.append(Notice("proc-unavailable",
                              f"cannot read /proc ({exc.strerror or exc}): no processes are shown"))
        return {}
    holders = scan.holders
    pids: set[int] = set()
    unowned = 0
    for sock in sockets:
        found = holders.get(sock.inode) if sock.inode else None
        if found:
            found.sort()
            sock.holders = [Holder(pid, fd) for pid, fd in found]
            pids.update(pid for pid, _fd in found)
        elif sock.inode:
            unowned += 1
    procs: dict[int, Process] = {}
    for pid in sorted(pids):
        info = procfs.process_info(pid)
        if info is not None:
            procs[pid] = info
    if unowned:
        warnings.extend(_unowned_notices(sockets, holders, scan, privileged, unowned))
    if not privileged and any(p.exe is None and p.cmdline for p in procs.values()):
        warnings.append(Notice("exe-hidden", "the executable path of some processes is hidden "
                                            "from this user (run as root to see it)"))
    return procs


def _unowned_notices(sockets, holders, scan, privileged: bool, unowned: int) -> list[Notice]:
    if scan.denied:
        owners = sorted({user_name(s.uid) or "?" for s in sockets
                         if s.inode and s.inode not in holders and s.uid is not None})
        how = ("run as root (e.g. sudo portatlas local) to see them" if not privileged else
               "even root was refused (a security module or another user namespace)")
        return [Notice(
            "processes-hidden",
            f"{unowned} of {len(sockets)} sockets show no process: this user may not read "
            f"the open files of {len(scan.denied)} processes of other users; {how}. The socket "
            f"owner is still shown (here: {', '.join(owners)}).")]
    return [Notice("no-process",
                   f"{unowned} of {len(sockets)} sockets are held by no process: kernel sockets "
                   "(NFS, WireGuard, VXLAN and the like) or sockets being closed")]


def _privileged() -> bool:
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None:
        return geteuid() == 0
    try:  # Windows: an elevated administrator sees every process
        import ctypes  # platform: ctypes only on Windows (no os.geteuid)

        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    except Exception:
        return False
