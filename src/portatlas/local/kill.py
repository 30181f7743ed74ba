"""Ending the holder of a port ("Address already in use"): TERM, a grace period, then KILL.

Safety rules:
 - never PID 1 (init: ending it brings the machine or container down) nor this process itself;
 - a process is signalled only if it is still the one that was shown: on Linux through a pidfd
   opened after checking the process's start time, so a pid reused meanwhile is never hit;
 - the caller shows who is affected and asks first (the CLI does; --yes skips the question).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable
import select

from portatlas.errors import PortatlasError
from portatlas.local.model import Process, Snapshot, Socket
from portatlas.textsafe import printable

DEFAULT_GRACE = 3.0
KILL_WAIT = 2.0
# Windows has no SIGKILL; os.kill with SIGTERM already ends a process there (TerminateProcess)
SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)


class Refused(PortatlasError):
    """Ending these processes is not something portatlas will do."""


class Target:
    """One process to end and the sockets it holds."""

    __slots__ = ("pid", "process", "sockets")

    def __init__(self, pid: int, process: Process | None) -> None:
        self.pid = pid
        self.process = process
        self.sockets: list[Socket] = []

    @property
    def label(self) -> str:
        p = self.process
        if p is None:
            return f"pid {self.pid}"
        return printable(f"pid {self.pid} ({p.name or '?'}, user {p.user or p.uid})")


def targets(snapshot: Snapshot) -> list[Target]:
    """The processes holding the snapshot's sockets, in pid order."""
    found: dict[int, Target] = {}
    for sock in snapshot.sockets:
        for holder in sock.holders:
            target = found.get(holder.pid)
            if target is None:
                target = found[holder.pid] = Target(holder.pid, snapshot.processes.get(holder.pid))
            if sock not in target.sockets:
                target.sockets.append(sock)
    return [found[pid] for pid in sorted(found)]


def check_allowed(chosen: list[Target]) -> None:
    """Raise Refused when a target is PID 1 or this very process."""

    for target in chosen:
        if target.pid == 1:
            name = printable(target.process.name) if target.process and target.process.name else "init"
            raise Refused(f"refusing to end PID 1 ({name}): it is the init process, and ending it "
                          "takes the whole system (or container) down; if it holds the port for a "
                          "socket-activated service, stop that unit's .socket instead")
        if target.pid == os.getpid():
            raise Refused(f"refusing to end pid {target.pid}: that is portatlas itself")


class Outcome:
    """What happened to one target."""

    __slots__ = ("target", "signals", "result", "seconds", "error")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.signals: list[str] = []
        self.result = "pending"   # exited | survived | gone | replaced | not-permitted
        self.seconds: float | None = None
        self.error: str | None = None

    def to_dict(self) -> dict:
        return {"pid": self.target.pid, "signals": self.signals, "result": self.result,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "error": self.error}

    def sentence(self) -> str:
        label = self.target.label
        if self.result == "exited":
            sent = " then ".join(self.signals)
            return f"sent {sent} to {label}; it exited after {self.seconds:.2f} s"
        if self.result == "gone":
            return f"{label} had already exited; nothing sent"
        if self.result == "replaced":
            return f"pid {self.target.pid} is now a different process; left alone"
        if self.result == "not-permitted":
            return f"not permitted to signal {label}: {self.error} (run as root or as its owner)"
        return f"sent {' then '.join(self.signals)} to {label}; it is still running"


class _Handle:
    """A way to signal and wait for one process: a pidfd on Linux, the bare pid elsewhere."""

    def __init__(self, pid: int, fd: int | None) -> None:
        self.pid = pid
        self.fd = fd

    def send(self, sig: int) -> None:
        if self.fd is not None:
            signal.pidfd_send_signal(self.fd, sig)
        else:
            os.kill(self.pid, sig)

    def exited(self) -> bool:
        if self.fd is not None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            return bool(poller.poll(0))
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _is_zombie(self.pid)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _is_zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet: gone for our purposes (its sockets are
    closed), though kill(pid, 0) still finds it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"Z"
    except FileNotFoundError:
        if os.path.isdir("/proc"):
            return True
    except OSError:
        return False
    try:  # no /proc (macOS, BSD): ask psutil
        import psutil  # optional: psutil is the fallback for systems without /proc

        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except ImportError:
        return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _open(target: Target) -> _Handle | None:
    """A handle on the target if it is still the process shown; None if it is gone or replaced."""
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(target.pid)
        except ProcessLookupError:
            return None
        except OSError:
            fd = None  # kernel without pidfds: fall back to the pid
    expected = target.process.start_time if target.process else None
    if expected is not None and _start_time(target.pid) != expected:
        if fd is not None:
            os.close(fd)
        return None
    return _Handle(target.pid, fd)


def _start_time(pid: int) -> int | float | None:
    if os.path.isdir("/proc"):
        # platform: /proc/PID (Linux) first, psutil below elsewhere
        from portatlas.local.procfs import start_time

        return start_time(pid)
    try:
        import psutil  # optional: psutil, the fallback off Linux

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def end(chosen: list[Target], grace: float = DEFAULT_GRACE,
        progress: Callable[[str], None] | None = None) -> list[Outcome]:
    """SIGTERM every target, wait up to `grace` seconds, SIGKILL the ones still running and wait
    a little more. Returns one Outcome per target."""
    check_allowed(chosen)
    outcomes = [Outcome(t) for t in chosen]
    handles: dict[int, _Handle] = {}
    started = time.monotonic()
    for outcome in outcomes:
        handle = _open(outcome.target)
        if handle is None:
            gone = not os.path.exists(f"/proc/{outcome.target.pid}") if os.path.isdir("/proc") else True
            outcome.result = "gone" if gone else "replaced"
            continue
        try:
            handle.send(signal.SIGTERM)
        except ProcessLookupError:
            outcome.result = "gone"
            handle.close()
            continue
        except PermissionError as exc:
            outcome.result, outcome.error = "not-permitted", exc.strerror or str(exc)
            handle.close()
            continue
        outcome.signals.append("SIGTERM")
        handles[outcome.target.pid] = handle
    _wait(outcomes, handles, started, grace)
    late = [o for o in outcomes if o.result == "pending"]
    if late:
        if progress:
            progress(f"still running after {grace:g} s: "
                     + ", ".join(o.target.label for o in late) + "; sending SIGKILL")
        for outcome in late:
            handle = handles[outcome.target.pid]
            try:
                handle.send(SIGKILL)
                outcome.signals.append("SIGKILL")
            except ProcessLookupError:
                pass
        _wait(outcomes, handles, started, grace + KILL_WAIT)
    for outcome in outcomes:
        if outcome.result == "pending":
            outcome.result = "survived"
    for handle in handles.values():
        handle.close()
    return outcomes


def _wait(outcomes: list[Outcome], handles: dict[int, _Handle], started: float, until: float) -> None:
    while True:
        pending = [o for o in outcomes if o.result == "pending"]
        for outcome in pending:
            if handles[outcome.target.pid].exited():
                outcome.result = "exited"
                outcome.seconds = time.monotonic() - started
        if not any(o.result == "pending" for o in outcomes):
            return
        if time.monotonic() - started >= until:
            return
        time.sleep(0.02)
