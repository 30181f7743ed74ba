"""A scan run on the workers of a Dask cluster (`portatlas scan ... --cluster ADDRESS`).

    scanner = ClusterScanner(hosts, tcp_ports=[22, 80], udp_ports=[], cluster="local:3")
    report = scanner.run()        # the same ScanReport a one-machine Scanner returns

How (design and reasons: docs/scan.md, "Scanning on a cluster"):
 1. connect to the scheduler (or start a local cluster), ask every worker which portatlas it
    has and whether it has a route to the targets (probe.worker_facts);
 2. split the probes into shards over a seeded permutation of (address, port)
    (shards.ShardPlan) and submit one task per shard (work.run_shard): each worker scans
    its shards with the local engine, one at a time, at its own --rate;
 3. merge each shard's answers as it finishes (progress, NDJSON streaming); a shard whose
    worker is lost is run again by Dask on another worker, and since a shard's answer only
    counts when its task finishes, nothing is lost or counted twice;
 4. once every shard is in, accept-all detection and identification run on whole hosts,
    again on the workers (work.finish_hosts): the client need not reach the targets.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Callable
import logging
import socket

from portatlas.errors import PortatlasError, UsageError
from portatlas.scan import results as R
from portatlas.scan.results import HostReport, PortResult, ScanReport
from portatlas.scan.timing import TimingOptions
from portatlas import __version__
from portatlas.cluster import probe
from portatlas.cluster.shards import ShardPlan, default_shards
from portatlas.cluster.work import run_shard, finish_hosts
from portatlas.scan.discovery import DiscoveryOptions
from portatlas.scan.hoststatus import HostStatus, assumed_up
from portatlas.scan.wildcard import candidate

ResultHook = Callable[[HostReport, PortResult], None]

CONNECT_TIMEOUT = 10.0   # seconds to reach the scheduler
WORKERS_TIMEOUT = 20.0   # seconds to wait for a first worker (a local cluster starts them)
FINISH_PORTS_PER_TASK = 64  # open ports per identification task
MAX_LOCAL_WORKERS = 64


# How often a shard whose finished result was lost with its worker is run again before the
# scan fails (Dask itself reruns a task whose worker dies while it runs).
LOST_RERUNS = 3


class ClusterError(PortatlasError):
    """The cluster cannot run the scan (exit status 4: a network or system failure)."""


def parse_cluster(spec: str) -> tuple[str, Any]:
    """("local", N) for local:N, ("remote", address) for tcp://HOST:PORT (or tls://)."""
    text = spec.strip()
    if text.startswith("local:"):
        count = text[len("local:"):]
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise UsageError(f"--cluster local:N takes a number of workers from 1 to "
                             f"{MAX_LOCAL_WORKERS}, not {count!r}")
        return "local", int(count)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("tcp", "tls") or not rest:
        raise UsageError(f"--cluster takes tcp://SCHEDULER:PORT or local:N, not {spec!r}")
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host.strip("[]"):
        raise UsageError(f"--cluster {spec!r}: name the scheduler as {scheme}://HOST:PORT")
    return "remote", text


class ClusterScanner:
    """The cluster counterpart of portatlas.scan.scanner.Scanner (same hooks, same report).

    `identify` here is an identify Options object (or None): the hook itself runs on the
    workers. `on_note` gets one-line warnings as they arise (a worker without a route).
    """

    def __init__(self, hosts: list, *, tcp_ports: list[int], udp_ports: list[int],
                 cluster: str, timing: TimingOptions | None = None, shards: int | None = None,
                 seed: int | None = None, on_result: ResultHook | None = None,
                 on_progress: Callable[[int, int], None] | None = None,
                 on_note: Callable[[str], None] | None = None, detect_accept_all: bool = True,
                 identify: Any = None, syn: bool = False, command: str = "scan",
                 argv: list[str] | None = None, options: dict[str, Any] | None = None,
                 discovery: Any = None) -> None:
        self.kind, self.where = parse_cluster(cluster)
        self.cluster = cluster
        self.hosts = hosts
        self.tcp_ports = list(tcp_ports)
        self.udp_ports = list(udp_ports)
        self.timing = timing or TimingOptions()
        self.requested_shards = shards
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        self.on_result = on_result
        self.on_progress = on_progress
        self.on_note = on_note
        self.detect_accept_all = detect_accept_all
        self.identify = identify
        self.syn = syn
        self.discovery = discovery  # portatlas.scan.discovery.DiscoveryOptions | None
        self.reports = [HostReport(h) for h in hosts]
        self.report = ScanReport(self.reports, command=command, argv=list(argv or []),
                                 options=dict(options or {}))
        self.total = len(hosts) * (len(self.tcp_ports) + len(self.udp_ports))
        self.done = 0
        self.open_count = 0
        self.run_id = uuid.uuid4().hex[:12]
        self.info: dict[str, Any] = {}
        self._client = None
        self._local = None

    # ------------------------------------------------------------------------------------
    def run(self) -> ScanReport:
        report = self.report
        try:
            self._connect()
            workers = self._check_workers()
            plan = self._plan(len(workers))
            try:
                self._sweep(plan, workers)
                self._sweep_gaps(workers)
            except KeyboardInterrupt:
                report.interrupted = True
            self._check_complete()
            if not report.interrupted:
                try:
                    self._finish(workers)
                except KeyboardInterrupt:
                    report.interrupted = True
            self._note_lost_workers()
        finally:
            self._close()
        report.options["cluster"] = self.info
        report.finished = time.time()
        return report

    # --- connection and the workers' checks ------------------------------------------------
    def _connect(self) -> None:
        try:
            import distributed  # optional: dask distributed is the cluster extra
        except ImportError:
            raise ClusterError("--cluster needs Dask: pip install 'portatlas[cluster]' "
                               "(dask and distributed)") from None
        self._quiet_logs()
        if self.kind == "local":
            try:
                self._local = distributed.LocalCluster(
                    n_workers=self.where, threads_per_worker=1, processes=True,
                    host="127.0.0.1", scheduler_port=0, dashboard_address=None,
                    silence_logs=logging.ERROR)
                self._client = distributed.Client(self._local, set_as_default=False,
                                                  direct_to_workers=False)
            except Exception as exc:  # noqa: BLE001 - whatever stops it is one line
                raise ClusterError(f"cannot start a local Dask cluster: {_why(exc)}") from None
            address = self._local.scheduler_address
        else:
            address = self.where
            _reachable(address)
            try:
                self._client = distributed.Client(address, timeout=CONNECT_TIMEOUT,
                                                  set_as_default=False,
                                                  direct_to_workers=False)
            except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, comm errors
                raise ClusterError(f"cannot reach the Dask scheduler at {address}: "
                                   f"{_why(exc)}") from None
        self.info = {"scheduler": address if self.kind == "remote" else self.cluster,
                     "shards": 0, "shard_seed": self.seed, "workers": []}

    def _quiet_logs(self) -> None:
        """Dask logs every failure it meets (with tracebacks) on standard error; the scan
        reports what matters as one line, so its loggers are silenced while it runs."""

        self._log_levels = {}
        names = [n for n in logging.root.manager.loggerDict
                 if n.split(".")[0] in ("distributed", "tornado")]
        for name in {"distributed", "tornado", *names}:
            logger = logging.getLogger(name)
            self._log_levels[name] = logger.level
            logger.setLevel(logging.CRITICAL + 1)

    def _restore_logs(self) -> None:
        for name, level in getattr(self, "_log_levels", {}).items():
            logging.getLogger(name).setLevel(level)

    def _check_workers(self) -> list[str]:
        """The workers that will scan: every worker must have this portatlas; those without a
        route to every target are left out (and reported)."""
        # optional: cloudpickle comes with the cluster extra (ships probe by value)
        import cloudpickle


        client = self._client
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except Exception:  # noqa: BLE001 - a TimeoutError with a long text
            raise ClusterError(f"the Dask cluster at {self.info['scheduler']} has no workers "
                               f"(waited {WORKERS_TIMEOUT:.0f} s)") from None
        # sent by value: it must run on a worker that lacks portatlas, to say so
        cloudpickle.register_pickle_by_value(probe)
        try:
            addresses = [(h.address, h.family, h.scope_id) for h in self.hosts]
            facts = client.run(probe.worker_facts, addresses, on_error="return")
        finally:
            cloudpickle.unregister_pickle_by_value(probe)
        usable, no_route_hosts = [], None
        entries = []
        for worker in sorted(facts):
            fact = facts[worker]
            if isinstance(fact, BaseException):
                raise ClusterError(f"Dask worker {worker} failed the portatlas check: "
                                   f"{_why(fact)}")
            if fact["portatlas"] is None:
                raise ClusterError(f"Dask worker {worker} has no portatlas "
                                   f"({fact['error']}); install portatlas[cluster] "
                                   f"{__version__} on every worker")
            if fact["portatlas"] != __version__:
                raise ClusterError(f"Dask worker {worker} has portatlas {fact['portatlas']}, "
                                   f"this client {__version__}; install the same version on "
                                   "every worker")
            if fact["error"]:
                raise ClusterError(f"Dask worker {worker} has a broken portatlas "
                                   f"({fact['error']}); reinstall portatlas[cluster] "
                                   f"{__version__} there")
            missing = set(fact["no_route"])
            entry = {"address": worker, "state": "scanning", "shards": 0, "probes": 0}
            if missing:
                entry["state"] = "no-route"
                entry["no_route_hosts"] = len(missing)
                example = self.hosts[min(missing)].address
                self._note(f"cluster worker {worker} has no route to {len(missing)} of the "
                           f"{len(self.hosts)} target addresses (e.g. {example}); it scans "
                           "nothing, its share goes to the other workers")
            else:
                usable.append(worker)
            no_route_hosts = missing if no_route_hosts is None else no_route_hosts & missing
            entries.append(entry)
        self.info["workers"] = entries
        if not usable:
            if no_route_hosts:
                raise ClusterError("no worker of the Dask cluster has a route to the targets "
                                   f"(e.g. {self.hosts[min(no_route_hosts)].address})")
            raise ClusterError("no worker of the Dask cluster has a route to every target; "
                               "give each worker a route to all of them")
        return usable

    def _note(self, text: str) -> None:
        self.report.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    # --- the sweep --------------------------------------------------------------------------
    def _plan(self, workers: int):
        # a ping scan (-sn: no ports) deals out the hosts themselves
        units = len(self.hosts) * max(1, len(self.tcp_ports) + len(self.udp_ports))
        count = self.requested_shards or default_shards(units, workers)
        plan = ShardPlan(len(self.hosts), self.tcp_ports, self.udp_ports, count, self.seed)
        self.info["shards"] = plan.shards
        return plan

    def _task(self, shard: int, parts: dict[int, dict[str, list[int]]],
              discovery: Any) -> dict[str, Any]:
        rows = []
        for index in sorted(parts):
            h = self.hosts[index]
            rows.append((index, h.target, h.address, h.family, h.scope_id))  # work.ShardHost
        return {"version": __version__, "shard": shard, "hosts": rows, "plan": parts,
                "timing": self.timing.to_dict(), "syn": self.syn, "discovery": discovery}

    def _sweep(self, plan, workers: list[str], discovery: Any = "default",
               first: int = 0) -> None:
        """Run every shard of `plan` (numbered from `first`), merging each as it finishes."""
        from distributed import as_completed  # optional: dask distributed (cluster extra)


        if discovery == "default":
            discovery = self.discovery
        client = self._client
        usable = workers
        pending: dict[Any, int] = {}
        parts_of: dict[int, dict[int, dict[str, list[int]]]] = {}
        retries_of: dict[int, int] = {}

        def submit(shard: int, parts: dict[int, dict[str, list[int]]], where: list[str]):
            key = f"portatlas-shard-{self.run_id}-{shard}-{retries_of.get(shard, 0)}"
            fut = client.submit(run_shard, self._task(shard, parts, discovery), key=key,
                                pure=False, workers=list(where), allow_other_workers=False)
            pending[fut] = shard
            parts_of[shard] = parts
            return fut

        futures = [submit(first + k, plan.shard(k), usable) for k in range(plan.shards)]
        done = as_completed(futures, loop=client.loop)
        try:
            for fut in done:
                shard = pending.pop(fut)
                if fut.status in ("lost", "pending") and retries_of.get(shard, 0) < LOST_RERUNS:
                    # it finished on a worker that died before its result was fetched (the
                    # result died with it; Dask then says lost, or pending again while it
                    # recomputes): run the shard again, on the workers left
                    retries_of[shard] = retries_of.get(shard, 0) + 1
                    done.add(submit(shard, parts_of[shard], usable))
                    continue
                if fut.status != "finished":
                    raise ClusterError(self._task_failure(fut, shard))
                result = fut.result()
                self._merge(result, parts_of[shard])
                self._count(result["worker"], result["reports"])
                if result["no_route"]:
                    # the route went away on that worker while the scan ran: its hosts run
                    # again elsewhere, and it gets no more work
                    worker = result["worker"]
                    if worker in usable:
                        usable.remove(worker)
                        self._mark(worker, "no-route")
                        self._note(f"cluster worker {worker} lost its route to "
                                   f"{len(result['no_route'])} target addresses; their probes "
                                   "run again on the other workers")
                    if not usable:
                        raise ClusterError("no worker of the Dask cluster has a route to the "
                                           "targets any more")
                    retries_of[shard] = retries_of.get(shard, 0) + 1
                    again = {i: parts_of[shard][i] for i in result["no_route"]}
                    done.add(submit(shard, again, usable))
        except BaseException:
            client.cancel(list(pending), force=True)
            raise

    def _task_failure(self, fut, shard: int) -> str:
        try:
            exc = fut.exception(timeout=5)
        except Exception as err:  # noqa: BLE001 - a cancelled future has no exception
            exc = err
        name = type(exc).__name__
        if name == "KilledWorker":
            return (f"shard {shard} of the scan was lost with every worker that ran it "
                    "(Dask gave up after repeated worker deaths)")
        if fut.status == "cancelled":
            return f"lost the Dask scheduler at {self.info['scheduler']} during the scan"
        return f"shard {shard} failed on the cluster: {_why(exc)}"

    def _merge(self, result: dict[str, Any], planned: dict[int, dict[str, list[int]]]) -> None:
        on_result = self.on_result
        count = 0
        for index, part in result["reports"].items():
            hr = self.reports[index]
            if part.discovery is not None and self._merge_status(hr, part.discovery):
                # settled down in this shard: its probes there are done, and moot
                count += sum(map(len, planned[index].values()))
                continue
            if _down(hr):
                continue  # stray answers for a host already settled down elsewhere
            for key, r in part.ports.items():
                hr.ports[key] = r
                count += 1
                if r.state == R.OPEN:
                    self.open_count += 1
                if on_result is not None:
                    on_result(hr, r)
            for (transport, state, reason), ports in part.bulk.items():
                hr.add_bulk(transport, state, reason, ports)
                count += len(ports)
                if on_result is not None:
                    for port in ports:
                        on_result(hr, PortResult(port, transport, state, reason))
            for transport, timing in part.timing.items():
                mine = hr.timing.get(transport)
                if mine is None or (timing.get("samples") or 0) > (mine.get("samples") or 0):
                    hr.timing[transport] = timing
        for note in result["notes"]:
            if note not in self.report.notes:
                self.report.notes.append(note)
        self.done += count
        if self.on_progress is not None:
            self.on_progress(self.done, self.open_count)

    def _merge_status(self, hr: HostReport, status) -> bool:
        """The host's discovery status after one more shard's (the rule of the local
        Scanner: up from anyone wins, then down, then -Pn's assumption). True when this
        shard settled the host down (its answers in the shard are then moot)."""
        old = hr.discovery
        if status.state == "down":
            if old is None or (old.state == "up" and old.reason == "user-set"):
                hr.discovery = status
                hr.ports.clear()
                hr.bulk.clear()
            return True
        if old is None or old.state != "up" or (old.reason == "user-set"
                                                  and status.reason != "user-set"):
            hr.discovery = status
        return False

    def _sweep_gaps(self, workers: list[str]) -> None:
        """Probes that are missing for hosts that are up: a shard found the host down
        (its discovery missed it, another shard's did not). They run again, without
        discovery, so that the answer has no holes."""
        missing: dict[int, dict[str, list[int]]] = {}
        for index, hr in enumerate(self.reports):
            if _down(hr):
                continue
            for transport, ports in (("tcp", self.tcp_ports), ("udp", self.udp_ports)):
                seen = hr.scanned(transport)
                gap = [p for p in ports if p not in seen]
                if gap:
                    missing.setdefault(index, {"tcp": [], "udp": []})[transport] = gap
        if not missing or self.discovery is None:
            return

        self.report.notes.append(f"{len(missing)} hosts were found up by some shards and not "
                                 "by others; their remaining ports were scanned again")
        plan = _FixedPlan(missing)
        self._sweep(plan, workers, discovery=DiscoveryOptions(enabled=False),
                    first=self.info["shards"])

    def _count(self, worker: str, reports: dict[int, HostReport]) -> None:
        entry = self._entry(worker)
        entry["shards"] += 1
        entry["probes"] += sum(len(hr.ports) + sum(map(len, hr.bulk.values()))
                               for hr in reports.values())

    def _entry(self, worker: str) -> dict[str, Any]:
        for entry in self.info["workers"]:
            if entry["address"] == worker:
                return entry
        entry = {"address": worker, "state": "scanning", "shards": 0, "probes": 0}
        self.info["workers"].append(entry)
        return entry

    def _mark(self, worker: str, state: str) -> None:
        self._entry(worker)["state"] = state

    def _check_complete(self) -> None:
        """Every probe exactly once: after an interruption the rest is `unscanned`; a gap
        without one would be a bug, and is reported rather than hidden."""
        gaps = 0
        for hr in self.reports:
            if _down(hr):
                continue
            if self.discovery is not None and hr.discovery is None:
                hr.discovery = (HostStatus("unknown", "unscanned", "none")
                                if self.report.interrupted and self.discovery.enabled
                                else assumed_up())
            for transport, ports in (("tcp", self.tcp_ports), ("udp", self.udp_ports)):
                seen = hr.scanned(transport)
                missing = [p for p in ports if p not in seen]
                if missing:
                    gaps += len(missing)
                    hr.add_bulk(transport, R.UNSCANNED, "unscanned", missing)
        if gaps and not self.report.interrupted:
            self.report.notes.append(f"{gaps} probes were not answered by the cluster; they "
                                     "are reported as unscanned")

    # --- after the sweep: whole-host work -------------------------------------------------
    def _finish(self, workers: list[str]) -> None:
        from distributed import as_completed  # optional: dask distributed (cluster extra)


        todo = []
        for index, hr in enumerate(self.reports):
            wildcard = self.detect_accept_all and candidate(hr)
            opened = len(hr.open_ports()) if self.identify is not None else 0
            if wildcard or opened:
                todo.append((index, max(opened, 1)))
        if not todo:
            return
        batches: list[list[int]] = [[]]
        weight = 0
        for index, cost in todo:
            if batches[-1] and weight + cost > FINISH_PORTS_PER_TASK:
                batches.append([])
                weight = 0
            batches[-1].append(index)
            weight += cost
        client = self._client
        futures = []
        for n, batch in enumerate(batches):
            task = {"version": __version__, "reports": {i: self.reports[i] for i in batch},
                    "timing": self.timing.to_dict(), "accept_all": self.detect_accept_all,
                    "identify": self.identify}
            futures.append(client.submit(finish_hosts, task, pure=False, workers=workers,
                                         allow_other_workers=False,
                                         key=f"portatlas-finish-{self.run_id}-{n}"))
        try:
            for fut in as_completed(futures, loop=client.loop):
                if fut.status != "finished":
                    raise ClusterError(self._task_failure(fut, -1).replace(
                        "shard -1", "a finishing task"))
                for index, hr in fut.result()["reports"].items():
                    self.reports[index] = hr
        except BaseException:
            client.cancel(futures, force=True)
            raise
        self.report.hosts = self.reports

    def _note_lost_workers(self) -> None:
        if self._client is None:
            return
        try:
            now = set(self._client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - the scheduler itself may be gone
            return
        for entry in self.info.get("workers", []):
            if entry["address"] not in now and entry["state"] == "scanning":
                entry["state"] = "lost"
                self.report.notes.append(f"cluster worker {entry['address']} left during the "
                                         "scan; its unfinished shards ran on the other workers")

    def _close(self) -> None:
        for thing in (self._client, self._local):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing must not hide the scan's outcome
                    pass
        self._client = self._local = None
        self._restore_logs()


class _FixedPlan:
    """A plan of given parts (the gaps' second round): one shard per host group."""

    def __init__(self, parts: dict[int, dict[str, list[int]]], per_shard: int = 8192) -> None:
        self.groups: list[dict[int, dict[str, list[int]]]] = [{}]
        size = 0
        for index, ports in parts.items():
            n = sum(map(len, ports.values()))
            if self.groups[-1] and size + n > per_shard:
                self.groups.append({})
                size = 0
            self.groups[-1][index] = ports
            size += n
        self.shards = len(self.groups)

    def shard(self, k: int) -> dict[int, dict[str, list[int]]]:
        return self.groups[k]


def _reachable(address: str) -> None:
    """A plain TCP connection to the scheduler first: Dask's own connect retries a refused
    connection until its timeout, where one attempt already tells."""

    rest = address.partition("://")[2]
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer in {CONNECT_TIMEOUT:.0f} s"
        elif isinstance(exc, socket.gaierror):
            reason = f"cannot resolve {host!r}"
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


def _down(hr: HostReport) -> bool:
    return hr.discovery is not None and hr.discovery.state == "down"


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
