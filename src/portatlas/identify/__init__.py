"""Service identification: what really answers on a port (protocol, product, version).

    from portatlas.identify import identify, identify_many
    v = identify("198.18.0.2", 103)          # Verdict: outcome, protocol, product, version...
    print(describe(v))                        # "103/tcp is registered to gppitnp; what answers
                                              #  here is SSH, OpenSSH 9.2p1"
    batch = identify_many([("198.18.0.2", p, "tcp") for p in ports], deadline=30)

The sync functions run their own event loop; use identify_async / identify_many_async from
async code. docs/identify.md documents the order of probes, the timeouts and the JSON schema.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from portatlas.identify.base import (CLOSED, ERROR, FILTERED, IDENTIFIED, INCOMPLETE,
                                     UNIDENTIFIED, Verdict)
from portatlas.errors import UsageError
from portatlas.identify.options import Options

__all__ = ["identify", "identify_async", "identify_many", "identify_many_async", "describe",
           "scan_hook",
           "Options", "Verdict", "Batch", "IDENTIFIED", "UNIDENTIFIED", "CLOSED", "FILTERED",
           "ERROR", "INCOMPLETE"]

Target = tuple[str, int, str]


def _options(options: Options | None, overrides: dict[str, Any]) -> Options:
    opts = options or Options()
    if overrides:
        unknown = set(overrides) - set(Options.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown identification option(s): {', '.join(sorted(unknown))}")
        opts = replace(opts, **overrides)
    for name in ("timeout", "probe_timeout", "connect_timeout"):
        if getattr(opts, name) <= 0:
            raise UsageError(f"{name.replace('_', '-')} must be more than 0 seconds")
    if opts.banner_wait < 0:
        raise UsageError("banner-wait cannot be negative")
    if opts.parallel < 1:
        raise UsageError("parallel must be at least 1")
    return opts


# --- registry hints ---------------------------------------------------------------------
_local = threading.local()  # an SQLite connection stays in its thread, and goes with it


def _atlas(opts: Options) -> Any:
    """The registry for hints: the caller's, else one per thread (a dict keyed by thread id
    would outlive its threads and hand a dead thread's connection to a new one with the same
    id, where SQLite refuses it)."""
    if opts.atlas is not None:
        return opts.atlas
    if not hasattr(_local, "atlas"):
        try:
            from portatlas.atlas import Atlas  # lazy: the registry (SQLite) only when asked

            _local.atlas = Atlas(autobuild=False)
        except Exception:  # no database yet: identify without registry hints
            _local.atlas = None
    return _local.atlas


def registered_names(port: int, transport: str, opts: Options) -> tuple[str, ...]:
    """Registry service names for the port (hints for the probe order, and the comparison)."""
    if opts.registered is not None:
        return tuple(opts.registered)
    atlas = _atlas(opts)
    if atlas is None:
        return ()
    try:
        entries = atlas.entries(port, transport)
    except Exception:
        return ()
    names: list[str] = []
    for entry in entries:
        if entry.service and entry.service not in names and not entry.is_range:
            names.append(entry.service)
    return tuple(names)


# --- one port -----------------------------------------------------------------------------
class _Job:
    """One port's identification; keeps the run object so a cut-short run can report."""

    def __init__(self, host: str, port: int, transport: str, opts: Options,
                 deadline: float | None = None) -> None:
        self.host, self.port, self.transport, self.opts = host, port, transport, opts
        self.registered = registered_names(port, transport, opts)
        self.batch_deadline = deadline
        self.begin()
        self.run_obj: Any = None
        self.engine: Any = None      # the nmap engine of this port (None: not run)
        self.nmap_path: str | None = None
        self.nmap_note: str | None = None
        self.verdict: Verdict | None = None
        self.cut_short = False  # the batch deadline, not the port's own time, ended it

    def begin(self) -> None:
        """Start the port's own clock. A batch calls it again when the port gets its
        concurrency slot: a port waiting in the queue must not spend its own time budget
        (issue 11: the last ports of a 106-port batch ran out of time before they started)."""
        self.started = time.monotonic()
        self.deadline = min(self.batch_deadline or float("inf"), self.started + self.opts.timeout)

    async def run(self) -> Verdict:
        import asyncio  # lazy: importing portatlas.identify for its types loads no event loop

        if self.transport == "udp":
            # lazy: the port drivers load with the first port
            from portatlas.identify.udp import UDPRun

            self.run_obj = UDPRun(self.host, self.port, self.opts, self.registered, self.deadline)
        elif self.transport == "tcp":
            # lazy: the port drivers load with the first port
            from portatlas.identify.driver import PortRun

            self.run_obj = PortRun(self.host, self.port, self.opts, self.registered, self.deadline)
        else:
            raise UsageError(f"identification speaks tcp and udp, not {self.transport!r}")
        try:
            verdict = await asyncio.wait_for(self._both(),
                                             max(self.deadline - time.monotonic(), 0.001) + 0.5)
        except (asyncio.TimeoutError, TimeoutError):
            verdict = self._merged(self.run_obj.partial())
            verdict = replace(verdict, outcome=UNIDENTIFIED if verdict.outcome == INCOMPLETE
                              else verdict.outcome,
                              reason=f"port time limit of {self.opts.timeout:g}s reached; "
                                     + verdict.reason)
        except OSError as exc:
            # lazy: the port drivers load with the first port
            from portatlas.identify.driver import _connect_error

            verdict = _connect_error(exc)
        own_end = self.started + self.opts.timeout
        if (self.batch_deadline is not None and self.batch_deadline < own_end
                and time.monotonic() >= self.batch_deadline - 0.05
                and verdict.outcome in (UNIDENTIFIED, INCOMPLETE)):
            self.cut_short = True
            verdict = replace(verdict, outcome=INCOMPLETE,
                              reason="deadline reached; so far: " + verdict.reason)
        return self._finish(verdict)

    # -- the portatlas modules and nmap's probes side by side (merge.py decides)
    def _make_engine(self, db: Any) -> Any:
        # lazy: nmap's engine with the first port that uses it
        from portatlas.identify import combined
        from portatlas.identify.nmap.engine import TCPEngine, UDPEngine

        settings = combined.settings(self.opts, self.host)
        if self.transport == "udp":
            return UDPEngine(db, self.host, self.port, settings, self.deadline)
        return TCPEngine(db, self.host, self.port, settings, self.deadline)

    async def _both(self) -> Verdict:
        import asyncio  # lazy: importing portatlas.identify for its types loads no event loop

        # lazy: nmap's engine with the first port that uses it
        from portatlas.identify import combined

        if not self.opts.nmap:
            return await self.run_obj.run()
        loop = asyncio.get_running_loop()
        self.engine_ready = asyncio.Event()
        banner: asyncio.Future = loop.create_future()
        tls_seen: list[dict] = []
        if self.transport == "tcp":
            self.run_obj.on_banner = lambda b: banner.done() or banner.set_result(b)

            def on_tls(info: dict) -> None:
                tls_seen.append(info)
                if self.engine is not None:
                    self.engine.tls_found(info)

            self.run_obj.on_tls = on_tls
        # the modules start at once; the database loads meanwhile (in a thread: the first
        # parse takes a few hundred ms and must not hold up a port that is simply closed)
        mod_task = asyncio.ensure_future(self.run_obj.run())

        async def engine_run() -> Any:
            try:
                db, self.nmap_path, self.nmap_note = await loop.run_in_executor(
                    None, combined.database, self.opts)
                if db is not None:
                    self.engine = self._make_engine(db)
                    lead = getattr(self.run_obj, "has_lead", None)
                    if lead is not None:  # a module still at work on what was suggested
                        self.engine.hold = lambda: not mod_task.done() and lead()
                    if tls_seen:
                        self.engine.tls_found(tls_seen[0])
            finally:
                self.engine_ready.set()
            if self.engine is None:
                return None
            if self.transport == "tcp":
                return await self.engine.run(banner)
            return await self.engine.run()

        eng_task = asyncio.ensure_future(engine_run())
        try:
            return await combined.race(self, mod_task, eng_task, banner)
        finally:
            for task in (mod_task, eng_task):
                if not task.done():
                    task.cancel()
            await asyncio.gather(mod_task, eng_task, return_exceptions=True)

    def _merged(self, module: Verdict | None) -> Verdict:
        # lazy: nmap's engine with the first port that uses it
        from portatlas.identify import combined

        return combined.combine(self, module)

    def partial(self) -> Verdict:
        if self.verdict is not None:
            return self.verdict
        if self.run_obj is None:
            verdict = Verdict(None, outcome=INCOMPLETE, confidence=0.0,
                              reason="not started before the deadline")
        else:
            verdict = self._merged(self.run_obj.partial())
        return self._finish(verdict)

    def _finish(self, verdict: Verdict) -> Verdict:
        """The per-port report: the probe's verdict is copied, not changed, and completed with
        where, what the registry says, how it was decided and how long it took."""
        # lazy: only for finished verdicts
        from portatlas.identify.merge import names_carrier_only, not_the_carrier

        if names_carrier_only(verdict):  # the carrier is never the service (merge.py)
            why = None
            if time.monotonic() >= self.deadline - 0.1:
                why = (f"the port's time limit of {self.opts.timeout:g}s was spent first"
                       if self.deadline >= self.started + self.opts.timeout - 0.01
                       else "the batch deadline came first")
            verdict = not_the_carrier(verdict, why)
        reason = verdict.reason
        if verdict.outcome == IDENTIFIED and not reason:
            reason = "recognised by the " + (verdict.protocol or "?") + " probe"
        verdict = replace(verdict, host=self.host, port=self.port, transport=self.transport,
                          registered=list(self.registered), reason=reason,
                          extra=dict(verdict.extra), elapsed=time.monotonic() - self.started)
        if verdict.basis is None:
            from portatlas.identify.merge import module_basis  # lazy: only for finished verdicts

            verdict.basis = module_basis(verdict) if verdict.outcome == IDENTIFIED else \
                {"by": "none", "text": verdict.reason}
        if self.engine is not None:
            verdict.extra.setdefault("nmap_engine", self.engine.result.to_dict())
        elif self.opts.nmap and not self.nmap_note and verdict.outcome == IDENTIFIED:
            # lazy: nmap's engine with the first port that uses it
            from portatlas.identify.nmap.engine import EngineResult

            record = EngineResult(notes=["not run: a module decided before nmap's database "
                                         "was loaded"]).to_dict()
            verdict.extra.setdefault("nmap_engine", record)
        elif self.nmap_note:
            verdict.extra.setdefault("notes", [])
            if self.nmap_note not in verdict.extra["notes"]:
                verdict.extra["notes"].append(self.nmap_note)
        self.verdict = verdict
        return verdict


async def identify_async(host: str, port: int, transport: str = "tcp", *,
                         options: Options | None = None, return_partial: bool = False,
                         **overrides: Any) -> Verdict:
    """Identify what answers on host:port/transport. Never raises for network trouble:
    the Verdict's outcome says closed / filtered / error.

    With return_partial=True a cancellation (Ctrl-C, a caller's deadline) is absorbed and
    the answer so far is returned (outcome 'incomplete' when nothing was learnt): for
    callers that gather many ports and want every port's partial answer."""
    import asyncio  # lazy: importing portatlas.identify for its types loads no event loop

    opts = _options(options, overrides)
    job = _Job(host, port, transport, opts)
    if not return_partial:
        return await job.run()
    try:
        return await job.run()
    except asyncio.CancelledError:
        return job.partial()


def identify(host: str, port: int, transport: str = "tcp", *, options: Options | None = None,
             **overrides: Any) -> Verdict:
    """Sync wrapper of identify_async (runs its own event loop)."""
    import asyncio  # lazy: importing portatlas.identify for its types loads no event loop

    opts = _options(options, overrides)
    job = _Job(host, port, transport, opts)

    async def main() -> Verdict:
        try:
            return await job.run()
        except asyncio.CancelledError:  # Ctrl-C: what we have so far
            return job.partial()

    return asyncio.run(main())


# --- many ports ---------------------------------------------------------------------------
@dataclass
class Batch:
    results: list[Verdict]
    interrupted: bool = False
    deadline_reached: bool = False
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [v.to_dict() for v in self.results], "interrupted": self.interrupted,
                "deadline_reached": self.deadline_reached, "elapsed": round(self.elapsed, 3)}


async def identify_many_async(targets: Iterable[Target], *, options: Options | None = None,
                              deadline: float | None = None, concurrency: int = 64,
                              on_result: Callable[[Verdict], None] | None = None,
                              **overrides: Any) -> Batch:
    """Identify many (host, port, transport) targets at once, all within `deadline` seconds.

    Results come back in the order of `targets`; when the deadline (or a cancellation, e.g.
    Ctrl-C) arrives, unfinished ports get their partial answer (outcome 'incomplete' when
    nothing was learnt). `on_result` is called as each port is decided."""
    import asyncio  # lazy: importing portatlas.identify for its types loads no event loop

    opts = _options(options, overrides)
    start = time.monotonic()
    end = start + deadline if deadline else None
    jobs = [_Job(h, p, t, opts, end) for h, p, t in targets]
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(job: _Job) -> Verdict:
        async with gate:
            if end is not None and time.monotonic() >= end:
                return job.partial()
            job.begin()  # the wait for the slot is not charged to the port
            verdict = await job.run()
        if on_result:
            on_result(verdict)
        return verdict

    tasks = [asyncio.ensure_future(one(j)) for j in jobs]
    interrupted = deadline_reached = False
    try:
        if tasks:
            timeout = None if end is None else max(end - time.monotonic(), 0) + 0.5
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            deadline_reached = bool(pending)
    except asyncio.CancelledError:
        interrupted = True
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    deadline_reached = deadline_reached or any(j.cut_short for j in jobs)
    results = []
    for job, task in zip(jobs, tasks):
        if task.done() and not task.cancelled() and task.exception() is None:
            results.append(task.result())
        else:
            verdict = job.partial()
            if on_result:
                on_result(verdict)
            results.append(verdict)
    return Batch(results, interrupted, deadline_reached, time.monotonic() - start)


def identify_many(targets: Iterable[Target], *, options: Options | None = None,
                  deadline: float | None = None, concurrency: int = 64,
                  on_result: Callable[[Verdict], None] | None = None,
                  **overrides: Any) -> Batch:
    """Sync wrapper of identify_many_async. Ctrl-C returns the partial batch with
    `interrupted=True` instead of raising."""
    import asyncio  # lazy: importing portatlas.identify for its types loads no event loop

    targets = list(targets)

    async def main() -> Batch:
        return await identify_many_async(targets, options=options, deadline=deadline,
                                         concurrency=concurrency, on_result=on_result,
                                         **overrides)

    return asyncio.run(main())


# --- the hook the scanner calls -------------------------------------------------------------
def scan_hook(options: Options | None = None) -> Callable[..., Any]:
    """THE one way check, scan --identify and the web /check identify an open port: an async
    callable (host, PortResult) -> Verdict for portatlas.scan.Scanner(identify=...). Every
    caller gets the same engine (portatlas modules + nmap's probes, merge.py)."""

    async def hook(host: Any, result: Any) -> Verdict:
        # return_partial: on Ctrl-C every port keeps what was learnt so far
        return await identify_async(host.address, result.port, result.transport,
                                    options=options, return_partial=True)

    return hook


# --- words ---------------------------------------------------------------------------------
def describe(verdict: Verdict) -> str:
    """One sentence comparing the registry with what answers (identify.claim, the same
    sentence as `portatlas check`)."""
    from portatlas.identify.claim import claim_vs_truth  # lazy: only for finished verdicts

    return claim_vs_truth(f"{verdict.port}/{verdict.transport}", list(verdict.registered or ()),
                          None, verdict.to_dict())
