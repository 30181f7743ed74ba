"""TCP connect scanning: one non-blocking connect() per probe, many at once.

Speed comes from the kernel doing the work and Python staying out of its way:
 - sockets are reused: after a refused connect() the socket is back to its unconnected
   state and can connect again, which saves a socket()/close() pair per closed port;
 - on a fast path (a host on the same machine or link) the answer is often there before
   connect() returns, so a second connect() right away picks it up without touching epoll
   (switched off per host as soon as it stops paying);
 - everything else waits in epoll with a deadline from the host's RTT estimate.

State and reason per answer:
   connect succeeded                   -> open      syn-ack
   refused, no ICMP queued             -> closed    conn-refused (a TCP reset)
   refused with ICMP port unreachable  -> filtered  port-unreach (a firewall's REJECT)
   ICMP host/net unreachable, prohibited -> filtered host-unreach/net-unreach/admin-prohibited
   no answer after every try           -> filtered  no-response
A connect that reached our own socket (the loopback self-connect of an ephemeral port) is
asked again from another source port and never reported open.
"""

from __future__ import annotations

import errno
import heapq
import select
import socket
import time
from collections import deque
from typing import Callable

from portatlas.scan import results as R
from portatlas.scan.engine import Answer, BulkKey, Emit, Engine, HostQueue, ProbeState, answer, \
    down_status, error_reason
from portatlas.scan.neighbours import NeighbourWatch
from portatlas.scan.routes import from_this_machine
from portatlas.scan.sysres import LINGER_RESET, IcmpError, Poller, enable_recverr, read_icmp_error
from portatlas.scan.timing import HostTiming, RateLimiter, TimingOptions

EINPROGRESS = errno.EINPROGRESS
EALREADY = errno.EALREADY
EISCONN = errno.EISCONN
ECONNREFUSED = errno.ECONNREFUSED
_FD_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_UNREACH = {errno.EHOSTUNREACH: R.R_HOST_UNREACH, errno.ENETUNREACH: R.R_NET_UNREACH,
            errno.EHOSTDOWN: R.R_HOST_UNREACH, errno.ENONET: R.R_HOST_UNREACH,
            errno.ENOPROTOOPT: R.R_PROTO_UNREACH}


class _Probe(ProbeState):
    __slots__ = ("sock", "self_connects")

    def __init__(self, hs: "_HostState", port: int) -> None:
        super().__init__(hs, port)
        self.sock: socket.socket | None = None
        self.self_connects = 0


class _HostState(HostQueue):
    __slots__ = ("immediate", "imm_hits", "imm_misses", "family", "v6", "sweep_sock",
                 "sweep_poll", "held")
    probe_type = _Probe

    def __init__(self, index: int, host, ports: list[int], timing: HostTiming) -> None:
        super().__init__(index, host, ports, timing)
        self.immediate = True   # try the fast path until it stops paying
        self.imm_hits = 0
        self.imm_misses = 0
        self.family = host.family
        self.v6 = host.family == socket.AF_INET6
        self.sweep_sock: socket.socket | None = None  # the reused socket of the fast path
        self.sweep_poll = None
        self.held: list[int] | None = None  # ports waiting for discovery to find the host up


class TcpConnectEngine(Engine):
    """Scan `ports` on every host with connect(); results go to `emit` in batches."""

    def __init__(self, hosts: list, ports_per_host: list[list[int]], opts: TimingOptions,
                 emit: Emit, *, flush_interval: float = 0.05,
                 host_indices: list[int] | None = None, discovery=None,
                 on_host: Callable[[int, object], None] | None = None,
                 settle_dead: bool = True) -> None:
        """`discovery`: a portatlas.scan.discovery.Discovery stage for the same hosts (and
        host_indices), run in this loop: a host's ports wait until it is found up. Without
        it every host counts as up (-Pn) and, with `settle_dead`, the first sign that a
        host is not there (a failed ARP/ND, a router's host unreachable, before anything
        from the host was heard) settles it down and drops its queued probes. `on_host`
        hears (host index, HostStatus) for every host settled either way."""
        self.opts = opts
        self.emit = emit
        self.flush_interval = flush_interval
        first: HostTiming | None = None
        self.hosts: list[_HostState] = []
        for i, (host, ports) in enumerate(zip(hosts, ports_per_host)):
            timing = HostTiming(opts)
            self.hosts.append(_HostState(host_indices[i] if host_indices else i, host, ports, timing))
            first = first or timing
        self.poller = Poller()
        self.discovery = discovery
        self.on_host = on_host
        self.settle_dead = settle_dead
        self.by_index = {hs.index: hs for hs in self.hosts}
        self._requeued = True
        self.neighbours = None
        if discovery is not None:
            for hs in self.hosts:
                hs.held, hs.ports = hs.ports, []
            self.poller.persistent(discovery.fileno())
        elif settle_dead and on_host is not None:
            try:
                self.neighbours = NeighbourWatch()
                self.poller.persistent(self.neighbours.fileno())
            except OSError:
                self.neighbours = None  # no netlink: the ICMP path still settles some
        self.by_address = {hs.host.address: hs for hs in self.hosts}
        self.by_fd: dict[int, _Probe] = {}
        self.heap: list = []
        self.seq = 0
        self.inflight = 0
        self.limit = max(1, opts.max_concurrency)
        self.pool: dict[int, list[socket.socket]] = {socket.AF_INET: [], socket.AF_INET6: []}
        self.out: list[Answer] = []
        # (host index, state, reason) -> ports: answers with nothing more to say (refused at
        # the first try), sent compactly
        self.bulk: dict[BulkKey, list[int]] = {}
        self.pause_until = 0.0
        self.rate = RateLimiter(opts.rate, time.monotonic()) if opts.rate else None
        if discovery is not None and self.rate is not None:
            discovery.rate = self.rate  # one --rate for discovery and port probes together
        self.interrupted = False
        self.notes: list[str] = []
        self._emfile_noted = False

    # public -------------------------------------------------------------------------------
    # the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        active = deque(hs for hs in self.hosts if hs.has_work())
        monotonic = time.monotonic
        last_flush = monotonic()
        disc = self.discovery
        disc_fd = disc.fileno() if disc is not None else -1
        neigh_fd = self.neighbours.fileno() if self.neighbours is not None else -1
        while True:
            now = monotonic()
            if disc is not None:
                disc.step(now)
                self._discovered(disc, active)
                if disc.done:
                    disc.close()
                    self.discovery = disc = None
            if active and now >= self.pause_until:
                self._launch(active, now)
            if not active and not self.by_fd and disc is None:
                break
            wait = self._next_wait(active, monotonic())
            if disc is not None:
                wait = min(wait, disc.next_wakeup(monotonic()))
            ready = self.poller.poll(wait) if (wait > 0 or self.by_fd) else []
            now = monotonic()
            by_fd = self.by_fd
            for fd in ready:
                probe = by_fd.get(fd)
                if probe is not None:
                    self._answered_async(probe, now)
                elif fd == disc_fd and disc is not None:
                    disc.on_readable(now)
                elif fd == neigh_fd:
                    for address in self.neighbours.failed():
                        hs = self.by_address.get(address)
                        if hs is not None:
                            self._settle_down(hs, R.R_HOST_UNREACH, None, local=True)
            if self.heap and self.heap[0][0] <= now:
                self._expire(now)
            if self._requeued:
                self._requeued = False
                queued = set(map(id, active))
                for hs in self.hosts:
                    if id(hs) not in queued and hs.has_work():
                        active.append(hs)
            if now - last_flush >= self.flush_interval:
                self._flush()
                last_flush = now

    def _discovered(self, disc, active: deque) -> None:
        """Hosts the discovery stage settled: up ones get their ports, down ones none."""
        for index, status in disc.settled():
            hs = self.by_index.get(index)
            if hs is None:
                continue
            if status.state == "up" and hs.held is not None:
                hs.ports, hs.held = hs.held, None
                hs.heard = True
                if hs.has_work():
                    active.append(hs)
            else:
                hs.held = None
                hs.down = True
            if self.on_host is not None:
                self.on_host(index, status)

    def _settle_down(self, hs: _HostState, reason: int, by: str | None, local: bool) -> None:
        """A -Pn host gave its first answer and it says the host is not there: drop every
        probe still queued for it (those in flight end by themselves)."""
        if hs.down or hs.heard or not self.settle_dead:
            return
        hs.down = True
        dropped = hs.drop_queued()
        # the probes in flight have nothing left to learn either
        for probe in [p for p in self.by_fd.values() if p.hs is hs]:
            self._discard(self._release(probe))
            dropped += 1
        if self.on_host is not None:
            method = ("nd" if hs.v6 else "arp") if local else None
            self.on_host(hs.index, down_status(reason, by, method, dropped))

    def _next_wait(self, active: deque, now: float) -> float:
        wait = 0.25
        if self.heap:
            wait = min(wait, self.heap[0][0] - now)
        if active:
            if now < self.pause_until:
                wait = min(wait, self.pause_until - now)
            elif self.rate is not None and self.rate.tokens < 1:
                wait = min(wait, self.rate.wait_time())
            elif self.inflight < self.limit and any(
                    hs.timing.inflight < hs.timing.window for hs in active):
                wait = 0.0
        return max(0.0, wait)

    def _launch(self, active: deque, now: float) -> None:
        blocked = 0
        swept = 0
        rate = self.rate
        while active and self.inflight < self.limit:
            hs = active[0]
            t = hs.timing
            if t.inflight >= t.window:
                blocked += 1
                if blocked >= len(active):
                    return
                active.rotate(-1)
                continue
            blocked = 0
            if hs.immediate and rate is None and not hs.retry and hs.cursor < len(hs.ports):
                self._sweep(hs, 512)
                if len(active) > 1:
                    active.rotate(-1)
                swept += 1
                if swept >= 4:
                    return  # back to the loop now and then: flush results, read answers
                continue
            if rate is not None and not rate.take(time.monotonic()):
                return
            probe = hs.next_probe()
            if probe is None:
                active.popleft()
                continue
            if not self._start(probe, hs):
                return  # out of descriptors or local ports: wait for some to free up
            if len(active) > 1:
                active.rotate(-1)

    def _sweep(self, hs: _HostState, budget: int) -> None:
        """The fast path: consecutive fresh ports of one host on one reused socket, for as
        long as answers arrive inside connect() itself. A refused port costs two connect()
        calls; once per chunk a poll() asks whether ICMP errors are queued (a REJECT, not a
        reset) and moves the ports they name. Anything else leaves the fast path."""
        sock = hs.sweep_sock
        if sock is None:
            sock = self._socket(hs.family)
            if sock is None:
                return
            hs.sweep_sock = sock
            hs.sweep_poll = select.poll()
            hs.sweep_poll.register(sock.fileno(), select.POLLERR)
        connect = sock.connect_ex
        poll = hs.sweep_poll.poll
        pollerr = select.POLLERR
        address = hs.host.address
        scope = hs.host.scope_id
        v6 = hs.v6
        ports = hs.ports
        i = hs.cursor
        end = min(len(ports), i + budget)
        key = BulkKey(hs.index, R.S_CLOSED, R.R_REFUSED)
        closed = self.bulk.setdefault(key, [])
        append = closed.append
        timing = hs.timing
        monotonic = time.monotonic
        n_before = len(closed)
        while i < end:
            port = ports[i]
            i += 1
            addr = (address, port, 0, scope) if v6 else (address, port)
            sample = (i & 63) == 0
            if sample:
                t0 = monotonic()
            r = connect(addr)
            if r == EINPROGRESS:
                r = connect(addr)
            if r == ECONNREFUSED:
                # A reset, or (rarely) an ICMP error that arrived while the socket was not
                # busy in connect(): those stay queued and are sorted out per chunk below.
                append(port)
                if sample:
                    timing.sample(monotonic() - t0)
                continue
            # anything else: hand this port to the general path with the socket it used
            hs.cursor = i
            probe = _Probe(hs, port)
            probe.tries = 1
            probe.sent = t0 if sample else monotonic()
            hs.sweep_sock = None
            own = None
            events = poll(0)
            if events and events[0][1] & pollerr:
                # errors are queued: sort them out before the socket leaves the fast path
                own = self._requeue_icmp(hs, sock, closed, n_before, current=port)
            if r == EALREADY:
                icmp = own
                if icmp is not None:
                    hs.imm_hits += 1
                    self._finish_icmp(probe, sock, icmp, monotonic())
                else:
                    hs.imm_misses += 1
                    if hs.imm_misses >= 32 and hs.imm_hits * 4 < hs.imm_misses:
                        hs.immediate = False
                    self._wait_for(probe, sock, hs)
            else:  # accepted (open, or the self-connect trap), or a local error
                hs.imm_hits += 1
                self._finish(probe, sock, r, monotonic())
            hs.sweep_poll = None
            break
        else:
            hs.cursor = i
        if hs.sweep_sock is sock:
            events = poll(0)
            if events and events[0][1] & pollerr:
                self._requeue_icmp(hs, sock, closed, n_before)
        answered = len(closed) - n_before
        if answered:
            hs.heard = True
        hs.imm_hits += answered
        timing.bulk_answered(answered)

    def _requeue_icmp(self, hs: _HostState, sock: socket.socket, closed: list[int], start: int,
                      current: int | None = None) -> IcmpError | None:
        """ICMP errors queued on the fast-path socket name the port they answer (the
        original destination): those ports were a firewall's REJECT, not resets. Returns
        the error that answers `current`, if one is queued."""
        fresh = set(closed[start:])
        moved = set()
        own = None
        for _ in range(4096):
            icmp = read_icmp_error(sock)
            if icmp is None:
                break
            port = icmp.dest_port
            if port is not None and port == current and own is None:
                own = icmp
                continue
            if port is None or port not in fresh or port in moved:
                continue
            moved.add(port)
            state, reason = error_reason(icmp, hs.v6)
            self.out.append(answer(hs.index, port, state, reason, None, 1))
        if moved:
            closed[start:] = [p for p in closed[start:] if p not in moved]
        return own

    @staticmethod
    def _icmp_for(sock: socket.socket, port: int) -> IcmpError | None:
        """The queued ICMP error that answers `port` (stale ones for other ports are dropped)."""
        for _ in range(64):
            icmp = read_icmp_error(sock)
            if icmp is None:
                return None
            if icmp.dest is None or icmp.dest_port == port:
                return icmp
        return None

    def _socket(self, family: int) -> socket.socket | None:
        pool = self.pool[family]
        if pool:
            return pool.pop()
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as exc:
            if exc.errno in _FD_EXHAUSTED:
                self._fd_exhausted()
                return None
            raise
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        enable_recverr(sock, family)
        return sock

    def _fd_exhausted(self) -> None:
        # EMFILE/ENFILE: adapt instead of failing: fewer probes at once from now on
        self.limit = max(1, min(self.limit, self.inflight) - 8) if self.inflight > 8 else max(1, self.inflight)
        self.pause_until = time.monotonic() + 0.02
        if not self._emfile_noted:
            self._emfile_noted = True
            self.notes.append(f"ran out of file descriptors; concurrency lowered to {self.limit}")

    def _start(self, probe: _Probe, hs: _HostState) -> bool:
        sock = self._socket(hs.family)
        if sock is None:
            hs.retry.appendleft(probe)
            self._requeued = True
            return False
        addr = hs.host.sockaddr(probe.port)
        probe.tries += 1
        probe.sent = time.monotonic()
        r = sock.connect_ex(addr)
        if r == EINPROGRESS:
            if hs.immediate:
                r = sock.connect_ex(addr)
                if r == EALREADY:
                    # an ICMP error (a firewall's REJECT) may have arrived already
                    icmp = self._icmp_for(sock, probe.port)
                    if icmp is not None:
                        hs.imm_hits += 1
                        self._finish_icmp(probe, sock, icmp, time.monotonic())
                        return True
                    hs.imm_misses += 1
                    if hs.imm_misses >= 32 and hs.imm_hits * 4 < hs.imm_misses:
                        hs.immediate = False
                else:
                    hs.imm_hits += 1
            if r == EALREADY or r == EINPROGRESS:
                self._wait_for(probe, sock, hs)
                return True
        elif r == errno.EADDRNOTAVAIL:
            # every local port is busy (TIME_WAIT from earlier runs, other programs): back off
            self._discard(sock)
            probe.tries -= 1
            hs.retry.appendleft(probe)
            self._requeued = True
            self.pause_until = time.monotonic() + 0.05
            return False
        self._finish(probe, sock, r, time.monotonic())
        return True

    def _wait_for(self, probe: _Probe, sock: socket.socket, hs: _HostState) -> None:
        fd = sock.fileno()
        probe.sock = sock
        self.by_fd[fd] = probe
        self.poller.arm(fd, write=True)
        self.inflight += 1
        hs.timing.inflight += 1
        self.seq += 1
        heapq.heappush(self.heap, (probe.sent + hs.timing.timeout, self.seq, probe, probe.gen))

    def _release(self, probe: _Probe) -> socket.socket:
        sock = probe.sock
        del self.by_fd[sock.fileno()]
        probe.sock = None
        probe.gen += 1
        self.inflight -= 1
        probe.hs.timing.inflight -= 1
        return sock

    def _answered_async(self, probe: _Probe, now: float) -> None:
        sock = probe.sock
        r = sock.connect_ex(probe.hs.host.sockaddr(probe.port))
        if r == EALREADY:
            # Still connecting. Linux treats ICMP errors in SYN_SENT as soft: the socket
            # keeps trying, but the error queue (IP_RECVERR) has the ICMP message now.
            icmp = self._icmp_for(sock, probe.port)
            if icmp is None:  # spurious wake-up: wait on
                self.poller.arm(sock.fileno(), write=True)
                return
            self._release(probe)
            self._finish_icmp(probe, sock, icmp, now)
            return
        self._release(probe)
        self._finish(probe, sock, r, now)

    def _expire(self, now: float) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, probe, gen = heapq.heappop(heap)
            if gen != probe.gen or probe.sock is None:
                continue
            sock = probe.sock
            # one last look: the answer may be waiting unread behind a busy loop
            r = sock.connect_ex(probe.hs.host.sockaddr(probe.port))
            self._release(probe)
            if r != EALREADY:
                self._finish(probe, sock, r, now)
                continue
            icmp = self._icmp_for(sock, probe.port)
            if icmp is not None:
                self._finish_icmp(probe, sock, icmp, now)
                continue
            self._discard(sock)
            hs = probe.hs
            if probe.tries < hs.timing.allowed_tries:
                hs.retry.append(probe)
                self._requeued = True
            else:
                hs.timing.gave_up()
                self.out.append(answer(hs.index, probe.port, R.S_FILTERED, R.R_NO_RESPONSE, None,
                                       probe.tries))

    def _finish(self, probe: _Probe, sock: socket.socket, r: int, now: float) -> None:
        hs = probe.hs
        rtt = now - probe.sent
        if r == errno.ECONNRESET or r == errno.ECONNABORTED:
            # The handshake completed and the connection was reset before we looked (a SYN
            # proxy with nothing behind, a front end that hangs up at once): the port did
            # accept, as nmap reports it too; accept-all detection looks at the behaviour.
            self._discard(sock)
            state, reason = R.S_OPEN, R.R_SYN_ACK
        elif r == 0 or r == EISCONN:
            if self._is_self_connect(sock):
                self._discard(sock)
                probe.self_connects += 1
                if probe.self_connects < 3:
                    probe.tries -= 1
                    hs.retry.appendleft(probe)
                    self._requeued = True
                else:
                    self.out.append(answer(hs.index, probe.port, R.S_CLOSED, R.R_SELF_CONNECT, None,
                                           probe.tries))
                return
            self._discard(sock)  # SO_LINGER 0: the server sees a reset, we keep no TIME_WAIT
            state, reason = R.S_OPEN, R.R_SYN_ACK
        elif r == ECONNREFUSED:
            icmp = self._icmp_for(sock, probe.port)
            if icmp is None:
                state, reason = R.S_CLOSED, R.R_REFUSED
            else:
                state, reason = error_reason(icmp, hs.v6)
            self.pool[hs.family].append(sock)
        elif r in _UNREACH or r in (errno.EACCES, errno.EPERM):
            icmp = self._icmp_for(sock, probe.port)
            if icmp is not None:
                state, reason = error_reason(icmp, hs.v6)
                if icmp.offender == hs.host.address:
                    hs.heard = True  # the host's own firewall answered: it is there
                elif reason in (R.R_HOST_UNREACH, R.R_NET_UNREACH):
                    self._settle_down(hs, reason, icmp.offender,
                                      local=from_this_machine(icmp.offender))
            elif r in (errno.EACCES, errno.EPERM):
                state, reason = R.S_FILTERED, R.R_LOCAL_FIREWALL
            elif rtt < 0.0005 and r == errno.ENETUNREACH:
                state, reason = R.S_FILTERED, R.R_NO_ROUTE
            else:
                state, reason = R.S_FILTERED, _UNREACH.get(r, R.R_HOST_UNREACH)
                if reason == R.R_HOST_UNREACH:
                    self._settle_down(hs, reason, None, local=True)
            self._discard(sock)
            if reason in (R.R_NO_ROUTE, R.R_LOCAL_FIREWALL):
                self.out.append(answer(hs.index, probe.port, state, reason, None, probe.tries))
                return
        elif r == errno.ETIMEDOUT:
            # the kernel gave up before we did (only with very long timeouts): silence
            self._discard(sock)
            if probe.tries < hs.timing.allowed_tries:
                hs.retry.append(probe)
                self._requeued = True
            else:
                self.out.append(answer(hs.index, probe.port, R.S_FILTERED, R.R_NO_RESPONSE, None,
                                       probe.tries))
            return
        else:
            self._discard(sock)
            self.out.append(answer(hs.index, probe.port, R.S_FILTERED, R.R_ERROR, None, probe.tries))
            if len(self.notes) < 5:
                self.notes.append(f"{hs.host.address} port {probe.port}: {errno.errorcode.get(r, r)}")
            return
        if reason in (R.R_SYN_ACK, R.R_REFUSED):
            hs.heard = True
        self.out.append(answer(hs.index, probe.port, state, reason, probe.timed_answer(now),
                               probe.tries))

    def _finish_icmp(self, probe: _Probe, sock: socket.socket, icmp: IcmpError, now: float) -> None:
        """An ICMP error answered a connect that is still pending: record it, drop the socket
        (it is mid-handshake and cannot be reused)."""
        hs = probe.hs
        self._discard(sock)
        state, reason = error_reason(icmp, hs.v6)
        offender = icmp.offender
        if offender == hs.host.address:
            hs.heard = True
        elif reason in (R.R_HOST_UNREACH, R.R_NET_UNREACH):
            self._settle_down(hs, reason, offender, local=from_this_machine(offender))
        self.out.append(answer(hs.index, probe.port, state, reason, probe.timed_answer(now),
                               probe.tries))

    @staticmethod
    def _is_self_connect(sock: socket.socket) -> bool:
        try:
            return sock.getsockname()[:2] == sock.getpeername()[:2]
        except OSError:
            return False

    def _discard(self, sock: socket.socket) -> None:
        self.poller.forget(sock.fileno())
        sock.close()

    def _flush(self) -> None:
        bulk = {k: v for k, v in self.bulk.items() if v}
        if self.out or bulk:
            batch, self.out = self.out, []
            self.bulk = {}
            self.emit(batch, bulk)

    def _close(self) -> None:
        if self.discovery is not None:
            self.discovery.close()
            self.discovery = None
        if self.neighbours is not None:
            self.neighbours.close()
            self.neighbours = None
        for probe in list(self.by_fd.values()):
            self._discard(probe.sock)
        self.by_fd.clear()
        for hs in self.hosts:
            if hs.sweep_sock is not None:
                self._discard(hs.sweep_sock)
                hs.sweep_sock = None
        for pool in self.pool.values():
            for sock in pool:
                self._discard(sock)
            pool.clear()
        self.poller.close()
