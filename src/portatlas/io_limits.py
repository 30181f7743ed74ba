"""Reading an input file with a byte limit, whatever kind of file it is.

Every file portatlas reads on a user's say-so (a registry source, a targets file, nmap's
probes, a database path) goes through here, because a path can name much more than a
regular file: /dev/zero never ends, a FIFO blocks the open until someone writes, /dev/stdin
can be a pipe of any length. The rules:

- regular files: the size is checked before reading, and the read itself stops at the limit
  (the file may grow while we read);
- standard input ('-', /dev/stdin, /dev/fd/0, whatever it is: pipe, terminal, /dev/zero):
  read up to the limit, then refused;
- anything else (FIFOs, character and block devices, sockets, directories): refused at once.
  The open uses O_NONBLOCK, so even a FIFO with no writer cannot hang it.
"""

from __future__ import annotations

import os
import stat

from portatlas.errors import DataError, PortatlasError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Type

STDIN_NAMES = ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")
_CHUNK = 1 << 16


def human_size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            value = count / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _read_fd(fd: int, limit: int, label: str, what: str, error: Type[PortatlasError]) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
        except BlockingIOError:
            raise error(f"{label}: nothing to read yet (a non-blocking input)") from None
        except OSError as exc:
            raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise error(f"{label}: more than {human_size(limit)}, too large for {what}")


def is_stdin(path: str) -> bool:
    return path in STDIN_NAMES


def read_limited(path: str, *, limit: int, what: str,
                 error: Type[PortatlasError] = DataError, allow_stdin: bool = True) -> bytes:
    """The bytes of `path` (a regular file, or standard input), at most `limit` of them.

    `what` names the expected content for messages ("a registry file", "a targets file").
    Raises `error` with a one-line message for anything else."""
    if allow_stdin and is_stdin(path):
        return _read_stdin(limit, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {what}") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as exc:
        raise error(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            if allow_stdin and _same_as_stdin(info):
                return _read_stdin(limit, what, error)
            raise error(f"{path}: is {_kind(info.st_mode)}, not {what} (give a regular file"
                        + (", or '-' for standard input)" if allow_stdin else ")"))
        if info.st_size > limit:
            raise error(f"{path}: {human_size(info.st_size)} is too large for {what} "
                        f"(the most is {human_size(limit)})")
        return _read_fd(fd, limit, path, what, error)
    finally:
        os.close(fd)


def _same_as_stdin(info: os.stat_result) -> bool:
    try:
        mine = os.fstat(0)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (info.st_dev, info.st_ino)


def _read_stdin(limit: int, what: str, error: Type[PortatlasError]) -> bytes:
    try:
        info = os.fstat(0)
    except OSError:
        raise error("standard input is closed") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"standard input is a directory, not {what}")
    return _read_fd(0, limit, "standard input", what, error)


def require_regular_file(path: str, *, what: str, error: Type[PortatlasError] = DataError) -> None:
    """Refuse a path that exists but is not a regular file (a FIFO, a device, a directory):
    for files handed to a library that would block on them or read them without end."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"{path}: cannot use it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is {_kind(info.st_mode)}, not {what}")
