"""What the three scan engines (TCP connect, UDP, raw SYN) share: the records they emit, the
per-probe bookkeeping, the ICMP reading, settling a dead host, and the run/flush frame."""

from __future__ import annotations

from collections import deque
from typing import Any, Awaitable, Callable, NamedTuple

from portatlas.scan import results as R
from portatlas.scan.hoststatus import DOWN, HostStatus
from portatlas.scan.sysres import IcmpError


class Answer(NamedTuple):
    """One port's answer as an engine emits it (the batches of emit(batch, bulk))."""

    index: int            # the host's position in the scan
    port: int
    state: int            # an index into scan.results.STATES
    reason: int           # an index into scan.results.REASONS
    rtt: float | None     # seconds, when the answer was timed
    tries: int


class BulkKey(NamedTuple):
    """The key of emit()'s `bulk` dict: ports that share one answer at the first try."""

    index: int
    state: int
    reason: int


# Answer(...) runs a Python-level __new__; tuple.__new__ on the class makes the same record at
# about half the cost (measured on 3.11: tuple 51 ns, tuple.__new__ 280 ns, Answer() 530 ns).
# The engines emit one per detailed answer (a REJECT sweep: one per port), so they use this.
_new = tuple.__new__


def answer(index: int, port: int, state: int, reason: int, rtt: float | None,
           tries: int) -> Answer:
    return _new(Answer, (index, port, state, reason, rtt, tries))


Emit = Callable[[list[Answer], dict[BulkKey, list[int]]], None]


class ProbeState:
    """One port's bookkeeping: its host's state, tries so far, last send time, and a
    generation number that makes answers to an earlier try recognisable."""

    __slots__ = ("hs", "port", "tries", "sent", "gen")

    def __init__(self, hs: Any, port: int) -> None:
        self.hs = hs
        self.port = port
        self.tries = 0
        self.sent = 0.0
        self.gen = 0

    def timed_answer(self, now: float) -> float:
        """The RTT of an answer that came now, fed to the host's timing (hs.timing)."""
        rtt = now - self.sent
        timing = self.hs.timing
        timing.sample(rtt)
        timing.answered(self.tries, now)
        return rtt


class HostQueue:
    """A host's probes still to send, for the TCP connect and raw SYN engines: first tries in
    port order (`ports` from `cursor` on, made into probes as they go out), retries
    (`retry`) before them. Subclasses set `probe_type` and add their own slots."""

    __slots__ = ("index", "host", "timing", "ports", "cursor", "retry", "heard", "down")
    probe_type: type = ProbeState

    def __init__(self, index: int, host: Any, ports: list[int], timing: Any) -> None:
        self.index = index
        self.host = host
        self.timing = timing          # timing.HostTiming
        self.ports = ports
        self.cursor = 0
        self.retry: deque = deque()
        self.heard = False            # anything from the host itself (or known up)
        self.down = False             # settled down (-Pn): its queued probes were dropped

    def has_work(self) -> bool:
        return bool(self.retry) or self.cursor < len(self.ports)

    def next_probe(self) -> Any:
        if self.retry:
            return self.retry.popleft()
        if self.cursor < len(self.ports):
            port = self.ports[self.cursor]
            self.cursor += 1
            return self.probe_type(self, port)
        return None

    def drop_queued(self) -> int:
        """Forget every probe not sent yet (the host was settled down); returns how many."""
        dropped = len(self.ports) - self.cursor + len(self.retry)
        self.cursor = len(self.ports)
        self.retry.clear()
        return dropped


class SentProbe(ProbeState):
    """A probe of the engines that match answers to probes themselves (UDP, raw SYN)."""

    __slots__ = ("done", "waiting")

    def __init__(self, hs: Any, port: int) -> None:
        super().__init__(hs, port)
        self.done = False     # final answer recorded
        self.waiting = False  # sent, its timeout not yet passed


def icmp_reason(icmp_type: int, code: int, v6: bool) -> tuple[int, int]:
    """(state, reason) codes for a TCP probe answered by ICMP (UDP: udp.udp_icmp_reason)."""
    if not v6:
        if icmp_type == 3:
            if code == 3:
                return R.S_FILTERED, R.R_PORT_UNREACH
            if code in (9, 10, 13):
                return R.S_FILTERED, R.R_ADMIN_PROHIBITED
            if code in (0, 6, 11):
                return R.S_FILTERED, R.R_NET_UNREACH
            if code == 2:
                return R.S_FILTERED, R.R_PROTO_UNREACH
            return R.S_FILTERED, R.R_HOST_UNREACH
        if icmp_type == 11:
            return R.S_FILTERED, R.R_TIME_EXCEEDED
        return R.S_FILTERED, R.R_HOST_UNREACH
    if icmp_type == 1:
        return R.S_FILTERED, _ICMP6_UNREACH.get(code, R.R_HOST_UNREACH)
    if icmp_type == 3:
        return R.S_FILTERED, R.R_TIME_EXCEEDED
    return R.S_FILTERED, R.R_HOST_UNREACH


_ICMP6_UNREACH = {0: R.R_NET_UNREACH, 1: R.R_ADMIN_PROHIBITED, 3: R.R_HOST_UNREACH,
                  4: R.R_PORT_UNREACH, 5: R.R_ADMIN_PROHIBITED, 6: R.R_ADMIN_PROHIBITED}


def error_reason(icmp: IcmpError, v6: bool) -> tuple[int, int]:
    """icmp_reason() of a queued ICMP error (sysres.read_icmp_error)."""
    return icmp_reason(icmp.icmp_type, icmp.code, v6)


def down_status(reason: int, by: str | None, local_method: str | None, dropped: int) -> HostStatus:
    """The HostStatus of a -Pn host settled down by its first answer: `local_method` ("arp",
    "nd") when this machine's own neighbour discovery failed, else a router `by` said
    `reason` about it during the port scan."""
    if local_method is not None:
        status = HostStatus(DOWN, "no-response", local_method)
    else:
        status = HostStatus(DOWN, R.REASONS[reason], "port-scan", by=by)
    status.dropped = dropped
    return status


class Engine:
    """run() drives the engine's loop; Ctrl-C keeps what was found, and the engine's
    results are flushed and its sockets released whatever happens. `hosts`: the engine's
    per-host states (each with `index` and `timing`)."""

    interrupted = False
    hosts: list

    def timings(self) -> dict[int, Any]:
        """Host index -> its timing.HostTiming."""
        return {hs.index: hs.timing for hs in self.hosts}

    def run(self) -> None:
        try:
            self._loop()
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._flush()
            self._close()

    def _loop(self) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class MatchingEngine(Engine):
    """UDP and raw SYN: probes in flight count against the engine's concurrency (`inflight`)
    and their host's window (`hs.outstanding`) until answered or timed out."""

    inflight = 0

    def _end_wait(self, probe: SentProbe) -> None:
        """The probe's wait is over: free its slots; a pending timeout of it is void."""
        if probe.waiting:
            probe.waiting = False
            probe.hs.outstanding -= 1
            self.inflight -= 1
        probe.gen += 1


def run_async(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from synchronous code, also when the caller sits inside
    a running event loop (a web server calling Scanner.run()): then in a helper thread."""
    # asyncio and concurrent.futures only when a coroutine runs: tens of ms to import, which a
    # --json sweep without identification or accept-all hosts never pays
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
