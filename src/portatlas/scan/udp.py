"""UDP scanning: a protocol payload per port, answers sorted by what came back.

   a datagram from the port            -> open           udp-response
   ICMP port unreachable               -> closed         port-unreach
   other ICMP unreachable / prohibited -> filtered       host-unreach, admin-prohibited, ...
   silence after every try             -> open|filtered  no-response

One unconnected socket per address family sends every probe. With IP_RECVERR the kernel
queues each ICMP error together with the destination of the datagram that caused it, so one
socket can tell which port was refused: no socket per port, no descriptor pressure.

Most hosts rate-limit ICMP errors (Linux: one per second per peer after a burst of six), so
on a host that refuses some ports, silence from another port is ambiguous: open|filtered, or
closed with its ICMP error suppressed. portatlas settles it with a canary: a port already
known closed. A verification round re-sends every silent port and then, last, the canary.
The host's limiter hands out its tokens in arrival order, so if the canary is answered,
every silent port before it had the chance to draw an error and did not; two such rounds
make a port open|filtered. If the canary is not answered the bucket was empty: the round
resolved what it could and the next waits a second for tokens to refill. Exact results cost
about a second per closed port beyond the burst on a default Linux host, the price nmap pays
too; hosts that never send ICMP, or refuse nothing, finish without verification.
"""

from __future__ import annotations

import errno
import heapq
import socket
import time
from collections import deque

from portatlas.scan import results as R
from portatlas.scan.engine import Answer, Emit, MatchingEngine, SentProbe, answer, icmp_reason
from portatlas.scan.sysres import Poller, enable_recverr, read_icmp_error
from portatlas.scan.timing import HostTiming, RateLimiter, TimingOptions
from portatlas.scan.udp_payloads import payload_for

CONFIRMATIONS = 2   # canary-answered rounds a silent port needs to be open|filtered
REFILL_WAIT = 1.0   # pause after a round whose canary went unanswered (tokens ran out)


def udp_icmp_reason(icmp_type: int, code: int, v6: bool) -> tuple[int, int]:
    """(state, reason) codes for a UDP probe answered by ICMP: port unreachable is closed,
    the rest as for TCP (engine.icmp_reason)."""
    if not v6 and icmp_type == 3 and code == 3:
        return R.S_CLOSED, R.R_PORT_UNREACH
    if v6 and icmp_type == 1 and code == 4:
        return R.S_CLOSED, R.R_PORT_UNREACH
    return icmp_reason(icmp_type, code, v6)


class _Probe(SentProbe):
    __slots__ = ("canary",)

    def __init__(self, hs: "_UdpHost", port: int) -> None:
        super().__init__(hs, port)
        self.canary = False   # a probe of a known-closed port that measures the ICMP limiter


class _UdpHost:
    __slots__ = ("index", "host", "timing", "queue", "outstanding", "silent", "next_send",
                 "rounds", "max_rounds", "verifying", "key", "canary_port",
                 "canary_answered", "confirmed")

    def __init__(self, index: int, host, ports: list[int], timing: HostTiming) -> None:
        self.index = index
        self.host = host
        self.timing = timing
        self.queue: deque[_Probe] = deque(_Probe(self, p) for p in ports)
        self.outstanding = 0
        self.silent: list[_Probe] = []   # out of tries, waiting for verification
        self.next_send = 0.0             # a verification round may wait for tokens to refill
        self.rounds = 0
        self.max_rounds = 0
        self.verifying = False
        self.key = host.address
        self.canary_port: int | None = None   # a port that answered ICMP port unreachable
        self.canary_answered = False
        self.confirmed: dict[int, int] = {}   # port -> canary-answered rounds it stayed silent

    def idle(self) -> bool:
        return not self.queue and self.outstanding == 0


class UdpEngine(MatchingEngine):
    def __init__(self, hosts: list, ports_per_host: list[list[int]], opts: TimingOptions,
                 emit: Emit, *, flush_interval: float = 0.05) -> None:
        self.opts = opts
        self.emit = emit
        self.flush_interval = flush_interval
        self.hosts = [_UdpHost(i, h, ports, HostTiming(opts))
                      for i, (h, ports) in enumerate(zip(hosts, ports_per_host))]
        # the window is the connect scan's (256 to start); a host that rate-limits its ICMP
        # errors is handled by the verification rounds, not by a smaller window
        self.by_key: dict[tuple[str, int], _Probe] = {}
        self.heap: list = []
        self.seq = 0
        self.inflight = 0
        self.limit = max(1, opts.max_concurrency)
        self.rate = RateLimiter(opts.rate, time.monotonic()) if opts.rate else None
        self.poller = Poller()
        self.socks: dict[int, socket.socket] = {}
        self.out: list[Answer] = []
        self.interrupted = False
        self.notes: list[str] = []
        for fam in {h.family for h in hosts}:
            sock = socket.socket(fam, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            except OSError:
                pass
            enable_recverr(sock, fam)
            self.socks[fam] = sock
            self.poller.persistent(sock.fileno())
        self.by_fd = {s.fileno(): s for s in self.socks.values()}

    def _close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.poller.close()

    # loop ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        monotonic = time.monotonic
        last_flush = monotonic()
        while True:
            now = monotonic()
            next_send = self._launch(now)
            if all(hs.idle() and not hs.silent for hs in self.hosts):
                break
            wait = 0.25 if next_send is None else max(0.0, next_send - monotonic())
            if self.heap:
                wait = min(wait, max(0.0, self.heap[0][0] - monotonic()))
            ready = self.poller.poll(wait)
            now = monotonic()
            for fd in ready:
                self._receive(self.by_fd[fd], now)
            self._expire(now)
            self._advance_rounds(now)
            if now - last_flush >= self.flush_interval:
                self._flush()
                last_flush = now

    def _launch(self, now: float) -> float | None:
        """Send what may be sent now; returns when the next paced send is due."""
        soonest = None
        for hs in self.hosts:
            t = hs.timing
            while hs.queue and self.inflight < self.limit and hs.outstanding < t.window:
                if hs.next_send > now:
                    soonest = hs.next_send if soonest is None else min(soonest, hs.next_send)
                    break
                if self.rate is not None and not self.rate.take(now):
                    wait = now + self.rate.wait_time()
                    return wait if soonest is None else min(soonest, wait)
                probe = hs.queue.popleft()
                if probe.done:  # a late answer settled it while it waited for a retry
                    continue
                if not self._send(probe, now):
                    hs.queue.appendleft(probe)
                    return now + 0.01
        return soonest

    def _send(self, probe: _Probe, now: float) -> bool:
        hs = probe.hs
        sock = self.socks[hs.host.family]
        payload = payload_for(probe.port)
        addr = hs.host.sockaddr(probe.port)
        for attempt in range(2):
            try:
                sock.sendto(payload, addr)
                break
            except BlockingIOError:
                return False  # send buffer full: try again shortly
            except OSError as exc:
                # An ICMP error from an earlier probe surfaces once on the next call (sk_err);
                # the error queue has its details. The same error twice is a local one.
                self._drain_errors(sock, now)
                if attempt == 0:
                    continue
                if exc.errno in (errno.EPERM, errno.EACCES):
                    self._final(probe, R.S_FILTERED, R.R_LOCAL_FIREWALL, None)
                elif exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
                    self._final(probe, R.S_FILTERED, R.R_NO_ROUTE, None)
                else:
                    self._final(probe, R.S_FILTERED, R.R_ERROR, None)
                    if len(self.notes) < 5:
                        self.notes.append(f"{hs.host.address} port {probe.port}: {exc.strerror}")
                return True
        probe.tries += 1
        probe.sent = now
        probe.gen += 1
        probe.waiting = True
        self.by_key[(hs.key, probe.port)] = probe
        hs.outstanding += 1
        self.inflight += 1
        self.seq += 1
        heapq.heappush(self.heap, (now + hs.timing.timeout, self.seq, probe, probe.gen))
        return True

    def _receive(self, sock: socket.socket, now: float) -> None:
        for _ in range(4096):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                continue  # a pending ICMP error surfaced; the queue below has the details
            probe = self.by_key.get((addr[0], addr[1]))
            if probe is not None and not probe.done:
                self._answered(probe, R.S_OPEN, R.R_UDP_RESPONSE, now)
        self._drain_errors(sock, now)

    def _drain_errors(self, sock: socket.socket, now: float) -> None:
        for _ in range(4096):
            err = read_icmp_error(sock)
            if err is None:
                break
            if err.dest is None:
                continue
            probe = self.by_key.get((err.dest[0], err.dest_port))
            if probe is None or probe.done:
                continue
            state, reason = udp_icmp_reason(err.icmp_type, err.code,
                                            probe.hs.host.family == socket.AF_INET6)
            self._answered(probe, state, reason, now)

    def _answered(self, probe: _Probe, state: int, reason: int, now: float) -> None:
        hs = probe.hs
        self._end_wait(probe)
        if probe.canary:
            probe.done = True
            self.by_key.pop((hs.key, probe.port), None)
            hs.canary_answered = True
            return
        rtt = probe.timed_answer(now)
        if reason == R.R_PORT_UNREACH:
            hs.canary_port = probe.port
        self._final(probe, state, reason, rtt)

    def _final(self, probe: _Probe, state: int, reason: int, rtt: float | None) -> None:
        probe.done = True
        self.by_key.pop((probe.hs.key, probe.port), None)
        if probe.canary:  # its port has its answer already
            return
        self.out.append(answer(probe.hs.index, probe.port, state, reason, rtt, probe.tries))

    def _expire(self, now: float) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, probe, gen = heapq.heappop(heap)
            if probe.done or gen != probe.gen:
                continue
            hs = probe.hs
            self._end_wait(probe)
            if probe.canary:
                probe.done = True
                self.by_key.pop((hs.key, probe.port), None)
            elif hs.verifying or probe.tries >= hs.timing.allowed_tries:
                hs.silent.append(probe)  # verification rounds give one try each
            else:
                hs.queue.append(probe)

    def _advance_rounds(self, now: float) -> None:
        """Between rounds of a host: decide what its silent ports are, or start a round."""
        for hs in self.hosts:
            if hs.silent:
                hs.silent = [p for p in hs.silent if not p.done]
            if not hs.idle() or not hs.silent:
                continue
            if hs.verifying and hs.canary_answered:
                for probe in hs.silent:
                    hs.confirmed[probe.port] = hs.confirmed.get(probe.port, 0) + 1
            settled = [p for p in hs.silent if hs.confirmed.get(p.port, 0) >= CONFIRMATIONS]
            if hs.canary_port is None:
                settled = hs.silent  # the host sends no ICMP at all: silence is all there is
            elif not hs.verifying:
                # the port set decides how many rounds are worth it: every closed port may
                # need its own token, every silent one two confirmations
                hs.max_rounds = 4 + 2 * len(hs.silent)
            elif hs.rounds >= hs.max_rounds:
                settled = hs.silent
                if len(self.notes) < 5:
                    self.notes.append(f"{hs.host.address}: UDP verification stopped after "
                                      f"{hs.rounds} rounds; silent ports are open|filtered")
            for probe in sorted(settled, key=lambda p: p.port):
                self._final(probe, R.S_OPEN_FILTERED, R.R_NO_RESPONSE, None)
                hs.timing.gave_up()
            hs.silent = [p for p in hs.silent if not p.done]
            if not hs.silent:
                continue
            # another round: every silent port once more, then the canary
            pause = 0.0 if (not hs.verifying or hs.canary_answered) else REFILL_WAIT
            hs.verifying = True
            hs.rounds += 1
            hs.canary_answered = False
            canary = _Probe(hs, hs.canary_port)
            canary.canary = True
            hs.queue.extend(sorted(hs.silent, key=lambda p: p.port))
            hs.queue.append(canary)
            hs.silent = []
            hs.next_send = now + pause

    def _flush(self) -> None:
        if self.out:
            batch, self.out = self.out, []
            self.emit(batch, {})
