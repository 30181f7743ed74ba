"""The async I/O driver: connections, timeouts, budgets and the order of probes.

Protocol modules never touch sockets (see base.py); this module does, for one port at a time:

1. connect (refused -> closed; no answer -> filtered);
2. read a passive banner for `banner_wait` seconds. Meanwhile, when the registry or the
   probes' favoured ports point at a client-first protocol (HTTP on 80, TLS on 443), that
   probe already runs on a second connection: a hint costs nothing if right and one
   connection if wrong;
3. feed the banner, in memory, to every server-first probe: those that can continue get a
   live connection (the banner one first), the others are dropped without network traffic;
4. otherwise run the client-first probes, a few at a time, each on its own connection with
   its own time limit and read budget. Bytes first seen on any connection are checked like a
   banner ("what the first bytes say"), so a slow banner still finds its probe;
5. the first confident verdict wins; tentative ones are kept while the search goes on;
6. nothing recognised: the port is open-unidentified, with what was seen and how the server
   behaved (silent, closes, resets, tarpit, endless stream, huge banner, binary, text).

Every wait is bounded by the per-probe time and the per-port deadline; every read by a
budget. Cancelling the task (a global deadline, Ctrl-C) leaves the observations in
`PortRun.partial()`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable

from portatlas.identify import registry
from portatlas.identify.base import (CLOSED, ERROR, FILTERED, IDENTIFIED, INCOMPLETE,
                                     UNIDENTIFIED, IdentifyInside, Probe, ProbeContext, Send,
                                     StartTLS, Step, Verdict, escape_evidence)
from portatlas.identify.observations import SAMPLE_LIMIT, Observations
from portatlas.identify.options import Options
from portatlas.identify.schedule import FirstState, Schedule, claims
from portatlas.identify.session import Session
from portatlas.identify.tls import TLSConnection, TLSHandshakeError
from portatlas.parsing import is_ip_literal
from portatlas.vocab import Behaviour

BANNER_BUDGET = 16384      # bytes kept from a passive banner
DRAIN_LIMIT = 1 << 20      # bytes read (and dropped) to tell a huge banner from a stream
DRAIN_TIME = 0.5           # seconds spent on that at most
BANNER_SETTLE = 0.05       # after a first banner chunk, wait this long for the rest
INSIDE_TLS_FAVOURED = ("http",)  # started at once inside TLS when nothing else is hinted


# --- connections -------------------------------------------------------------------------
class TCPConnection:
    """A plain TCP connection with bounded reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> "TCPConnection":
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=BANNER_BUDGET * 2), max(timeout, 0.001))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, limit: int, timeout: float) -> bytes:
        return await asyncio.wait_for(self.reader.read(max(1, limit)), max(timeout, 0.001))

    def close(self) -> None:
        transport = self.writer.transport
        if transport.get_write_buffer_size():
            transport.abort()  # a peer that never reads must not keep us waiting
        else:
            transport.close()


Connector = Callable[[float], Awaitable[Any]]


# --- the first connection ------------------------------------------------------------------
class FirstConnection:
    """The first connection of a port: listened to for a greeting before anything is sent,
    then handed on once (to the probe the Schedule names) or closed."""

    def __init__(self, conn: Any, obs: Observations, opts: Options,
                 left: Callable[[], float]) -> None:
        self.conn = conn
        self.obs = obs
        self.opts = opts
        self.left = left
        self.banner = b""

    def state(self, clean: bool) -> FirstState:
        return FirstState(self.conn is not None, bool(self.banner), clean)

    def take(self) -> Any:
        conn, self.conn = self.conn, None
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def read_banner(self) -> bytes:
        """What the server says unasked within banner_wait (the rest of a first chunk comes
        within BANNER_SETTLE), at most BANNER_BUDGET bytes; beyond that, drain() tells a huge
        banner from an endless stream."""
        conn, obs = self.conn, self.obs
        try:
            chunk = await conn.recv(4096, min(self.opts.banner_wait, max(self.left(), 0)))
        except (asyncio.TimeoutError, TimeoutError):
            obs.silent += 1
            return b""
        except OSError:
            obs.resets += 1
            self.close()
            return b""
        if not chunk:
            obs.closed_empty += 1
            obs.banner_closed = True
            self.close()
            return b""
        buf = bytearray(chunk)
        obs.received(chunk)
        while len(buf) < BANNER_BUDGET:
            try:
                more = await conn.recv(BANNER_BUDGET - len(buf), BANNER_SETTLE)
            except (asyncio.TimeoutError, TimeoutError):
                break
            except OSError:
                self.close()
                break
            if not more:
                self.close()
                break
            obs.received(more)
            buf += more
        if len(buf) >= BANNER_BUDGET:
            obs.oversize += 1
            await self.drain()
        return bytes(buf)

    async def drain(self) -> None:
        """After a banner filled the budget: does it stop (huge banner) or not (stream)?"""
        conn, count, start = self.conn, BANNER_BUDGET, time.monotonic()
        kind = Behaviour.STREAM
        while conn is not None and count < DRAIN_LIMIT:
            left = min(DRAIN_TIME - (time.monotonic() - start), self.left())
            if left <= 0:
                break
            try:
                chunk = await conn.recv(65536, min(left, 0.15))
            except (asyncio.TimeoutError, TimeoutError):
                kind = Behaviour.HUGE_BANNER  # 150 ms of quiet: it stopped
                break
            except OSError:
                kind = Behaviour.HUGE_BANNER
                break
            if not chunk:
                kind = Behaviour.HUGE_BANNER
                break
            count += len(chunk)
            self.obs.received(chunk)
        self.obs.stream = (kind, count, time.monotonic() - start)
        self.close()


# --- one port over TCP ---------------------------------------------------------------------
class PortRun:
    """Identification of one TCP port (or of what speaks inside one TLS layer): connections
    and tasks. Which probe runs next is the Schedule's decision (identify/schedule.py), the
    rules of each conversation the Session's (identify/session.py)."""

    def __init__(self, host: str, port: int, opts: Options, registered: tuple[str, ...],
                 deadline: float, *, tls_info: dict | None = None,
                 connector: Connector | None = None, exclude: frozenset[str] = frozenset(),
                 obs: Observations | None = None) -> None:
        self.host, self.port, self.opts = host, port, opts
        self.registered = registered
        self.deadline = deadline
        self.tls_info = tls_info
        self.connector = connector or (lambda t: TCPConnection.open(host, port, t))
        self.obs = obs or Observations()
        order = [c for c in registry.ordered("tcp", port, registered, opts.only)
                 if c.name not in exclude and (opts.tls or c.name != "tls")]
        # Inside TLS, HTTP is as likely as a port hint (most TLS ports carry HTTPS): when
        # neither the port nor the registry suggests another probe, its GET starts at once,
        # beside the read of the inner greeting - the inner search starts late in the port's
        # time and must not spend a banner wait before its likeliest answer.
        favoured = INSIDE_TLS_FAVOURED if tls_info is not None else ()
        self.sched = Schedule(order, port, registered, self.context, self.obs.note,
                              favoured=favoured)
        self.first: FirstConnection | None = None
        self.sni = opts.server_name or (None if is_ip_literal(host) else host)
        self.on_banner: Callable[[bytes], None] | None = None
        # called once an implicit-TLS handshake completed (the nmap engine then searches
        # inside TLS at once instead of running its plain probes)
        self.on_tls: Callable[[dict], None] | None = None
        self.banner_done = False
        self.leads: set[type[Probe]] = set()  # running probes the port, registry or bytes chose
        # TLS completed, the inside still being searched: what the port reports when its time
        # ends first (merge.not_the_carrier makes it "TLS, the service inside unknown")
        self.carrier: Verdict | None = None

    # -- context for probes
    def context(self) -> ProbeContext:
        return ProbeContext(host=self.host, port=self.port, transport="tcp",
                            server_name=self.sni, in_tls=self.tls_info is not None,
                            registered=self.registered, tls=self.tls_info)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # -- the whole run
    async def run(self, first_conn: Any = None) -> Verdict:
        if first_conn is None:
            try:
                first_conn = await self.connector(min(self.opts.connect_timeout, self.left()))
            except ConnectionRefusedError:
                return Verdict(None, outcome=CLOSED, confidence=1.0,
                               reason="connection refused (nothing listens)")
            except (asyncio.TimeoutError, TimeoutError):
                return Verdict(None, outcome=FILTERED, confidence=0.8,
                               reason=f"no answer to the connection attempt in "
                                      f"{self.opts.connect_timeout:g}s (dropped by a firewall?)")
            except OSError as exc:
                if not _accepted_then_reset(exc):
                    return _connect_error(exc)
                # The server accepted and reset before connect() returned: the same server
                # that, a moment later, resets after connect() returned. Counted the same
                # way, so that it gets the same answer whichever happened first.
                self.obs.connects += 1
                self.obs.resets += 1
                return self._unidentified()
        self.obs.connects += 1
        self.first = first = FirstConnection(first_conn, self.obs, self.opts, self.left)
        running: dict[asyncio.Task, type[Probe]] = {}
        try:
            speculative = self.sched.speculative()
            if speculative:
                self._start(speculative, None, b"", running)
            banner_task = asyncio.ensure_future(first.read_banner())
            try:
                while running and not banner_task.done():
                    # a hinted probe may answer before the banner time is over
                    await asyncio.wait([banner_task, *running],
                                       return_when=asyncio.FIRST_COMPLETED)
                    verdict = self._collect([t for t in running if t.done()], running)
                    if verdict:
                        return verdict
                banner = await banner_task
            finally:
                if not banner_task.done():
                    banner_task.cancel()
                    await asyncio.gather(banner_task, return_exceptions=True)
            self.banner_done = True
            if self.on_banner is not None:
                self.on_banner(banner)  # the nmap engine's NULL probe reads the same bytes
            if banner:
                first.banner = banner
                self.obs.sample("banner", banner)
                self._screen(banner)
                instant = self.sched.instant_answer()
                if instant:
                    return instant
                if self.obs.stream and not self.sched.queue_sf:
                    return self._unidentified()  # a flood nobody claims: probing is pointless
            verdict = await self._loop(running)
            if verdict:
                return verdict
            return self.sched.answer() or self.carrier or self._unidentified()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            first.close()

    def has_lead(self) -> bool:
        """Is a module working on what the port, the registry or the first bytes suggested?
        (The nmap engine holds its active probes meanwhile: a lead usually ends in a verdict.)"""
        sched = self.sched
        return (not self.banner_done or bool(sched.queue_sf) or bool(self.leads)
                or sched.instant is not None or sched.best is not None)

    def _screen(self, data: bytes) -> None:
        self.sched.screen(data)

    # -- scheduling (the decisions are the Schedule's)
    def _start(self, cls: type[Probe], conn: Any, pending: bytes,
               running: dict[asyncio.Task, type[Probe]]) -> None:
        task = asyncio.ensure_future(self._attempt(cls, conn, pending))
        running[task] = cls
        if cls.server_first or registry.hint_tier(cls, self.port, self.registered) <= 1 \
                or claims(cls, self.first.banner if self.first else b""):
            self.leads.add(cls)

    async def _loop(self, running: dict[asyncio.Task, type[Probe]]) -> Verdict | None:
        first = self.first
        while True:
            while True:
                start = self.sched.next(self.opts.parallel, len(running),
                                        first.state(self._c0_clean()))
                if start is None:
                    break
                if start.reuse_first:
                    pending = first.banner
                    self._start(start.cls, first.take(), pending, running)
                else:
                    self._start(start.cls, None, b"", running)
            if not running:
                return None
            left = self.left()
            if left <= 0:
                self.obs.note(f"port time limit of {self.opts.timeout:g}s reached")
                return None
            done, _ = await asyncio.wait(running, timeout=left,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                self.obs.note(f"port time limit of {self.opts.timeout:g}s reached")
                return None
            verdict = self._collect(done, running)
            if verdict:
                return verdict

    def _collect(self, done: Any, running: dict[asyncio.Task, type[Probe]]) -> Verdict | None:
        """Take finished probes out of `running`; a confident verdict is returned, tentative
        ones are kept by the Schedule."""
        for task in done:
            cls = running.pop(task)
            self.leads.discard(cls)
            verdict = self.sched.finished(cls, task.result())
            if verdict:
                return verdict
        return None

    def _c0_clean(self) -> bool:
        # an h2 session cannot carry the HTTP/1.1 request most probes would send
        return not (self.tls_info and self.tls_info.get("alpn") == "h2")

    # -- one probe, one connection
    async def _attempt(self, cls: type[Probe], conn: Any, pending: bytes) -> Verdict | None:
        probe = cls(self.context())
        end = min(time.monotonic() + self.opts.probe_timeout, self.deadline)
        try:
            if conn is None:
                try:
                    conn = await self.connector(min(self.opts.connect_timeout,
                                                    max(self.left(), 0.001)))
                except (OSError, asyncio.TimeoutError, TimeoutError, TLSHandshakeError) as exc:
                    if isinstance(exc, OSError) and _accepted_then_reset(exc):
                        self.obs.connects += 1
                        self.obs.resets += 1
                        self.obs.tried[cls.name] = "connection reset"
                        return None
                    self.obs.tried[cls.name] = f"could not connect: {_oserror_text(exc)}"
                    return None
                self.obs.connects += 1
                end = min(time.monotonic() + self.opts.probe_timeout, self.deadline)
            talk = Conversation(self, probe, conn, end)
            try:
                step = await talk.run(pending)
            finally:
                conn = talk.conn
            if isinstance(step, IdentifyInside):
                if self.on_tls is not None:
                    self.on_tls(talk.tls_info or {})
                verdict = await self._inside(conn, step.fallback, talk.tls_info or {})
                conn = None  # the inner run owns and closed it
                return verdict
            if isinstance(step, Verdict):
                if talk.tls_info and step.tls is None:
                    return replace(step, tls=talk.tls_info)  # the probe's verdict stays as it was
                return step
            self.obs.tried[cls.name] = step.reason or "no match"
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # bugs in a probe must not end the identification
            self.obs.tried[cls.name] = f"probe error: {exc!r}"
            return None
        finally:
            if conn is not None:
                conn.close()

    async def _inside(self, conn: Any, fallback: Verdict, info: dict) -> Verdict:
        """Identify what speaks inside an implicit-TLS layer, on further TLS connections."""
        alpn = ("http/1.1",) if info.get("alpn") in ("h2", "http/1.1") else ()
        sni = self.sni

        async def connect_tls(timeout: float) -> TLSConnection:
            raw = await TCPConnection.open(self.host, self.port, timeout)
            try:
                tls_conn, _ = await TLSConnection.wrap(raw, server_name=sni, alpn=alpn,
                                                       timeout=max(self.opts.probe_timeout, 0.5))
            except BaseException:
                raw.close()
                raise
            return tls_conn

        inner_obs = Observations()
        inner = PortRun(self.host, self.port, self.opts, self.registered, self.deadline,
                        tls_info=info, connector=connect_tls, exclude=frozenset({"tls"}),
                        obs=inner_obs)
        if self.carrier is None:
            extra = dict(fallback.extra)
            extra["inside"] = {"behaviour": "incomplete",
                               "reason": "the search inside TLS was cut short"}
            self.carrier = replace(fallback, tls=info, extra=extra)
        verdict = await inner.run(first_conn=conn)
        for label, data in inner_obs.samples:
            self.obs.sample("tls:" + label, data)
        if verdict.outcome == IDENTIFIED and verdict.protocol:
            return replace(verdict, tls=verdict.tls or info)
        kind, reason = inner_obs.behaviour()
        extra = dict(fallback.extra)
        extra.setdefault("inside", {"behaviour": kind, "reason": reason,
                                    "evidence": escape_evidence(inner_obs.first_bytes)})
        return replace(fallback, tls=info, extra=extra)

    # -- answers without a protocol
    def _unidentified(self) -> Verdict:
        kind, reason = self.obs.behaviour()
        tried = dict(self.obs.tried)
        extra: dict[str, Any] = {"behaviour": kind, "bytes_seen": self.obs.bytes_total,
                                 "connections": self.obs.connects}
        if tried:
            extra["probes"] = tried
        if self.obs.notes:
            extra["notes"] = list(self.obs.notes)
        return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0,
                       evidence=escape_evidence(self.obs.first_bytes), reason=reason, extra=extra)

    def partial(self) -> Verdict:
        """The answer so far, when the run was cut short (deadline or Ctrl-C)."""
        verdict = self.sched.answer() or self.carrier
        if verdict is not None:
            return replace(verdict, reason=(verdict.reason + "; " if verdict.reason else "")
                           + "interrupted before a surer answer")
        if self.obs.connects == 0:
            return Verdict(None, outcome=INCOMPLETE, confidence=0.0,
                           reason="interrupted before the connection was answered")
        verdict = self._unidentified()
        verdict.outcome = INCOMPLETE
        verdict.reason = "interrupted; so far: " + verdict.reason
        return verdict


class Conversation:
    """Runs one probe's steps over one connection, within its time and read budget."""

    def __init__(self, run: PortRun, probe: Probe, conn: Any, end: float) -> None:
        self.run_ = run
        self.probe = probe
        self.conn = conn
        self.end = end
        self.tls_info: dict | None = None
        self.first_seen = False
        self.sample = bytearray()

    def _left(self) -> float:
        return self.end - time.monotonic()

    async def run(self, pending: bytes) -> Step:
        """The probe's conversation: the rules are the Session's (identify/session.py); this
        loop only moves bytes, keeps time and records what it saw."""
        probe, obs = self.probe, self.run_.obs
        s = Session(probe, "tcp", pending)
        self.first_seen = s.fed_pending
        try:
            while not s.done:
                act = s.action
                if isinstance(act, Send):
                    if self._left() <= 0:
                        s.quiet()
                        break
                    await asyncio.wait_for(self.conn.send(act.data), self._left())
                    s.sent()
                    continue
                if isinstance(act, StartTLS):
                    await self._start_tls(s, act)
                    continue
                # Wait: read more
                if self._left() <= 0:
                    if not s.buf:
                        obs.silent += 1
                    s.quiet()
                    break
                try:
                    chunk = await self.conn.recv(s.read_size(), self._left())
                except (asyncio.TimeoutError, TimeoutError):
                    if not s.buf:
                        obs.silent += 1
                    s.quiet()
                    break
                except OSError:
                    obs.resets += 1
                    s.quiet()
                    break
                if not chunk:
                    if not s.buf and not self.first_seen:
                        obs.closed_empty += 1
                    s.quiet()
                    break
                obs.received(chunk)
                if len(self.sample) < SAMPLE_LIMIT:
                    self.sample += chunk[:SAMPLE_LIMIT - len(self.sample)]
                if not self.first_seen:
                    self.first_seen = True
                    self.run_._screen(chunk)
                s.received(chunk)
                if s.over_budget:
                    obs.oversize += 1
            return s.result
        finally:
            obs.sample(probe.name, bytes(self.sample))

    async def _start_tls(self, s: Session, step: StartTLS) -> None:
        run = self.run_
        if not run.opts.tls:
            s.tls_refused("TLS disabled by option")
            return
        implicit = s.implicit_tls
        try:
            try:
                conn, info = await TLSConnection.wrap(
                    self.conn, server_name=step.server_name or run.sni, alpn=tuple(step.alpn),
                    timeout=max(self._left(), 0.05))
            except TLSHandshakeError as exc:
                if not (implicit and step.alpn and "no application protocol" in exc.detail):
                    raise
                # a strict server refused the protocols we offered: once more without ALPN
                run.obs.note("TLS: the server refused our ALPN offer; retried without ALPN")
                self.conn.close()
                self.conn = await run.connector(max(min(run.opts.connect_timeout,
                                                        self._left()), 0.05))
                conn, info = await TLSConnection.wrap(
                    self.conn, server_name=step.server_name or run.sni, alpn=(),
                    timeout=max(self._left(), 0.05))
        except TLSHandshakeError as exc:
            if exc.raw:
                run.obs.received(exc.raw)
                run.obs.sample(self.probe.name + ":handshake", exc.raw)
                if not self.first_seen:
                    self.first_seen = True
                    run._screen(exc.raw)
            if exc.kind == "reset":
                run.obs.resets += 1
            elif exc.kind == "closed":
                run.obs.closed_empty += 1
            elif exc.kind == "timeout" and not exc.raw:
                run.obs.silent += 1
            elif exc.kind == "alert":
                run.obs.tls_refused = exc.detail
            run.obs.note(f"TLS handshake failed ({exc.kind}): {exc.detail}")
            s.tls_failed(f"TLS handshake failed ({exc.kind}): {exc.detail}")
            return
        info["starttls"] = not implicit
        self.conn = conn
        self.tls_info = info
        self.first_seen = True
        s.tls_ready(info)


def _oserror_text(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _accepted_then_reset(exc: OSError) -> bool:
    """connect() failed because the handshake completed and the server reset at once."""
    return exc.errno in (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE)


def _connect_error(exc: OSError) -> Verdict:
    code = exc.errno
    text = _oserror_text(exc)
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
        return Verdict(None, outcome=FILTERED, confidence=0.7,
                       reason=f"connection attempt answered with '{text}' (filtered or unreachable)")
    if isinstance(exc, socket.gaierror):
        return Verdict(None, outcome=ERROR, confidence=0.0, reason=f"cannot resolve host: {text}")
    return Verdict(None, outcome=ERROR, confidence=0.0, reason=f"cannot connect: {text}")
