"""Running the portatlas modules and nmap's engine side by side on one port, and stopping
as soon as the answer is known (the merge itself is merge.py, pure).

 - both start at once: the driver's passive banner is handed to the engine as nmap's NULL
   reply (read once, no second wait);
 - the port is closed / filtered / unreachable: the driver says so, the engine stops;
 - a module's confident verdict: the engine's judgement of the greeting is awaited (CPU
   only); over a carrier (http, tls) the engine's search is awaited too (it stops at its
   first hard match: it may name the service carried); a missing product gets a short
   grace; then the engine stops;
 - an nmap hard match that no module could confirm: the modules stop; one that a module
   could confirm (ssh, http, ...): the module's full exchange is awaited (it beats a regex);
 - otherwise both run to the end of the port's time and merge.py decides.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from portatlas.identify.base import (CLOSED, ERROR, FILTERED, IDENTIFIED, TENTATIVE,
                                     UNIDENTIFIED, Verdict, escape_evidence)
from portatlas.identify import nmap, registry
from portatlas.identify.nmap.engine import EngineSettings
from portatlas.identify.merge import CARRIER_ONLY, CARRIERS, merge, module_could_name

GRACE = 0.5  # seconds the engine may still run to fill a confident verdict's missing product


def database(opts: Any) -> tuple[Any, str | None, str | None]:
    """(db, path, note): the nmap database to use, or None with a note saying why not."""
    if not opts.nmap:
        return None, None, None
    explicit = opts.nmap_db or (opts.nmap_probes if isinstance(opts.nmap_probes, str) else None)
    path = nmap.find_db(explicit)
    if path is None:
        return None, None, nmap.missing_note(explicit)
    try:
        return nmap.load(path), path, None
    except Exception as exc:  # checked up front by the CLI; here a note, never a crash
        return None, path, str(exc)


def settings(opts: Any, host: str) -> Any:
    return EngineSettings(intensity=opts.intensity, parallel=opts.nmap_parallel,
                          udp_parallel=max(4, opts.nmap_parallel * 4),
                          probe_timeout=opts.probe_timeout,
                          connect_timeout=opts.connect_timeout, tls=opts.tls,
                          server_name=opts.server_name,
                          # a lead's conversation lasts at most probe_timeout (TLS: twice,
                          # the handshake, then what speaks inside)
                          max_hold=max(1.5, 2 * opts.probe_timeout))


def _module_names(transport: str) -> set[str]:
    return {cls.name for cls in registry.probes(transport)}


async def _wait_event(event: asyncio.Event, seconds: float) -> None:
    if event.is_set() or seconds <= 0:
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter], timeout=seconds)
    finally:
        waiter.cancel()


async def _settle(task: asyncio.Task, seconds: float) -> None:
    if not task.done() and seconds > 0:
        await asyncio.wait([task], timeout=seconds)


# over a carrier, the probes whose lines name the service carried (nmap sends these first)
CARRIED_PROBES = ("GetRequest",)


async def _carried(job: Any, module: Verdict, eng_task: asyncio.Task, left: Any) -> None:
    """The module named a carrier: ask nmap what is carried, with just the probes that can
    tell (the engine's broad search is no longer needed)."""
    if not eng_task.done():
        eng_task.cancel()
        await asyncio.gather(eng_task, return_exceptions=True)
    engine = job.engine
    implicit_tls = bool(module.tls) and not module.tls.get("starttls")
    if module.protocol == "tls":
        work = engine.inside_tls() if job.opts.tls else None  # nothing recognised inside
    elif implicit_tls:
        work = engine.inside_tls(only=CARRIED_PROBES)
    else:
        work = engine.only(CARRIED_PROBES)
    if work is None:
        return
    task = asyncio.ensure_future(work)
    try:
        await _settle(task, left())
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def race(job: Any, mod_task: asyncio.Task, eng_task: asyncio.Task,
               banner: asyncio.Future) -> Verdict:
    left = lambda: job.deadline - time.monotonic()  # noqa: E731
    module: Verdict | None = None
    pending = {mod_task, eng_task}
    while pending:
        done, pending = await asyncio.wait(pending, timeout=max(left(), 0.001),
                                           return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break
        if mod_task in done:
            module = mod_task.result()
            if not banner.done():
                banner.set_result(None)
            if module.outcome in (CLOSED, ERROR) or (module.outcome == FILTERED
                                                     and job.transport == "tcp"):
                return module  # nothing to talk to: the engine stops (finally in _both)
            if module.outcome == IDENTIFIED and module.confidence >= TENTATIVE:
                # nmap can still name what is carried, or fill a missing product: then the
                # database is awaited; a complete verdict waits only for the judgement of the
                # greeting when the database is already there (CPU only, milliseconds)
                needs = module.protocol in CARRIERS or not module.product
                if needs:
                    await _wait_event(job.engine_ready, min(3.0, left()))
                judged = getattr(job.engine, "greeting_judged", None)
                if judged is not None and banner.done() and banner.result():
                    await _wait_event(judged, min(1.0 if needs else 0.2, left()))
                hard = job.engine.result.hard if job.engine is not None else None
                inside = job.engine is not None and (
                    getattr(job.engine, "inside", False)
                    or (hard is not None and hard.service in CARRIER_ONLY)
                    or (getattr(job.engine, "tls_seen", None) is not None
                        and job.engine.tls_seen.is_set() and hard is None))
                if module.protocol in CARRIER_ONLY and inside and not eng_task.done():
                    # TLS and nothing recognised inside by the modules; nmap's search is
                    # already inside TLS (the handshake was reported, or its line named only
                    # `ssl`): its answer is awaited - the carrier alone is never the answer
                    # (merge.not_the_carrier)
                    await _settle(eng_task, left())
                elif job.engine is not None and hard is None \
                        and job.transport == "tcp" and module.protocol in CARRIERS:
                    await _carried(job, module, eng_task, left)
                elif not module.product:
                    await _settle(eng_task, min(GRACE, left()))
                return combine(job, module)
            await _settle(eng_task, left())
            return combine(job, module)
        if eng_task in done:
            hard = job.engine.result.hard if job.engine is not None else None
            if hard is not None and not module_could_name(hard.service,
                                                           _module_names(job.transport)):
                return combine(job, None)
            await _settle(mod_task, left())
            if mod_task.done() and not mod_task.cancelled() and mod_task.exception() is None:
                return combine(job, mod_task.result())
            return combine(job, None)
    if module is None:
        # the port's time is over: the driver ends its own search within moments
        await _settle(mod_task, 0.4)
        if mod_task.done() and not mod_task.cancelled() and mod_task.exception() is None:
            module = mod_task.result()
    return combine(job, module)


def combine(job: Any, module: Verdict | None) -> Verdict:
    """merge.py's verdict, with the port-level facts only this job knows (UDP silence vs
    an unmatched reply, what the modules saw when the engine named the port)."""
    result = job.engine.result if job.engine is not None else None
    if module is None and job.run_obj is not None and result is not None and result.hard is None:
        module = job.run_obj.partial()
        if module.outcome == "incomplete" and time.monotonic() >= job.deadline - 0.05:
            module.outcome = UNIDENTIFIED  # the port's own time ended it, not a cut-short
    verdict = merge(module, result, job.nmap_path)
    if verdict is None:
        verdict = Verdict(None, outcome=UNIDENTIFIED, confidence=0.0, reason="nothing decided")
    if verdict.outcome == IDENTIFIED and not verdict.evidence and result is not None:
        sample = next((d for name, d in result.replies
                       if verdict.extra.get("nmap", {}).get("probe") in (name, None)), b"")
        verdict.evidence = escape_evidence(sample.rstrip(b"\r\n"))
    if job.transport == "udp" and result is not None and verdict.outcome == FILTERED:
        if result.replies:
            first = result.replies[0][1]
            verdict = Verdict(None, outcome=UNIDENTIFIED, confidence=0.0,
                              evidence=escape_evidence(first),
                              reason="answers with datagrams no probe recognised",
                              extra={"behaviour": "unrecognised-reply",
                                     "bytes_seen": sum(len(d) for _, d in result.replies),
                                     "nmap_replies": [n for n, _ in result.replies][:12]})
        elif result.refused and not verdict.extra.get("probes"):
            verdict = Verdict(None, outcome=CLOSED, confidence=0.9,
                              reason="ICMP port unreachable (nothing listens)")
    return verdict
