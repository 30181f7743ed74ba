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

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from portatlas.identify.base import (CLOSED, ERROR, FILTERED, IDENTIFIED, INCOMPLETE,
                                     UNIDENTIFIED, Verdict)
from portatlas.identify.options import Options

__all__ = ["identify", "identify_async", "identify_many", "identify_many_async", "describe",
           "Options", "Verdict", "Batch", "IDENTIFIED", "UNIDENTIFIED", "CLOSED", "FILTERED",
           "ERROR", "INCOMPLETE"]

Target = tuple[str, int, str]


def _options(options: Options | None, overrides: dict[str, Any]) -> Options:
    from dataclasses import replace

    from portatlas.errors import UsageError

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
_atlases: dict[int, Any] = {}  # per thread: an SQLite connection stays in its thread


def _atlas(opts: Options) -> Any:
    import threading

    if opts.atlas is not None:
        return opts.atlas
    key = threading.get_ident()
    if key not in _atlases:
        try:
            from portatlas.atlas import Atlas

            _atlases[key] = Atlas(autobuild=False)
        except Exception:  # no database yet: identify without registry hints
            _atlases[key] = None
    return _atlases[key]


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
        self.started = time.monotonic()
        self.batch_deadline = deadline
        self.deadline = min(deadline or float("inf"), self.started + opts.timeout)
        self.run_obj: Any = None
        self.verdict: Verdict | None = None
        self.cut_short = False  # the batch deadline, not the port's own time, ended it

    async def run(self) -> Verdict:
        import asyncio

        if self.transport == "udp":
            from portatlas.identify.udp import UDPRun

            self.run_obj = UDPRun(self.host, self.port, self.opts, self.registered, self.deadline)
        elif self.transport == "tcp":
            from portatlas.identify.driver import PortRun

            self.run_obj = PortRun(self.host, self.port, self.opts, self.registered, self.deadline)
        else:
            from portatlas.errors import UsageError

            raise UsageError(f"identification speaks tcp and udp, not {self.transport!r}")
        try:
            verdict = await asyncio.wait_for(self.run_obj.run(),
                                             max(self.deadline - time.monotonic(), 0.001) + 0.5)
        except (asyncio.TimeoutError, TimeoutError):
            verdict = self.run_obj.partial()
            if verdict.outcome == INCOMPLETE:
                verdict.outcome = UNIDENTIFIED
            verdict.reason = f"port time limit of {self.opts.timeout:g}s reached; " + verdict.reason
        except OSError as exc:
            from portatlas.identify.driver import _connect_error

            verdict = _connect_error(exc)
        own_end = self.started + self.opts.timeout
        if (self.batch_deadline is not None and self.batch_deadline < own_end
                and time.monotonic() >= self.batch_deadline - 0.05
                and verdict.outcome in (UNIDENTIFIED, INCOMPLETE)):
            self.cut_short = True
            verdict.outcome = INCOMPLETE
            verdict.reason = "deadline reached; so far: " + verdict.reason
        return self._finish(verdict)

    def partial(self) -> Verdict:
        if self.verdict is not None:
            return self.verdict
        if self.run_obj is None:
            verdict = Verdict(None, outcome=INCOMPLETE, confidence=0.0,
                              reason="not started before the deadline")
        else:
            verdict = self.run_obj.partial()
        return self._finish(verdict)

    def _finish(self, verdict: Verdict) -> Verdict:
        verdict.host, verdict.port, verdict.transport = self.host, self.port, self.transport
        verdict.registered = list(self.registered)
        verdict.elapsed = time.monotonic() - self.started
        if verdict.outcome == IDENTIFIED and not verdict.reason:
            verdict.reason = "recognised by the " + (verdict.protocol or "?") + " probe"
        if self.opts.nmap_probes and verdict.outcome in (IDENTIFIED, UNIDENTIFIED):
            from portatlas.identify import nmap_probes

            samples = getattr(getattr(self.run_obj, "obs", None), "samples", [])
            nmap_probes.refine(verdict, samples, self.opts.nmap_probes)
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
    import asyncio

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
    import asyncio

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
    import asyncio

    opts = _options(options, overrides)
    start = time.monotonic()
    end = start + deadline if deadline else None
    jobs = [_Job(h, p, t, opts, end) for h, p, t in targets]
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(job: _Job) -> Verdict:
        async with gate:
            if end is not None and time.monotonic() >= end:
                return job.partial()
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
    import asyncio

    targets = list(targets)

    async def main() -> Batch:
        return await identify_many_async(targets, options=options, deadline=deadline,
                                         concurrency=concurrency, on_result=on_result,
                                         **overrides)

    return asyncio.run(main())


# --- words ---------------------------------------------------------------------------------
def describe(verdict: Verdict) -> str:
    """One sentence comparing the registry with what answers (identify.claim, the same
    sentence as `portatlas check`)."""
    from portatlas.identify.claim import claim_vs_truth

    return claim_vs_truth(f"{verdict.port}/{verdict.transport}", list(verdict.registered or ()),
                          None, verdict.to_dict())


def sequence_targets(host: str, ports: Sequence[int], transport: str = "tcp") -> list[Target]:
    return [(host, p, transport) for p in ports]
