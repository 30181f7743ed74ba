"""The I/O side of the nmap engine: sends nmap's probes, reads the replies, asks matching.py.

One port at a time (the caller runs many ports at once):

TCP
 1. NULL: the passive greeting, read once by the portatlas driver and handed over (no second
    wait); the NULL probe's lines judge it. A hard match ends the port.
 2. The probes of plan.py (port hint first, then rarity <= intensity), `parallel` at once,
    each on its own connection: connect, send the payload, read until a hard match, a close
    or the probe's wait. The wait follows the measured round trip (connect time) instead of
    nmap's fixed 5-6 s: RTT_FACTOR x RTT, at least MIN_WAIT, at most the probe timeout,
    stretched by the probe's totalwaitms against nmap's default 5000. A probe's reply is
    judged only by its own lines, its fallbacks' and NULL's (matching.py).
 3. A soft match narrows the remaining queue to probes that can name its service; the first
    hard match cancels everything else.
 4. A hard match of `ssl`: the same again inside TLS (sslports as the hint); the inner
    answer is reported with tunnel "ssl".

UDP: the plan's UDP probes, `udp_parallel` at once, each from its own connected socket (an
ICMP port-unreachable surfaces as ECONNREFUSED); each datagram is judged by its probe's own
lines and fallbacks (never NULL's).

Every read is bounded (REPLY_LIMIT bytes kept per probe), every wait by the port deadline.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from portatlas.identify.driver import TCPConnection
from portatlas.identify.nmap.db import DEFAULT_TOTALWAITMS, NmapProbe, ServiceProbes
from portatlas.identify.nmap.matching import Hit, match_reply
from portatlas.identify.nmap.plan import excluded, plan
from portatlas.identify.tls import TLSConnection

REPLY_LIMIT = 16384   # bytes of one reply kept and matched (nmap keeps about as much)
RTT_FACTOR = 20.0     # a probe waits this many connect round trips for its reply...
MIN_WAIT = 0.3        # ...but at least this long (servers take time to think)
SETTLE = 0.05         # after a chunk that matched nothing, the reply may still be growing


@dataclass
class EngineResult:
    """What nmap's probes found on one port."""

    hard: Hit | None = None
    soft: Hit | None = None
    weak: Hit | None = None  # a hard match of a weak line (db.MatchLine.weak): not a name
    sent: list[str] = field(default_factory=list)        # probe names, in send order
    replies: list[tuple[str, bytes]] = field(default_factory=list)  # (probe, first bytes)
    notes: list[str] = field(default_factory=list)
    lines_tried: int = 0
    match_seconds: float = 0.0
    refused: int = 0       # UDP: ICMP port unreachable
    tls: dict[str, Any] | None = None
    excluded: bool = False

    @property
    def best(self) -> Hit | None:
        return self.hard or self.soft

    def to_dict(self) -> dict[str, Any]:
        return {"hit": self.best.to_dict() if self.best else None,
                "weak_hit": self.weak.to_dict() if self.weak else None,
                "probes_sent": list(self.sent), "replies": len(self.replies),
                "lines_tried": self.lines_tried,
                "match_ms": round(self.match_seconds * 1000, 2), "notes": list(self.notes)}


@dataclass
class EngineSettings:
    intensity: int = 7
    parallel: int = 6          # TCP probes at once per port
    udp_parallel: int = 24     # UDP probes at once per port
    probe_timeout: float = 1.5
    connect_timeout: float = 2.0
    tls: bool = True
    server_name: str | None = None
    head_start: float = 0.25   # the portatlas modules' head start before nmap's active probes
    max_hold: float = 3.0      # ...longer while `hold()` says a module works on a lead


Connector = Callable[[float], Awaitable[Any]]


_MATCHER: Any = None


def _matcher() -> Any:
    """One worker thread for matching: a long regex search then never stalls the event loop
    (TLS handshakes and reads of other ports go on meanwhile; `re` keeps the GIL, but the
    interpreter switches threads every few milliseconds)."""
    global _MATCHER
    if _MATCHER is None:
        # lazy: the matcher thread (and its module) only once a reply is to be matched
        from concurrent.futures import ThreadPoolExecutor

        _MATCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portatlas-nmap-match")
    return _MATCHER


class _Search:
    """Shared state of one port's search: the queue, the best hits, the stop signal."""

    def __init__(self, db: ServiceProbes, result: EngineResult) -> None:
        self.db = db
        self.result = result
        self.done = asyncio.Event()

    async def judge(self, probe: NmapProbe, data: bytes, tunnel: str | None,
                    greeting: bytes | None = None, commit: bool = True) -> Hit | None:
        """The hit of `data` (soft and weak ones are recorded at once); a hard hit ends the
        port's search only when `commit` - else the caller commits it once the reply has
        stopped growing (see TCPEngine._one)."""
        start = time.perf_counter()
        stats: dict[str, int] = {}
        # the server greets on every connection: that part of a reply is NULL's evidence
        glen = len(greeting) if greeting and probe.name != "NULL" \
            and data.startswith(greeting[:16]) else 0
        loop = asyncio.get_running_loop()
        hit = await loop.run_in_executor(
            _matcher(), lambda: match_reply(self.db, probe, data[:REPLY_LIMIT], tunnel=tunnel,
                                            stats=stats, greeting_len=glen))
        self.result.match_seconds += time.perf_counter() - start
        self.result.lines_tried += stats.get("lines", 0)
        if hit is None:
            return None
        if hit.weak and not hit.soft:
            if self.result.weak is None:
                self.result.weak = hit
            return None  # the search goes on: this proves too little
        if hit.soft:
            if self.result.soft is None:
                self.result.soft = hit
        elif commit:
            self.commit(hit)
        return hit

    def commit(self, hit: Hit) -> None:
        """A hard hit names the port: the first one ends the search."""
        if self.result.hard is None:
            self.result.hard = hit
            self.done.set()


class TCPEngine:
    def __init__(self, db: ServiceProbes, host: str, port: int, settings: EngineSettings,
                 deadline: float, *, connector: Connector | None = None,
                 tunnel: str | None = None) -> None:
        self.db, self.host, self.port, self.s = db, host, port, settings
        self.deadline = deadline
        self.tunnel = tunnel
        self.connector = connector or self._plain_connect
        self.result = EngineResult()
        self.search = _Search(db, self.result)
        self.rtt: float | None = None
        self.greeting: bytes | None = None
        self.hold: Callable[[], bool] | None = None  # a module works on a lead (see _hold)
        self.greeting_judged = asyncio.Event()  # NULL's lines have judged the banner
        # the portatlas TLS module completed a handshake on this port: nmap's plain probes
        # are pointless, its plan goes inside TLS at once (and the modules' head start ends)
        self.tls_seen = asyncio.Event()
        self.inside = False  # the search inside TLS has begun

    def tls_found(self, info: dict[str, Any]) -> None:
        """TLS is known to be spoken here (the driver's handshake): search inside it now.
        The handshake's duration is a sample of the server's own response time (the connect
        round trip is the kernel's): inner waits adapt to the slower of the two."""
        if self.tunnel is not None or not self.s.tls or self.tls_seen.is_set():
            return
        ms = info.get("handshake_ms")
        if isinstance(ms, (int, float)) and ms > 0:
            self.app_rtt = max(self.app_rtt or 0.0, ms / 1000.0 / 2)
        self.tls_seen.set()

    app_rtt: float | None = None  # the server's response time, when measured (TLS handshake)
    parent: "TCPEngine | None" = None  # inside TLS: the engine whose connections we use

    async def _plain_connect(self, timeout: float) -> Any:
        return await TCPConnection.open(self.host, self.port, timeout)

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def wait_for(self, probe: NmapProbe) -> float:
        """How long to wait for `probe`'s reply: adapted to the round trip (module text)."""
        app = max(self.app_rtt or 0.0, (self.parent.app_rtt or 0.0) if self.parent else 0.0)
        rtt = max(self.rtt if self.rtt is not None else 0.05, app)
        base = min(max(MIN_WAIT, RTT_FACTOR * rtt), self.s.probe_timeout)
        return base * max(1.0, probe.totalwaitms / DEFAULT_TOTALWAITMS)

    async def run(self, greeting: Awaitable[bytes | None] | bytes | None = None) -> EngineResult:
        """`greeting`: the passive banner the driver read (or an awaitable of it); None when
        the caller has none (then the engine does not wait for one itself)."""
        if isinstance(greeting, (bytes, bytearray)) or greeting is None:
            banner = greeting
        else:
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the awaited future completes
            future = asyncio.ensure_future(greeting)
            await asyncio.wait({future}, timeout=max(self._left(), 0.001))
            banner = future.result() if future.done() and not future.cancelled() \
                and future.exception() is None else None
        null = self.db.probe("tcp", "NULL")
        self.greeting = bytes(banner) if banner else None
        try:
            if self.tunnel is None:
                # the modules' head start, before any work of ours: a module that knows the
                # protocol answers meanwhile (then we are cancelled, having spent nothing);
                # it ends as soon as TLS is known (then the search goes inside at once)
                hold = self.hold
                released = (lambda: hold() and not self.tls_seen.is_set()) if hold else None
                await _hold(self.s, released, self._left)
            if banner and null is not None:
                self.result.replies.append(("NULL", bytes(banner[:REPLY_LIMIT])))
                hit = await self.search.judge(null, bytes(banner), self.tunnel)
                if hit is not None and not hit.soft:
                    self.greeting_judged.set()
                    return await self._maybe_tls()
        finally:
            self.greeting_judged.set()
        if excluded(self.db, "tcp", self.port):
            self.result.excluded = True
            self.result.notes.append(f"port {self.port} is in nmap's Exclude list: "
                                     "no nmap probes sent")
            return self.result
        if not self.tls_seen.is_set():
            await self._probe_all()
        return await self._maybe_tls()

    async def _probe_all(self, only: tuple[str, ...] | None = None) -> None:
        queue = plan(self.db, "tcp", self.port, intensity=self.s.intensity,
                     tls=self.tunnel == "ssl")
        if only is not None:
            queue = [p for p in (self.db.probe("tcp", n) for n in only) if p is not None]
        running: set[asyncio.Task] = set()
        try:
            while (queue or running) and not self.search.done.is_set() and self._left() > 0:
                soft = self.result.soft
                if soft is not None:  # a soft match: only probes that can name its service
                    narrowed = plan(self.db, "tcp", self.port, intensity=self.s.intensity,
                                    tls=self.tunnel == "ssl", softmatch=soft.service,
                                    done=frozenset(self.result.sent))
                    keep = {p.name for p in narrowed}
                    queue = [p for p in queue if p.name in keep]
                while queue and len(running) < max(1, self.s.parallel):
                    probe = queue.pop(0)
                    self.result.sent.append(probe.name)
                    running.add(asyncio.ensure_future(self._one(probe)))
                if not running:
                    break
                stoppers = {asyncio.ensure_future(self.search.done.wait())}
                if self.tunnel is None and only is None:
                    stoppers.add(asyncio.ensure_future(self.tls_seen.wait()))
                try:
                    done, _ = await asyncio.wait(running | stoppers, timeout=self._left(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for stopper in stoppers:
                        stopper.cancel()
                running -= done
                if not done or done & stoppers:
                    break
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _one(self, probe: NmapProbe) -> None:
        conn = None
        pending: Hit | None = None  # a hard hit waiting for the reply to stop growing
        try:
            started = time.monotonic()
            try:
                conn = await self.connector(min(self.s.connect_timeout, max(self._left(), 0.01)))
            except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
                self.result.notes.append(f"{probe.name}: could not connect ({exc.__class__.__name__})")
                return
            except Exception as exc:  # e.g. a TLS handshake refused inside the tunnel
                self.result.notes.append(f"{probe.name}: {exc}"[:160])
                return
            if self.rtt is None or self.tunnel is None:
                rtt = time.monotonic() - started
                self.rtt = rtt if self.rtt is None else min(self.rtt, rtt)
            if probe.payload:
                await asyncio.wait_for(conn.send(probe.payload), max(self._left(), 0.01))
            end = min(time.monotonic() + self.wait_for(probe), self.deadline)
            buf = bytearray()
            settle = max(SETTLE, 2 * (self.rtt or 0.0))
            # A hard hit on a reply still growing is not a verdict yet: memcached answers
            # GenericLines' two empty lines with "ERROR\r\n" twice, in two segments under
            # load, and the first alone matches another service's `^ERROR\r\n$` line
            # (AChat), the whole reply memcached's. So a hard hit waits until the reply
            # stops growing (quiet for `settle`, closed, or the probe's time over); when it
            # grew meanwhile, a hit on the longer reply replaces it, and without one the
            # earlier hit stands (nmap's rule: a line judges what has arrived - OpenVPN
            # repeats its reset packet, and its `$`-anchored line matches the first only).
            pending = None
            while len(buf) < REPLY_LIMIT:
                left = end - time.monotonic()
                if left <= 0:
                    break
                try:
                    chunk = await conn.recv(REPLY_LIMIT - len(buf),
                                            left if pending is None else min(left, settle))
                except (asyncio.TimeoutError, TimeoutError):
                    break
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                hit = await self.search.judge(probe, bytes(buf), self.tunnel, self.greeting,
                                              commit=False)
                if hit is not None and not hit.soft:
                    pending = hit
                end = min(end, time.monotonic() + settle) \
                    if hit is None and len(buf) > 0 and _looks_complete(buf) else end
            if pending is not None:
                self.search.commit(pending)
                pending = None
            if buf:
                self.result.replies.append((probe.name, bytes(buf[:4096])))
        except asyncio.CancelledError:
            if pending is not None:  # the port's time ended the wait: the hit still counts
                self.search.commit(pending)
            raise
        except Exception as exc:  # one probe's trouble never ends the port
            self.result.notes.append(f"{probe.name}: error {exc!r}"[:160])
        finally:
            if conn is not None:
                conn.close()

    async def passive_greeting(self) -> bytes | None:
        """NULL inside a tunnel: connect, send nothing, read what the server says first."""
        conn = None
        try:
            conn = await self.connector(min(self.s.connect_timeout, max(self._left(), 0.01)))
            app = (self.parent.app_rtt or 0.0) if self.parent else 0.0
            wait = min(max(MIN_WAIT, RTT_FACTOR * max(self.rtt or 0.0, app)),
                       self.s.probe_timeout)
            buf = bytearray()
            end = time.monotonic() + wait
            while len(buf) < REPLY_LIMIT and time.monotonic() < end:
                chunk = await conn.recv(REPLY_LIMIT - len(buf),
                                        max(min(end - time.monotonic(), 0.05 if buf else wait),
                                            0.001))
                if not chunk:
                    break
                buf += chunk
            return bytes(buf) or None
        except (OSError, asyncio.TimeoutError, TimeoutError):
            return bytes(buf) if conn is not None and buf else None
        except Exception as exc:
            self.result.notes.append(f"NULL inside TLS: {exc}"[:160])
            return None
        finally:
            if conn is not None:
                conn.close()

    async def _maybe_tls(self) -> EngineResult:
        """Inside TLS after nmap's own `ssl` match, or once the driver's handshake showed TLS
        (and no hard match named the service meanwhile)."""
        hard = self.result.hard
        ssl_only = hard is not None and hard.service == "ssl"
        if not (ssl_only or (hard is None and self.tls_seen.is_set())) or self.tunnel \
                or not self.s.tls or self._left() <= 0.05:
            return self.result
        return await self.inside_tls()

    async def only(self, names: tuple[str, ...]) -> EngineResult:
        """Just these probes, at once (no head start): what a module's verdict leaves open
        over a carrier - e.g. GetRequest, whose lines name the service an HTTP server is."""
        await self._probe_all(only=names)
        return self.result

    async def inside_tls(self, only: tuple[str, ...] | None = None) -> EngineResult:
        """nmap's probes again, inside TLS (sslports as the hint): after nmap's own `ssl`
        match, or when the portatlas TLS module completed a handshake (then `only` may name
        the probes still worth sending)."""
        hard = self.result.hard
        self.inside = True
        inner = TCPEngine(self.db, self.host, self.port, self.s, self.deadline,
                          connector=self._tls_connect, tunnel="ssl")
        inner.rtt = self.rtt
        inner.parent = self
        if only is not None:
            await inner._probe_all(only=only)
            found = inner.result
        else:
            found = await inner.run(inner.passive_greeting())
        self.result.sent += ["ssl:" + n for n in found.sent]
        self.result.replies += [("ssl:" + n, d) for n, d in found.replies]
        self.result.notes += found.notes
        self.result.lines_tried += found.lines_tried
        self.result.match_seconds += found.match_seconds
        self.result.tls = found.tls or self._tls_info
        if found.hard is not None:
            self.result.hard = found.hard
        elif found.soft is not None:
            self.result.soft = found.soft
            if hard is not None:
                self.result.notes.append("inside TLS: a soft match only; "
                                         f"nmap's ssl line {hard.line} kept as the hard match")
        return self.result

    _tls_info: dict[str, Any] | None = None

    async def _tls_connect(self, timeout: float) -> Any:
        raw = await TCPConnection.open(self.host, self.port, timeout)
        try:
            conn, info = await TLSConnection.wrap(raw, server_name=self.s.server_name,
                                                  alpn=(), timeout=max(self.s.probe_timeout, 0.5))
        except BaseException:
            raw.close()
            raise
        if self._tls_info is None:
            self._tls_info = info
        ms = info.get("handshake_ms")
        if isinstance(ms, (int, float)) and ms > 0:  # the server's response time (tls_found)
            self.app_rtt = max(self.app_rtt or 0.0, ms / 1000.0 / 2)
        return conn


async def _hold(s: EngineSettings, hold: Callable[[], bool] | None,
                left: Callable[[], float]) -> None:
    """The modules' head start: `head_start` seconds, and up to `max_hold` while `hold()`
    (a module working on a lead) stays true."""
    start = time.monotonic()
    if s.head_start > 0:
        await asyncio.sleep(min(s.head_start, max(left(), 0)))
    while hold is not None and left() > 0 and time.monotonic() - start < s.max_hold:
        try:
            if not hold():
                return
        except Exception:  # a driver without the method: no hold
            return
        await asyncio.sleep(0.02)


def _looks_complete(buf: bytearray) -> bool:
    """A reply ending in a line break or a NUL has probably arrived whole: wait only a moment
    for more (a greeting + reply pair, or a banner split in two, still gets SETTLE)."""
    return buf[-1:] in (b"\n", b"\0", b">")


class UDPEngine:
    def __init__(self, db: ServiceProbes, host: str, port: int, settings: EngineSettings,
                 deadline: float) -> None:
        self.db, self.host, self.port, self.s = db, host, port, settings
        self.deadline = deadline
        self.result = EngineResult()
        self.search = _Search(db, self.result)
        self.hold: Callable[[], bool] | None = None

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    async def run(self) -> EngineResult:
        if excluded(self.db, "udp", self.port):
            self.result.excluded = True
            self.result.notes.append(f"port {self.port} is in nmap's Exclude list")
            return self.result
        queue = plan(self.db, "udp", self.port, intensity=self.s.intensity)
        await _hold(self.s, self.hold, self._left)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        running: set[asyncio.Task] = set()
        try:
            while (queue or running) and not self.search.done.is_set() and self._left() > 0:
                soft = self.result.soft
                if soft is not None:
                    keep = {p.name for p in plan(self.db, "udp", self.port,
                                                 intensity=self.s.intensity,
                                                 softmatch=soft.service)}
                    queue = [p for p in queue if p.name in keep]
                while queue and len(running) < max(1, self.s.udp_parallel):
                    probe = queue.pop(0)
                    self.result.sent.append(probe.name)
                    running.add(asyncio.ensure_future(self._one(probe, family, address)))
                if not running:
                    break
                stopper = asyncio.ensure_future(self.search.done.wait())
                try:
                    done, _ = await asyncio.wait(running | {stopper}, timeout=self._left(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                running -= done
                if not done:
                    break
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return self.result

    async def _one(self, probe: NmapProbe, family: int, address: Any) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(address)
            await loop.sock_sendall(sock, probe.payload)
            wait = min(self.s.probe_timeout, probe.totalwaitms / 1000.0)
            end = min(time.monotonic() + wait, self.deadline)
            resent = False
            replies = 0
            while replies < 8:
                left = end - time.monotonic()
                if left <= 0:
                    break
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65535),
                                                  min(left, wait / 2) if not resent else left)
                except (asyncio.TimeoutError, TimeoutError):
                    if not resent and replies == 0:  # one retransmission: datagrams get lost
                        resent = True
                        await loop.sock_sendall(sock, probe.payload)
                    continue
                except ConnectionRefusedError:
                    self.result.refused += 1
                    return
                replies += 1
                self.result.replies.append((probe.name, bytes(data[:4096])))
                hit = await self.search.judge(probe, data, None)
                if hit is not None:
                    break
        except asyncio.CancelledError:
            raise
        except ConnectionRefusedError:
            self.result.refused += 1
        except Exception as exc:
            self.result.notes.append(f"{probe.name}: error {exc!r}"[:160])
        finally:
            sock.close()
