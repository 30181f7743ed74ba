"""Which probe next, and on which connection: the TCP driver's decisions, without I/O.

The driver (identify/driver.py) opens connections, reads the banner and runs conversations;
it asks a Schedule what to start and tells it what was seen and what each probe concluded.

    sched = Schedule(order, port, registered, context)
    sched.speculative()          -> a hinted (or favoured) client-first probe to start at
                                    once, or None
    sched.screen(first_bytes)    -> feeds them in memory to every server-first probe
    sched.next(parallel, running, first)  -> Start(probe class, reuse the first connection?)
    sched.finished(cls, verdict) -> a confident verdict ends the port (else kept as best)
    sched.answer()               -> the best tentative answer, or None

The rules:
 - server-first probes are only run when bytes were seen: the first bytes are fed to each in
   memory (screen); those that answer NoMatch are dropped, a Verdict there is kept as the
   `instant` answer, the rest are queued - those whose claims_banner() says "mine" first.
   Client-first probes whose protocol also greets first (claims_banner) move to that queue.
 - server-first probes run before client-first ones, and no client-first probe starts while a
   server-first one runs (it would send into the greeting the other is reading).
 - the first connection is handed on once: with its banner to the first server-first probe,
   or, silent, to the first client-first probe (unless it is an h2 session inside TLS, which
   cannot carry the HTTP/1.1 request most probes send).
 - at most `parallel` probes at once (at least one).
 - a verdict at or above TENTATIVE confidence ends the port; lower ones are kept, the surest
   wins.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

from portatlas.identify import registry
from portatlas.identify.base import TENTATIVE, NoMatch, Probe, ProbeContext, Verdict, Wait


class Start(NamedTuple):
    """Start this probe; on the first connection (with its banner as pending bytes) or not."""

    cls: type[Probe]
    reuse_first: bool


class FirstState(NamedTuple):
    """What the driver can say about the first connection when asked what to start next."""

    available: bool      # still open and not handed on
    banner: bool         # bytes arrived on it before we sent anything
    clean: bool          # it can carry another probe's request (not an h2 session)


def claims(cls: type[Probe], data: bytes) -> bool:
    try:
        return bool(cls.claims_banner(bytes(data)))
    except Exception:  # a probe bug is not a claim
        return False


class Schedule:
    def __init__(self, order: list[type[Probe]], port: int, registered: Iterable[str],
                 context: Callable[[], ProbeContext],
                 note: Callable[[str], None] = lambda text: None,
                 favoured: Iterable[str] = ()) -> None:
        # `favoured`: probe names as likely as a port hint here (inside TLS: http)
        self.favoured = frozenset(favoured)
        if self.favoured and order and registry.hint_tier(order[0], port, registered) > 1:
            order = sorted(order, key=lambda c: c.name not in self.favoured)  # stable
        self.order = order
        self.port = port
        self.registered = tuple(registered)
        self.context = context
        self.note = note
        self.rank = {c: i for i, c in enumerate(order)}
        self.server_first = [c for c in order if c.server_first]
        self.queue_sf: list[type[Probe]] = []
        self.queue_cf: list[type[Probe]] = [c for c in order if not c.server_first]
        self.started: set[type[Probe]] = set()
        self.screened: set[bytes] = set()
        self.running_sf = 0
        self.best: Verdict | None = None
        self.instant: Verdict | None = None

    # -- what to start -----------------------------------------------------------------------
    def speculative(self) -> type[Probe] | None:
        """The top probe when it is client-first and hinted by the registry or the port: it
        starts at once, beside the banner read (it may answer before the banner time ends)."""
        if not self.order:
            return None
        top = self.order[0]
        if top.server_first or (registry.hint_tier(top, self.port, self.registered) > 1
                                and top.name not in self.favoured):
            return None
        self.queue_cf.remove(top)
        self.begin(top)
        return top

    def next(self, parallel: int, running: int, first: FirstState) -> Start | None:
        """The next probe to start now, or None (the queues are empty, the parallel limit is
        reached, or a server-first probe is still reading)."""
        if running >= max(1, parallel):
            return None
        if self.queue_sf:
            cls = self.queue_sf.pop(0)
            self.begin(cls)
            return Start(cls, first.available and first.banner)
        if self.queue_cf and not self.running_sf:
            cls = self.queue_cf.pop(0)
            self.begin(cls)
            return Start(cls, first.available and not first.banner and first.clean)
        return None

    def begin(self, cls: type[Probe]) -> None:
        self.started.add(cls)
        if cls.server_first:
            self.running_sf += 1

    @property
    def empty(self) -> bool:
        return not self.queue_sf and not self.queue_cf

    # -- what the first bytes say ------------------------------------------------------------
    def screen(self, data: bytes) -> None:
        """Feed first bytes to every server-first probe not started yet, in memory."""
        key = bytes(data[:512])
        if key in self.screened:
            return
        self.screened.add(key)
        candidates = []
        for cls in self.server_first:
            if cls in self.started or cls in self.queue_sf:
                continue
            try:
                probe = cls(self.context())
                step = probe.start()
                if isinstance(step, Wait):
                    step = probe.feed(bytes(data))
            except Exception as exc:  # a probe bug must not end the identification
                self.note(f"{cls.name}: probe error {exc!r}")
                continue
            if isinstance(step, NoMatch):
                continue
            if isinstance(step, Verdict):
                if self.instant is None or step.confidence > self.instant.confidence:
                    self.instant = step
                    self.started.add(cls)
                continue
            candidates.append(cls)
        said = {c: claims(c, data) for c in candidates}
        candidates.sort(key=lambda c: (not said[c], self.rank[c]))
        self.queue_sf.extend(candidates)
        # client-first probes whose protocol also greets first (IRC's NOTICE AUTH) move up
        for cls in [c for c in self.queue_cf if claims(c, data)]:
            self.queue_cf.remove(cls)
            self.queue_sf.append(cls)

    # -- what the probes concluded -------------------------------------------------------------
    def finished(self, cls: type[Probe], verdict: Verdict | None) -> Verdict | None:
        """A probe ended: its verdict when confident (the port is decided), else None."""
        if cls.server_first:
            self.running_sf -= 1
        if verdict is None:
            return None
        if verdict.confidence >= TENTATIVE:
            return verdict
        if self.best is None or verdict.confidence > self.best.confidence:
            self.best = verdict
        return None

    def instant_answer(self) -> Verdict | None:
        """A confident verdict from screening the banner alone."""
        if self.instant is not None and self.instant.confidence >= TENTATIVE:
            return self.instant
        return None

    def answer(self) -> Verdict | None:
        """The best answer so far (tentative probe verdicts first, then the banner's)."""
        return self.best or self.instant
