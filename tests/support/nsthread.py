"""Run Python code inside a network namespace without a subprocess.

A network namespace belongs to a thread, not to a process: a thread that calls setns(2) on
/run/netns/NAME creates all its sockets inside that namespace (and sockets keep their
namespace for life). Tests use this to run the identification driver, or a hostile test
server, in-process: no interpreter start-up per call, and exceptions surface directly.

Only numeric addresses should be used from such a thread: asyncio resolves host names in a
thread pool whose threads are still in the root namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter(name: str) -> None:
    """Move the calling thread into network namespace `name` (needs root)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in(name: str, fn: Callable[..., Any], *args: Any, call_limit: float = 300,
            **kw: Any) -> Any:
    """Call fn(*args, **kw) in a fresh thread inside namespace `name`; return its result
    (waiting `call_limit` seconds at most)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter(name)
            box["value"] = fn(*args, **kw)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join(call_limit)
    if thread.is_alive():
        raise TimeoutError(f"call in netns {name} did not finish in {call_limit}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def start_in(name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> threading.Thread:
    """Run fn(*args, **kw) in a background daemon thread inside namespace `name`."""

    def target() -> None:
        enter(name)
        fn(*args, **kw)

    thread = threading.Thread(target=target, name=f"netns-bg-{name}", daemon=True)
    thread.start()
    return thread
