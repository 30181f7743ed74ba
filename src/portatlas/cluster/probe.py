"""What the client asks every worker before a scan: which portatlas it has, and whether it
has a route to the targets.

This module is sent to the workers by value (cloudpickle), not imported there, so it must
work on a worker that has no portatlas at all: standard library only, and nothing at module
level but the function.
"""

from __future__ import annotations


def worker_facts(addresses: list[tuple[str, int, int]]) -> dict:
    """{"portatlas": version | None, "error": str | None, "python": "3.11.2",
    "no_route": [index, ...]} for `addresses` given as (address, family, scope id).

    Routing is asked of the kernel with a connected UDP socket: connect() picks the route
    and source address and sends nothing; ENETUNREACH/EHOSTUNREACH/EACCES mean this worker
    cannot send to that address at all.
    """
    # inside: shipped to workers by value, so nothing at module level but the function
    import errno
    import platform
    import socket

    facts: dict = {"portatlas": None, "error": None, "python": platform.python_version(),
                   "no_route": []}
    try:
        from portatlas import __version__  # inside try: the worker may have no portatlas at all

        facts["portatlas"] = __version__
        # the shard code must import, too (by name: this check is about the install, not a
        # dependency of this module); importing the engines now also spares the first shard
        # that time (every worker does it at once, during this check)
        import importlib

        for name in ("portatlas.cluster.work", "portatlas.scan.scanner", "portatlas.scan.tcp"):
            importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - whatever fails is reported, not raised
        facts["error"] = f"{type(exc).__name__}: {exc}"[:200]
    unreachable = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM,
                   errno.EADDRNOTAVAIL)
    socks: dict[int, socket.socket] = {}
    try:
        for index, (address, family, scope_id) in enumerate(addresses):
            if family not in socks:  # connecting again re-points a UDP socket
                socks[family] = socket.socket(family, socket.SOCK_DGRAM)
            sockaddr = (address, 9, 0, scope_id) if family == socket.AF_INET6 else (address, 9)
            try:
                socks[family].connect(sockaddr)
            except OSError as exc:
                if exc.errno in unreachable:
                    facts["no_route"].append(index)
    finally:
        for s in socks.values():
            s.close()
    return facts
