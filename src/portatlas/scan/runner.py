"""Running the engines: in this process, or split over worker processes for big TCP sweeps.

A connect scan of a fast host is bound by the kernel's per-connection work (socket set-up,
SYN, RST, tear-down), which runs on the CPU of the process that calls connect(). One Python
process therefore uses one core; above a few thousand probes the ports are dealt round-robin
to one forked worker per core (at most 4), each with its share of the concurrency and rate
limits. Workers stream result batches back through a pipe, so progress, NDJSON output and
Ctrl-C behave the same as in a single process.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import struct
import sys
import time
from typing import Callable

from portatlas.scan.discovery import Discovery, discover
from portatlas.scan.engine import Answer, BulkKey, Emit
from portatlas.scan.syn import SynEngine
from portatlas.scan.tcp import TcpConnectEngine
from portatlas.scan.timing import TimingOptions
from portatlas.scan.udp import UdpEngine

PARALLEL_MIN_PROBES = 4096
MAX_WORKERS = 4
_FRAME = struct.Struct("!I")


class RunOutcome:
    def __init__(self) -> None:
        self.timings: dict[int, dict] = {}   # host index -> HostTiming.to_dict()
        self.notes: list[str] = []
        self.finished_workers = 0            # forked runs: workers that reported "done"


# Result batches cross the worker pipe as plain tuples in Answer's and BulkKey's field order:
# pickling NamedTuples costs about ten times as much (measured on 3.11, per answer: 2.4 us
# to dump and 1.9 us to load, against 0.2 and 0.2 us for tuples), and a REJECT sweep sends
# one answer per port.
def _to_wire(batch: list[Answer], bulk: dict[BulkKey, list[int]]) -> tuple[list, dict]:
    return [tuple(a) for a in batch], {tuple(k): v for k, v in bulk.items()}


def _from_wire(batch: list[tuple], bulk: dict) -> tuple[list[Answer], dict[BulkKey, list[int]]]:
    new = tuple.__new__
    return [new(Answer, a) for a in batch], {new(BulkKey, k): v for k, v in bulk.items()}


def choose_workers(probes: int, requested: int | None) -> int:
    if requested is not None:
        return max(1, min(requested, 64))
    if probes < PARALLEL_MIN_PROBES or not hasattr(os, "fork"):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS, probes // (PARALLEL_MIN_PROBES // 2)))


def _share(opts: TimingOptions, workers: int) -> TimingOptions:
    d = opts.to_dict()
    d["max_concurrency"] = max(1, opts.max_concurrency // workers)
    d["initial_window"] = max(1, min(opts.initial_window, d["max_concurrency"]))
    if opts.rate:
        d["rate"] = opts.rate / workers
    return TimingOptions(**d)


def run_engine(transport: str, hosts: list, ports: list[int], opts: TimingOptions,
               emit: Emit, *, workers: int = 1,
               ports_per_host: list[list[int]] | None = None,
               discovery=None, on_host: Callable[[int, object], None] | None = None) -> RunOutcome:
    """Scan every port of `ports` on every host (or, with `ports_per_host`, each host's own
    list: a cluster shard); `emit` gets result batches as they come.

    `discovery` (portatlas.scan.discovery.DiscoveryOptions, "tcp" engine only) runs host
    discovery in the engine's own loop: a host's ports are probed once it is found up.
    `on_host(index, HostStatus)` hears every host settled up or down (by discovery, or a
    -Pn host that a failed ARP/ND or a router's host unreachable settled down early).
    With workers and many hosts, each worker discovers and scans its share of the hosts."""
    if transport != "tcp":
        discovery = None
        if transport != "tcp-syn":
            on_host = None
    plan = ports_per_host if ports_per_host is not None else [ports] * len(hosts)
    longest = max(map(len, plan), default=0)
    if workers <= 1 or (longest < workers and (discovery is None or len(hosts) < workers)):
        return _run_here(transport, hosts, plan, opts, emit, discovery, on_host)
    return _run_forked(transport, hosts, plan, opts, emit, workers, discovery, on_host)


def _make_engine(transport: str, hosts: list, ports_per_host: list[list[int]],
                 opts: TimingOptions, emit: Emit, discovery=None,
                 on_host=None, host_indices: list[int] | None = None):
    if transport == "tcp" and (discovery is not None or on_host is not None):
        stage = None
        if discovery is not None and discovery.enabled:
            stage = Discovery(hosts, discovery, opts, host_indices=host_indices)
        return TcpConnectEngine(hosts, ports_per_host, opts, emit, discovery=stage,
                                on_host=on_host, host_indices=host_indices)
    if transport == "udp":
        return UdpEngine(hosts, ports_per_host, opts, emit)
    if transport == "tcp-syn":
        return SynEngine(hosts, ports_per_host, opts, emit, on_host=on_host,
                         host_indices=host_indices)
    return TcpConnectEngine(hosts, ports_per_host, opts, emit, host_indices=host_indices)


def _run_here(transport: str, hosts: list, ports_per_host: list[list[int]], opts: TimingOptions,
              emit: Emit, discovery=None, on_host=None) -> RunOutcome:
    engine = _make_engine(transport, hosts, ports_per_host, opts, emit, discovery, on_host)
    engine.run()
    outcome = RunOutcome()
    outcome.timings = {i: t.to_dict() for i, t in engine.timings().items()}
    outcome.notes = list(engine.notes)
    if engine.interrupted:
        raise KeyboardInterrupt  # the caller reports what arrived so far
    return outcome


def _run_forked(transport: str, hosts: list, plan: list[list[int]], opts: TimingOptions,
                emit: Emit, workers: int, discovery=None,
                on_host=None) -> RunOutcome:
    share = _share(opts, workers)
    children: list[tuple[int, int]] = []  # (pid, read fd)
    # many hosts with discovery: each worker takes a share of the hosts (and discovers
    # them); otherwise a share of the ports of every host, and the (few) hosts are
    # discovered here first, once, so that every worker scans the same live hosts
    by_host = discovery is not None and len(hosts) >= workers
    subset = list(range(len(hosts)))
    if discovery is not None and discovery.enabled and not by_host:
        statuses = discover(hosts, discovery, opts, on_status=on_host)
        subset = [i for i, st in enumerate(statuses) if st.state == "up"]
        discovery, on_host = None, None
        if not subset:
            return RunOutcome()
    sys.stdout.flush()
    sys.stderr.flush()
    for w in range(workers):
        if by_host:
            indices = list(range(w, len(hosts), workers))
            part = ([hosts[i] for i in indices], [plan[i] for i in indices], indices)
        else:
            part = ([hosts[i] for i in subset], [plan[i][w::workers] for i in subset], subset)
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker
            os.close(r)
            _worker(transport, part, share, wfd, discovery, on_host is not None)  # never returns
        os.close(wfd)
        children.append((pid, r))
    outcome = RunOutcome()
    samples: dict[int, int] = {}
    buffers: dict[int, bytearray] = {fd: bytearray() for _, fd in children}
    interrupted = False
    try:
        _collect(children, emit, outcome, samples, buffers, on_host=on_host)
    except KeyboardInterrupt:
        interrupted = True
        for pid, _ in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _collect(children, emit, outcome, samples, buffers, draining=True, on_host=on_host)
    finally:
        for pid, fd in children:
            try:
                os.close(fd)
            except OSError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    if interrupted:
        raise KeyboardInterrupt
    if outcome.finished_workers < len(children):
        failed = len(children) - outcome.finished_workers
        outcome.notes.append(f"{failed} of {len(children)} scan workers failed; their ports are "
                             "reported as unscanned")
    return outcome


def _worker(transport: str, part: tuple, opts: TimingOptions, wfd: int, discovery=None,
            want_hosts: bool = False) -> None:
    hosts, plan, indices = part
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        def send(kind: str, payload) -> None:
            data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
            os.write(wfd, _FRAME.pack(len(data)))
            view = memoryview(data)
            while view:
                n = os.write(wfd, view)
                view = view[n:]

        engine = _make_engine(transport, hosts, plan, opts,
                              lambda batch, bulk: send("r", _to_wire(batch, bulk)), discovery,
                              (lambda i, st: send("h", (i, st))) if want_hosts else None,
                              host_indices=indices)
        engine.run()
        send("done", ({i: (t.to_dict(), t.samples) for i, t in engine.timings().items()},
                      engine.notes))
    except BaseException:  # noqa: BLE001 - a worker must never fall back into the parent's code
        code = 1
        import traceback  # only when a worker fails

        traceback.print_exc()
    finally:
        os._exit(code)


def _collect(children: list[tuple[int, int]], emit: Emit, outcome: RunOutcome,
             samples: dict[int, int], buffers: dict[int, bytearray],
             draining: bool = False, on_host=None) -> None:
    sel = selectors.DefaultSelector()
    open_fds = set()
    for _, fd in children:
        if fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
            open_fds.add(fd)

    deadline = time.monotonic() + 5 if draining else None
    while open_fds:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if timeout == 0.0:
            break
        for key, _ in sel.select(timeout):
            fd = key.fd
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                sel.unregister(fd)
                open_fds.discard(fd)
                del buffers[fd]
                continue
            buf = buffers[fd]
            buf += chunk
            while len(buf) >= 4:
                (size,) = _FRAME.unpack_from(buf)
                if len(buf) < 4 + size:
                    break
                kind, payload = pickle.loads(bytes(buf[4:4 + size]))
                del buf[:4 + size]
                if kind == "r":
                    emit(*_from_wire(*payload))
                elif kind == "h":
                    if on_host is not None:
                        on_host(*payload)
                elif kind == "done":
                    outcome.finished_workers += 1
                    timings, notes = payload
                    for i, (t, n) in timings.items():
                        if n >= samples.get(i, -1):
                            samples[i] = n
                            outcome.timings[i] = t
                    outcome.notes.extend(x for x in notes if x not in outcome.notes)
    sel.close()
