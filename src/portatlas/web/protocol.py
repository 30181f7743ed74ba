"""How `portatlas serve` holds its HTTP connections: uvicorn's httptools protocol plus what a
server facing slow, idle or hostile clients needs (docs/web.md, "Connections").

- Request timeout: a connection gets `request_timeout` seconds from its first byte (or from
  connecting) to a complete request, head and body. Half-sent requests (slowloris) and
  connections that never send anything are closed when it runs out. Between requests of a
  kept-alive connection uvicorn's own keep-alive timeout applies.
- Connection cap: at most `max_connections` open connections, below the process's descriptor
  limit (RLIMIT_NOFILE) with room to spare for the database, threads and the listening
  socket. When a new connection would pass the cap, the connection that has waited longest
  for a complete request is closed to make room (then an idle kept-alive one); only when
  every connection is busy with a request is the newcomer refused. A flood of half-sent
  requests therefore cannot lock out a client that sends whole requests.
- A warning line is logged when the cap is hit (at most one every LOG_EVERY seconds, with a
  count), so it never happens silently.
- The request target is kept for the Host check: an absolute-form request line
  (GET http://other.example/ HTTP/1.1) names the host it is for, and GuardMiddleware refuses
  it unless that is the host of the Host header (portatlas/web/security.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from portatlas.web.security import TARGET_KEY

REQUEST_TIMEOUT = 10.0
LOG_EVERY = 10.0

log = logging.getLogger("uvicorn.error")


def connection_cap(requested: int | None = None) -> int:
    """The most connections to hold: `requested` (default 4096), but never closer to the
    descriptor limit than an eighth of it (at least 64 descriptors stay free)."""
    try:
        import resource  # platform: the resource module exists on Unix only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft <= 0:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):
        soft = 1024
    room = soft - max(64, soft // 8)
    return max(8, min(requested or 4096, room))


class Limits:
    """Settings and counters shared by every connection of one server process."""

    def __init__(self, request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int | None = None) -> None:
        self.request_timeout = request_timeout
        self.max_connections = connection_cap(max_connections)
        self.shed = 0          # connections closed to make room, since the last log line
        self.refused = 0       # newcomers refused because every connection was busy
        self.timed_out = 0
        self._logged = -LOG_EVERY

    def note_cap(self) -> None:
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            log.warning("portatlas: connection limit reached (%d open connections): closed "
                        "%d slow or idle connections and refused %d new ones to make room",
                        self.max_connections, self.shed, self.refused)
            self.shed = self.refused = 0


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request timeout and a connection cap."""

    limits: Limits = Limits()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        self._timer: Any = self.loop.call_later(self.limits.request_timeout, self._too_slow)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    # a request's clock starts with its first byte and stops when it is complete
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:
            self._since = self.loop.time()
            self._timer = self.loop.call_later(self.limits.request_timeout, self._too_slow)

    def on_headers_complete(self) -> None:
        url = self.url
        if url and not url.startswith(b"/"):
            # absolute-form (or '*'): kept for GuardMiddleware's Host check
            self.scope.setdefault("extensions", {})[TARGET_KEY] = url  # type: ignore[typeddict-item]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_timer()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _stop_timer(self) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
            self._timer = None

    @property
    def waiting(self) -> bool:
        """Waiting for the rest of a request (or for any byte at all)."""
        return getattr(self, "_timer", None) is not None

    def _too_slow(self) -> None:
        self._timer = None
        self.limits.timed_out += 1
        if not self.transport.is_closing():
            self.transport.abort()  # no answer: a client this slow is not reading one

    def _make_room(self) -> None:
        """Over the cap: close the connection that has waited longest for its request, else
        an idle kept-alive one; refuse this newcomer only if every other one is busy."""
        limits = self.limits
        victim = None
        oldest = None
        idle = None
        for conn in self.connections:
            if conn is self or not isinstance(conn, GuardedProtocol):
                continue
            if conn.waiting:
                if oldest is None or conn._since < oldest:
                    victim, oldest = conn, conn._since
            elif idle is None and conn.timeout_keep_alive_task is not None:
                idle = conn
        victim = victim or idle
        if victim is not None:
            victim._stop_timer()
            victim.transport.abort()
            limits.shed += 1
        else:
            self._stop_timer()
            self.transport.abort()
            limits.refused += 1
        limits.note_cap()
