"""Linux: which processes hold which sockets, and who those processes are, from /proc.

A socket has no owner process in the kernel's tables; like ss, lsof and psutil we walk every
/proc/PID/fd and match the `socket:[INODE]` links. Socket inodes are unique machine-wide, so
scanning all processes is right even inside `ip netns exec` (where /proc still shows the whole
machine): only the sockets of this namespace are asked for, and only their inodes match.
"""

from __future__ import annotations

import os

from portatlas.local.cgroup import describe_cgroup
from portatlas.local.model import Process, user_name

PROC = "/proc"


class ScanResult:
    """Socket inode -> [(pid, fd)], plus what the scan could not read."""

    __slots__ = ("holders", "denied", "scanned")

    def __init__(self) -> None:
        self.holders: dict[int, list[tuple[int, int]]] = {}
        self.denied: list[int] = []   # pids whose fd table we may not read
        self.scanned = 0


def scan_holders(inodes: set[int] | None, proc: str = PROC) -> ScanResult:
    """Find the (pid, fd) pairs holding each wanted socket inode (every socket if inodes is None)."""
    result = ScanResult()
    holders = result.holders
    readlink = os.readlink
    listdir = os.listdir
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    # Compare the link text itself ("socket:[12345]") against the wanted ones: no slicing or
    # number parsing for the thousands of fds that are not wanted.
    wanted = None if inodes is None else {f"socket:[{inode}]": inode for inode in inodes}
    for name in listdir(proc):
        if not name.isdigit():
            continue
        try:
            dir_fd = os.open(f"{proc}/{name}/fd", flags)
        except PermissionError:
            result.denied.append(int(name))
            continue
        except OSError:
            continue  # exited meanwhile, or a kernel thread without an fd table
        pid = int(name)
        result.scanned += 1
        try:
            try:
                entries = listdir(dir_fd)
            except PermissionError:
                result.denied.append(pid)
                continue
            except OSError:
                continue
            for fd in entries:
                try:
                    target = readlink(fd, dir_fd=dir_fd)
                except OSError:
                    continue  # closed meanwhile
                if wanted is not None:
                    inode = wanted.get(target)
                    if inode is None:
                        continue
                elif target.startswith("socket:["):
                    inode = int(target[8:-1])
                else:
                    continue
                found = holders.get(inode)
                if found is None:
                    holders[inode] = [(pid, int(fd))]
                else:
                    found.append((pid, int(fd)))
        finally:
            os.close(dir_fd)
    return result


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def process_info(pid: int, proc: str = PROC) -> Process | None:
    """Name, executable, command line, user, parent, systemd unit or container of one process;
    None when it has gone. Fields this user may not read (another user's exe) stay None."""
    base = f"{proc}/{pid}"
    status = _read(f"{base}/status")
    if status is None:
        return None
    name = uid = ppid = None
    for line in status.split(b"\n", 12):
        if line.startswith(b"Name:"):
            name = line[5:].strip().decode("utf-8", "replace")
        elif line.startswith(b"Uid:"):
            # real, effective, saved, filesystem: the effective uid is who the process acts as
            uid = int(line.split()[2])
        elif line.startswith(b"PPid:"):
            ppid = int(line.split()[1])
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = None  # another user's process, or a kernel thread
    raw = _read(f"{base}/cmdline")
    cmdline = None
    if raw:
        cmdline = [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0")]
    start_time = None
    stat = _read(f"{base}/stat")
    if stat:
        # the name in parentheses may itself hold spaces or ')'; fields resume after the last ')'
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 19:
            start_time = int(fields[19])
    unit = container = cgroup = None
    text = _read(f"{base}/cgroup")
    if text:
        unit, container, cgroup = describe_cgroup(text.decode("utf-8", "replace"))
    return Process(pid, name, exe=exe, cmdline=cmdline, uid=uid, user=user_name(uid), ppid=ppid,
                   unit=unit, container=container, cgroup=cgroup, start_time=start_time)


def start_time(pid: int, proc: str = PROC) -> int | None:
    """The kernel start time of a process (clock ticks since boot), None when it has gone."""
    stat = _read(f"{proc}/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def owner_uid(pid: int, proc: str = PROC) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return None
