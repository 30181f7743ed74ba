"""One scan from start to finish: engines, results into reports, accept-all detection, and the
identification hook. The CLI (portatlas.cli.scan) and library users both call `Scanner`.

    scanner = Scanner(hosts, tcp_ports=[22, 80], udp_ports=[], timing=TimingOptions())
    report = scanner.run()            # a ScanReport; report.interrupted after Ctrl-C

Hooks:
 - on_result(host_report, port_result): every port as soon as its answer is final
   (NDJSON streaming);
 - on_progress(done, open): after every batch of answers (progress bars);
 - identify: an async callable (host, PortResult) -> Verdict | dict | None, run for every
   open port after the sweep (and after accept-all detection, so a catch-all host is not
   fingerprinted thousands of times); its answer lands in PortResult.service;
 - on_host(host_report): a host was settled up or down (host discovery).

Host discovery: `discovery=DiscoveryOptions()` finds which hosts are up first, in the TCP
connect engine's own loop (portatlas.scan.discovery); hosts found down get no probes and
are reported with their state and reason (HostReport.discovery). `DiscoveryOptions(
enabled=False)` is -Pn: every host is scanned, and a host whose first answer says it is
not there (failed ARP/ND, a router's host unreachable) is settled down and its queued
probes dropped. `discovery=None` (the library default) scans every host as before.
No ports at all with discovery is a ping scan (-sn).
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from portatlas.scan import results as R
from portatlas.scan.discovery import DiscoveryOptions, annotate, discover
from portatlas.scan.engine import Answer, BulkKey, Emit, run_async
from portatlas.scan.hoststatus import HostStatus, assumed_up
from portatlas.scan.results import HostReport, PortResult, ScanReport
from portatlas.scan.runner import choose_workers, run_engine
from portatlas.scan.sysres import raise_fd_limit
from portatlas.scan.timing import TimingOptions
from portatlas.scan.wildcard import detect_all

ResultHook = Callable[[HostReport, PortResult], None]
IdentifyHook = Callable[[Any, PortResult], Awaitable[Any]]

# identification runs on at most this many ports at once
IDENTIFY_CONCURRENCY = 32


class Scanner:
    def __init__(self, hosts: list, *, tcp_ports: list[int], udp_ports: list[int],
                 timing: TimingOptions | None = None, workers: int | None = None,
                 on_result: ResultHook | None = None,
                 on_progress: Callable[[int, int], None] | None = None,
                 detect_accept_all: bool = True,
                 identify: IdentifyHook | None = None, syn: bool = False, command: str = "scan",
                 argv: list[str] | None = None, options: dict[str, Any] | None = None,
                 discovery=None, on_host: Callable[[HostReport], None] | None = None,
                 port_plan: dict[str, list[list[int]]] | None = None) -> None:
        self.hosts = hosts
        self.tcp_ports = tcp_ports
        self.udp_ports = udp_ports
        # transport -> one port list per host; by default every host gets every port, a
        # cluster shard (portatlas.cluster) gives each host its own part
        self.port_plan = {t: [list(ps)] * len(hosts) for t, ps in (("tcp", tcp_ports),
                                                                    ("udp", udp_ports))}
        if port_plan is not None:
            self.port_plan.update({t: [list(ps) for ps in plan] for t, plan in port_plan.items()})
        self.timing = timing or TimingOptions()
        self.workers = workers
        self.on_result = on_result
        self.on_progress = on_progress
        self.open_count = 0
        self.detect_accept_all = detect_accept_all
        self.identify = identify
        self.syn = syn  # raw-socket SYN scan for TCP (root, IPv4)
        self.reports = [HostReport(h) for h in hosts]
        self.report = ScanReport(self.reports, command=command, argv=list(argv or []),
                                 options=dict(options or {}))
        self.total = sum(len(ps) for plan in self.port_plan.values() for ps in plan)
        self.done = 0
        self.discovery = discovery      # DiscoveryOptions | None
        self.host_hook = on_host

    # ------------------------------------------------------------------------------------
    def run(self) -> ScanReport:
        report = self.report
        soft = raise_fd_limit(self.timing.max_concurrency + 256)
        if soft < self.timing.max_concurrency + 64:
            # leave room for the interpreter, the database and the output
            self.timing.max_concurrency = max(16, soft - 64)
            report.notes.append(f"file-descriptor limit {soft}: at most "
                                f"{self.timing.max_concurrency} probes at once")
        disc = self.discovery
        in_loop = disc is not None and any(self.port_plan["tcp"]) and not self.syn
        try:
            if disc is not None and not in_loop:
                self._discover_first()
            for transport, ports in (("tcp", self.tcp_ports), ("udp", self.udp_ports)):
                plan = self.port_plan[transport]
                probes = sum(map(len, plan))
                if not probes:
                    continue
                engine = "tcp-syn" if transport == "tcp" and self.syn else transport
                emit = self._emitter(transport)
                if engine == "tcp" and disc is not None:
                    # discovery (or, with -Pn, settling dead hosts) inside the engine's loop
                    indices = list(range(len(self.hosts)))
                    outcome = run_engine(engine, self.hosts, ports, self.timing, emit,
                                         workers=choose_workers(probes, self.workers),
                                         discovery=disc if in_loop else _no_discovery(),
                                         on_host=self._on_host, ports_per_host=plan)
                    in_loop = False
                else:
                    indices = [i for i, hr in enumerate(self.reports) if not _is_down(hr)]
                    hosts = [self.hosts[i] for i in indices]
                    sub_plan = [plan[i] for i in indices]
                    probes = sum(map(len, sub_plan))
                    workers = choose_workers(probes, self.workers) if engine != "udp" else 1
                    if not probes:
                        continue
                    settle = None
                    if engine == "tcp-syn" and disc is not None and not disc.enabled:
                        # -Pn: dead hosts are settled at their first failure here too
                        settle = (lambda i, st, ix=indices: self._on_host(ix[i], st))
                    outcome = run_engine(engine, hosts, ports, self.timing,
                                         _remap(emit, indices), workers=workers, on_host=settle,
                                         ports_per_host=sub_plan)
                for index, timing in outcome.timings.items():
                    self.reports[indices[index] if index < len(indices) else index].timing[transport] = timing
                report.notes.extend(x for x in outcome.notes if x not in report.notes)
        except KeyboardInterrupt:
            report.interrupted = True
        if disc is not None:
            for hr in self.reports:
                if hr.discovery is None:
                    hr.discovery = assumed_up() if not disc.enabled or not report.interrupted \
                        else HostStatus("unknown", "unscanned", "none")
            annotate(self.hosts, [hr.discovery for hr in self.reports])
        self._mark_unscanned()
        if self.detect_accept_all and not report.interrupted:
            try:
                detect_all(self.reports)
            except KeyboardInterrupt:
                report.interrupted = True
        if self.identify is not None and not report.interrupted:
            try:
                run_identification(self.reports, self.identify, notes=report.notes)
            except KeyboardInterrupt:
                report.interrupted = True
        report.finished = time.time()
        return report

    def _discover_first(self) -> None:
        """Discovery in a loop of its own (ping scans, SYN and UDP scans): statuses first."""
        statuses = discover(self.hosts, self.discovery, self.timing,
                            on_status=lambda i, st: self._on_host(i, st))
        for index, status in enumerate(statuses):
            if self.reports[index].discovery is None:
                self._on_host(index, status)

    def _on_host(self, index: int, status) -> None:
        hr = self.reports[index]
        old = hr.discovery
        if old is not None and old.state == "up" and old.reason != "user-set":
            return  # up from any worker or probe wins: something answered
        if old is not None and old.state == "down" and status.state != "up":
            return
        hr.discovery = status
        if status.state == "down":
            # its ports will not be probed (or their answers are moot): count them as done
            per_host = sum(len(plan[index]) for plan in self.port_plan.values())
            seen = len(hr.scanned("tcp")) + len(hr.scanned("udp"))
            self.done += max(0, per_host - seen)
            hr.ports.clear()
            hr.bulk.clear()
        if self.host_hook is not None:
            self.host_hook(hr)

    def _emitter(self, transport: str) -> Emit:
        reports = self.reports
        states, reasons = R.STATES, R.REASONS
        on_result = self.on_result

        def emit(batch: list[Answer], bulk: dict[BulkKey, list[int]]) -> None:
            for a in batch:
                hr = reports[a.index]
                if hr.discovery is not None and hr.discovery.state == "down":
                    continue  # settled down: its stray answers are moot
                result = PortResult(a.port, transport, states[a.state], reasons[a.reason], a.rtt,
                                    a.tries)
                hr.ports[(a.port, transport)] = result
                if a.state == R.S_OPEN:
                    self.open_count += 1
                if on_result is not None:
                    on_result(hr, result)
            for key, ports in bulk.items():
                hr = reports[key.index]
                if hr.discovery is not None and hr.discovery.state == "down":
                    continue
                state, reason = states[key.state], reasons[key.reason]
                hr.add_bulk(transport, state, reason, ports)
                if on_result is not None:  # only NDJSON streaming needs an object per port
                    for port in ports:
                        on_result(hr, PortResult(port, transport, state, reason))
                self.done += len(ports)
            self.done += len(batch)
            if self.on_progress is not None:
                self.on_progress(self.done, self.open_count)

        return emit

    def _mark_unscanned(self) -> None:
        if not self.report.interrupted and self.done >= self.total:
            return
        for i, hr in enumerate(self.reports):
            if _is_down(hr):
                continue
            for transport, plan in self.port_plan.items():
                seen = hr.scanned(transport)
                missing = [p for p in plan[i] if p not in seen]
                if missing:
                    hr.add_bulk(transport, R.UNSCANNED, "unscanned", missing)


def _is_down(hr: HostReport) -> bool:
    return hr.discovery is not None and hr.discovery.state == "down"


def _no_discovery() -> DiscoveryOptions:
    return DiscoveryOptions(enabled=False)


def _remap(emit: Emit, indices: list[int]) -> Emit:
    """An emitter for an engine that scans a subset of the hosts (the live ones): its host
    indices are positions in the subset."""
    if indices == list(range(len(indices))):
        return emit

    def sub(batch: list[Answer], bulk: dict[BulkKey, list[int]]) -> None:
        emit([a._replace(index=indices[a.index]) for a in batch],
             {k._replace(index=indices[k.index]): v for k, v in bulk.items()})

    return sub


def attach_registered(reports: list[HostReport], atlas, *, states=(R.OPEN, R.OPEN_FILTERED)) -> None:
    """Registry entries (service name and description) for every port in `states`."""
    cache: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for hr in reports:
        for result in hr.ports.values():  # bulk ports are closed or unscanned: never listed
            if result.state not in states:
                continue
            key = (result.port, result.transport)
            if key not in cache:
                cache[key] = registered_for(atlas, result.port, result.transport)
            result.registered = cache[key]


def registered_for(atlas, port: int, transport: str) -> list[dict[str, Any]]:
    if atlas is None:
        return []
    out = []
    seen = set()
    for entry in atlas.entries(port, transport):
        # a wide 'Unassigned 49152-65535' range says nothing about this port
        if entry.status != "assigned":
            continue
        # port-only records (57: "any private terminal access") have no service name
        key = (entry.service or entry.description).lower()
        if key in seen:
            continue
        seen.add(key)
        out.append({"service": entry.service, "description": entry.description})
    return out


# UDP ports that stayed silent (open|filtered) still get the identification probes, as nmap
# -sU -sV does (a service away from its usual port answers only its own protocol's payload);
# bounded, since a filtered host leaves every UDP port open|filtered
MAX_UNCERTAIN_UDP = 1024


def run_identification(reports: list[HostReport], identify: IdentifyHook,
                       concurrency: int = IDENTIFY_CONCURRENCY,
                       notes: list[str] | None = None) -> None:
    """Run the identification hook on every open port (the catch-all ports of an accept-all
    host excepted) and on open|filtered UDP ports; store each verdict's dict in
    PortResult.service. An open|filtered UDP port that answers becomes open (udp-response);
    one that answers with ICMP port unreachable becomes closed; a silent one stays as it was,
    without a service."""
    import asyncio  # tens of ms to import (engine.run_async); only when identification runs

    todo = [(hr, r, False) for hr in reports for r in hr.open_ports() if not r.wildcard]
    uncertain = _uncertain_udp(reports)
    if len(uncertain) > MAX_UNCERTAIN_UDP:
        if notes is not None:
            notes.append(f"{len(uncertain)} UDP ports are open|filtered: identification "
                         f"probed the first {MAX_UNCERTAIN_UDP} only")
        uncertain = uncertain[:MAX_UNCERTAIN_UDP]
    todo += [(hr, r, True) for hr, r in uncertain]
    if not todo:
        return

    async def one(sem: asyncio.Semaphore, hr: HostReport, result: PortResult,
                  uncertain: bool) -> None:
        async with sem:
            try:
                verdict = await identify(hr.host, result)
            except Exception as exc:  # noqa: BLE001 - one bad probe must not end the scan
                verdict = {"outcome": "error", "protocol": None, "error": str(exc)[:200]}
        if verdict is None:
            return
        service = verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)
        if not uncertain:
            result.service = service
        elif service.get("outcome") in ("identified", "open-unidentified"):
            result.state, result.reason = R.OPEN, str(R.Reason.UDP_RESPONSE)
            result.service = service
            _promote(hr, result)
        elif service.get("outcome") == "closed":
            result.state, result.reason = R.CLOSED, str(R.Reason.PORT_UNREACH)
            _promote(hr, result)

    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(sem, h, r, u) for h, r, u in todo))

    run_async(main)


def _uncertain_udp(reports: list[HostReport]) -> list[tuple[HostReport, PortResult]]:
    out = []
    for hr in reports:
        for r in hr.detailed_ports():
            if r.transport == "udp" and r.state == R.OPEN_FILTERED and not r.wildcard:
                out.append((hr, r))
        for (transport, state, reason), ports in hr.bulk.items():
            if transport == "udp" and state == R.OPEN_FILTERED:
                out += [(hr, R.PortResult(p, "udp", state, reason)) for p in ports]
    return out


def _promote(hr: HostReport, result: PortResult) -> None:
    """A port decided by identification leaves the bulk lists for a result of its own."""
    key = (result.port, result.transport)
    if key not in hr.ports:
        for (transport, state, reason), ports in hr.bulk.items():
            if transport == result.transport and state == R.OPEN_FILTERED and \
                    result.port in ports:
                ports.remove(result.port)
                break
        hr.ports[key] = result
