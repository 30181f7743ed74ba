"""`portatlas local --identify`: identify this host's own listening sockets."""

from __future__ import annotations

import ipaddress
from typing import Any


def local_target(address: str) -> str | None:
    """Where to connect to reach a listener of this host: its own address, or the loopback of
    its family when it listens on every address. None for addresses we never connect to."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    if ip.is_multicast:
        return None
    return str(ip)


def identify_listeners(sockets: list[dict[str, Any]], opts: Any, deadline: float = 60.0) -> None:
    """Identify this host's own listening sockets (socket dicts of `portatlas local`), in
    place: each gets an 'identified' verdict dict. Only listeners of the namespace/host we
    run in are contacted (their own address, or loopback for wildcard ones)."""
    from portatlas.identify import identify_many

    targets, owners = [], []
    for sock in sockets:
        listening = sock.get("state") in ("LISTEN", "listen") or sock.get("transport") == "udp"
        target = local_target(sock.get("address") or "") if listening else None
        if target is None or not sock.get("port"):
            continue
        key = (target, int(sock["port"]), sock["transport"])
        if key not in targets:
            targets.append(key)
        owners.append((sock, targets.index(key)))
    if not targets:
        return
    batch = identify_many(targets, options=opts, deadline=deadline)
    for sock, index in owners:
        sock["identified"] = batch.results[index].to_dict()


