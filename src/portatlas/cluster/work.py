"""What runs on a Dask worker: one shard of a scan, or the finishing touches for some hosts.

Both functions are plain module functions (pickled by reference), so a worker needs the same
portatlas installed; the client checks that before it submits anything (probe.worker_facts)
and every task checks it again, for workers that join later.

A worker runs one task at a time whatever its --nthreads: the lock below makes each worker
process one egress with one --rate, as the user asked for, and the engines were written
for one scan per process (descriptor limits, the fast path's timing).
"""

from __future__ import annotations

import threading
import time
from typing import Any, NamedTuple

from portatlas import __version__
from portatlas.cluster.probe import worker_facts

_ONE_AT_A_TIME = threading.Lock()


class ShardHost(NamedTuple):
    """One host of a shard task. Tasks carry plain tuples in this field order (a worker with
    another portatlas must still be able to read the task and refuse it by its version)."""

    index: int          # the host's position in the whole scan
    target: str
    address: str
    family: int
    scope_id: int


# A shard task: {"version", "shard", "hosts": [ShardHost as a tuple],
#   "plan": {index: {"tcp": [port], "udp": [port]}}, "timing": TimingOptions.to_dict(),
#   "syn": bool, "discovery": DiscoveryOptions | None (host discovery for the shard's hosts,
#   in the engine's loop, as in a one-machine scan)}
# Its result: {"shard", "worker", "reports": {index: HostReport}, "no_route": [index],
#   "notes": [str], "elapsed_s": float}


def _check_version(wanted: str) -> None:
    if wanted != __version__:
        raise RuntimeError(f"this worker has portatlas {__version__}, the client {wanted}")


def _worker_address() -> str:
    try:
        # optional: inside a dask worker only; "local" without distributed
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _hosts(rows: list[ShardHost]) -> list:
    # lazy: after _check_version, so a mismatched worker fails clearly, not on an import
    from portatlas.scan.targets import Host

    return [Host(r.target, r.address, r.family, r.scope_id) for r in rows]


def _unroutable(hosts: list) -> set[int]:
    """Positions in `hosts` this machine has no route to (asked again per task: routes can
    change while a scan runs)."""

    facts = worker_facts([(h.address, h.family, h.scope_id) for h in hosts])
    return set(facts["no_route"])


def run_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Scan one shard with the local engine (portatlas.scan.scanner.Scanner) and return one
    HostReport per host it touched."""
    _check_version(task["version"])
    # lazy: the scan engine only after _check_version (another portatlas fails clearly there)
    from portatlas.scan.scanner import Scanner
    from portatlas.scan.timing import TimingOptions

    with _ONE_AT_A_TIME:
        started = time.monotonic()
        rows = [ShardHost(*row) for row in task["hosts"]]
        hosts = _hosts(rows)
        missing = _unroutable(hosts)
        keep = [i for i in range(len(rows)) if i not in missing]
        hosts = [hosts[i] for i in keep]
        indices = [rows[i].index for i in keep]
        plan = task["plan"]
        port_plan = {t: [plan[index][t] for index in indices] for t in ("tcp", "udp")}
        # every port of the shard, for what the Scanner says about its options; the plan
        # says which host gets which
        union = {t: sorted({p for ports in port_plan[t] for p in ports}) for t in port_plan}
        scanner = Scanner(hosts, tcp_ports=union["tcp"], udp_ports=union["udp"],
                          timing=TimingOptions(**task["timing"]), workers=1,
                          detect_accept_all=False, identify=None, syn=task.get("syn", False),
                          port_plan=port_plan, discovery=task.get("discovery"))
        report = scanner.run()
        return {"shard": task["shard"], "worker": _worker_address(),
                "reports": dict(zip(indices, report.hosts)),
                "no_route": [rows[i].index for i in sorted(missing)],
                "notes": list(report.notes), "interrupted": report.interrupted,
                "elapsed_s": time.monotonic() - started}


def finish_hosts(task: dict[str, Any]) -> dict[str, Any]:
    """Accept-all detection and service identification for whole hosts, after every shard
    of them is in (both need a host's complete answer): {"reports": {index: HostReport}}."""
    _check_version(task["version"])
    # lazy: as in run_shard, the scan engine loads after the version check
    from portatlas.scan.scanner import run_identification
    from portatlas.scan.wildcard import detect_all

    with _ONE_AT_A_TIME:
        reports = task["reports"]  # {index: HostReport}
        if task.get("accept_all"):
            detect_all(list(reports.values()))
        options = task.get("identify")
        if options is not None:
            run_identification(list(reports.values()), identify_hook(options))
        return {"worker": _worker_address(), "reports": reports}


def identify_hook(options: Any):
    """The identification hook of portatlas.scan.scanner for one set of identify Options."""
    # lazy: the probes (identify) load only for shards with --identify
    from portatlas.identify import identify_async

    async def hook(host, result):
        return await identify_async(host.address, result.port, result.transport,
                                    options=options, return_partial=True)

    return hook
