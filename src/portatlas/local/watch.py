"""What changed between two looks at the machine (the events `portatlas local --watch` prints)."""

from __future__ import annotations

from portatlas.local.model import Snapshot, Socket

APPEARED = "appeared"
DISAPPEARED = "disappeared"
CHANGED = "changed"  # same socket, other processes hold it now (a fork, a worker that exited)


def diff(before: Snapshot, after: Snapshot) -> list[tuple[str, Socket, Snapshot]]:
    """Events in a stable order: disappeared first, then appeared, then changed; each with the
    snapshot that describes the socket (the old one for disappeared)."""
    old = {s.key(): s for s in before.sockets}
    new = {s.key(): s for s in after.sockets}
    events: list[tuple[str, Socket, Snapshot]] = []
    for key, sock in old.items():
        if key not in new:
            events.append((DISAPPEARED, sock, before))
    for key, sock in new.items():
        if key not in old:
            events.append((APPEARED, sock, after))
    for key, sock in new.items():
        previous = old.get(key)
        if previous is not None and _pids(previous) != _pids(sock):
            events.append((CHANGED, sock, after))
    return events


def _pids(sock: Socket) -> list[int]:
    return sorted({h.pid for h in sock.holders})
