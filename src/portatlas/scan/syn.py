"""Raw-socket SYN scanning (`scan --syn`, root only, IPv4).

One SYN per probe, written by hand onto a raw socket; the answers are read from raw TCP and
ICMP sockets, which receive a copy of every such packet the host gets:

   SYN-ACK acknowledging our sequence number -> open      syn-ack
   RST acknowledging it                      -> closed    reset
   ICMP unreachable quoting our SYN          -> filtered  port-unreach, admin-prohibited, ...
   nothing after every try                   -> filtered  no-response

No connection is ever completed: this machine's kernel, which knows no socket for the
SYN-ACK, answers it with a reset. The source port is reserved by binding (without listening)
an ordinary TCP socket to it, so no other program here can be handed it meanwhile. The
sequence number is a keyed hash of the destination, so stray packets are not mistaken for
answers. Timing (timeouts, retries, windows) is the connect scan's (timing.py).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections import deque
from typing import Callable

from portatlas.errors import UsageError
from portatlas.scan import results as R
from portatlas.scan.engine import Answer, BulkKey, Emit, HostQueue, MatchingEngine, SentProbe, \
    answer, down_status, icmp_reason
from portatlas.scan.neighbours import NeighbourWatch
from portatlas.scan.routes import from_this_machine
from portatlas.scan.sysres import grow_rcvbuf, only_to_port
from portatlas.scan.timing import HostTiming, RateLimiter, TimingOptions

_TCP_MSS = b"\x02\x04\x05\xb4"          # MSS 1460: SYNs without options look odd to some stacks
_HEADER_LEN = 20 + len(_TCP_MSS)
_OFFSET = (_HEADER_LEN // 4) << 4
_TCP_HEADER = struct.Struct("!HHIIBBHHH")


def segment(base_sum: int, sport: int, dport: int, isn: int) -> bytes:
    """Our SYN: the TCP header with the MSS option and its checksum. `base_sum` is the sum
    of the pseudo-header and the fixed header words (SynEngine._base_sum); only the port and
    the sequence number vary, so the checksum costs three additions and two folds."""
    total = base_sum + dport + (isn >> 16) + (isn & 0xFFFF)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return _TCP_HEADER.pack(sport, dport, isn, 0, _OFFSET, 0x02, 1024, ~total & 0xFFFF, 0) + _TCP_MSS


class _Probe(SentProbe):
    __slots__ = ("isn",)

    def __init__(self, hs: "_SynHost", port: int) -> None:
        super().__init__(hs, port)
        self.isn = 0


class _SynHost(HostQueue):
    __slots__ = ("outstanding", "dst", "base_sum", "key", "isn_base")
    probe_type = _Probe

    def __init__(self, index: int, host, ports: list[int], timing: HostTiming) -> None:
        super().__init__(index, host, ports, timing)
        self.outstanding = 0
        self.dst = socket.inet_aton(host.address)
        self.base_sum = 0
        self.key = self.dst  # answers are matched on the raw 4-byte address
        self.isn_base = 0


class SynEngine(MatchingEngine):
    def __init__(self, hosts: list, ports_per_host: list[list[int]], opts: TimingOptions,
                 emit: Emit, *, flush_interval: float = 0.05,
                 on_host: Callable[[int, object], None] | None = None,
                 host_indices: list[int] | None = None) -> None:
        """`on_host`: a host whose first answer says it is not there (the kernel's failed
        ARP, a router's ICMP host/net unreachable) is settled down, its queued probes
        dropped, and on_host(index, HostStatus) told (scan -Pn)."""
        if os.geteuid() != 0:
            raise UsageError("--syn needs root (raw sockets)")
        self.opts = opts
        self.emit = emit
        self.flush_interval = flush_interval
        self.hosts = [_SynHost(host_indices[i] if host_indices else i, h, ports, HostTiming(opts))
                      for i, (h, ports) in enumerate(zip(hosts, ports_per_host))]
        self.on_host = on_host
        self.by_address = {hs.host.address: hs for hs in self.hosts}
        self.neighbours = None
        if on_host is not None:
            try:
                self.neighbours = NeighbourWatch()
            except OSError:
                self.neighbours = None
        self.secret = int.from_bytes(os.urandom(4), "big")
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        for s in (self.raw, self.icmp):
            s.setblocking(False)
            grow_rcvbuf(s, 16 << 20)
        # reserve a source port: a bound, never-listening socket keeps others off it and
        # leaves the kernel answering our SYN-ACKs with resets
        self.reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.reserve.bind(("0.0.0.0", 0))
        self.sport = self.reserve.getsockname()[1]
        only_to_port(self.raw, self.sport)
        for hs in self.hosts:
            src = self._source_for(hs.host.address)
            hs.base_sum = self._base_sum(src, hs.dst)
            hs.isn_base = self._isn(hs.key, 0)
        self.pending: dict[tuple[bytes, int], _Probe] = {}
        # (deadline, probe, generation) in sending order: deadlines grow with it (one timeout
        # per host, changing slowly), so the oldest entry is the next to expire
        self.deadlines: deque = deque()
        self.seq = 0
        self.inflight = 0
        self.limit = max(1, opts.max_concurrency)
        self.rate = RateLimiter(opts.rate, time.monotonic()) if opts.rate else None
        self.out: list[Answer] = []
        self.closed: dict[int, list[int]] = {}
        self.answers = 0
        self.interrupted = False
        self.notes: list[str] = []

    @staticmethod
    def _source_for(address: str) -> bytes:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect((address, 9))  # no packet: only picks the route and source
            return socket.inet_aton(probe.getsockname()[0])
        finally:
            probe.close()

    def _base_sum(self, src: bytes, dst: bytes) -> int:
        # pseudo-header and the fixed parts of our TCP header, as 16-bit words
        words = struct.unpack("!HHHH", src + dst) + (socket.IPPROTO_TCP, _HEADER_LEN)
        fixed = struct.pack("!HIIBBHHH", self.sport, 0, 0, (_HEADER_LEN // 4) << 4, 0x02,
                            1024, 0, 0) + _TCP_MSS
        # the zero placeholders for dport and seq add nothing
        return sum(words) + sum(struct.unpack(f"!{len(fixed) // 2}H", fixed))

    def _isn(self, key: bytes, port: int) -> int:
        """A per-destination base for our initial sequence numbers: a keyed mix of the
        address, so that an answer must acknowledge something only we sent (a check on top
        of the port match, not cryptography). Ports step it by a large odd constant."""
        x = (int.from_bytes(key, "big") * 0x9E3779B1 + port * 0x85EBCA6B) ^ self.secret
        x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
        return x ^ (x >> 12)

    # ------------------------------------------------------------------------------------
    def _close(self) -> None:
        for s in (self.raw, self.icmp, self.reserve):
            s.close()
        if self.neighbours is not None:
            self.neighbours.close()

    def _settle_down(self, hs: _SynHost, reason: int, by: str | None) -> None:
        if hs.down or hs.heard or self.on_host is None:
            return
        hs.down = True
        dropped = hs.drop_queued()
        for probe in [p for p in self.pending.values() if p.hs is hs]:
            self._end_wait(probe)
            probe.done = True
            del self.pending[(hs.key, probe.port)]
            dropped += 1
        self.on_host(hs.index, down_status(reason, by, "arp" if by is None else None, dropped))

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self.raw.fileno(), select.POLLIN)
        poller.register(self.icmp.fileno(), select.POLLIN)
        if self.neighbours is not None:
            poller.register(self.neighbours.fileno(), select.POLLIN)
        monotonic = time.monotonic
        last_flush = monotonic()
        while True:
            now = monotonic()
            blocked = self._launch(now)
            if not self.pending and not any(hs.has_work() for hs in self.hosts):
                break
            wait = 0.25
            if self.deadlines:
                wait = min(wait, max(0.0, self.deadlines[0][0] - monotonic()))
            if blocked is not None:
                wait = min(wait, blocked)
            if poller.poll(wait * 1000):
                now = monotonic()
                self._read_tcp(now)
                self._read_icmp(now)
                if self.neighbours is not None:
                    for address in self.neighbours.failed():
                        hs = self.by_address.get(address)
                        if hs is not None:
                            self._settle_down(hs, R.R_HOST_UNREACH, None)
            now = monotonic()
            self._expire(now)
            if now - last_flush >= self.flush_interval:
                self._flush()
                last_flush = now

    def _launch(self, now: float) -> float | None:
        """Send while windows allow; returns how long to wait when sending is blocked."""
        sendto = self.raw.sendto
        sport = self.sport
        pending = self.pending
        deadlines = self.deadlines
        sent_any = 0
        for hs in self.hosts:
            t = hs.timing
            queue = hs.retry
            dest = (hs.host.address, 0)
            key = hs.key
            base = hs.base_sum
            isn_base = hs.isn_base
            next_probe = hs.next_probe
            while self.inflight < self.limit and hs.outstanding < t.window:
                if self.rate is not None and not self.rate.take(now):
                    return self.rate.wait_time()
                probe = next_probe()
                if probe is None:
                    break
                if probe.done:
                    continue
                port = probe.port
                isn = probe.isn
                if not isn:
                    isn = probe.isn = ((isn_base + port * 0x9E3779B1) & 0xFFFFFFFF) or 1
                try:
                    sendto(segment(base, sport, port, isn), dest)
                except BlockingIOError:
                    queue.appendleft(probe)
                    return 0.002
                except OSError as exc:
                    if exc.errno in (errno.EPERM, errno.EACCES):
                        self._final(probe, R.S_FILTERED, R.R_LOCAL_FIREWALL, None)
                        continue
                    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                        self._final(probe, R.S_FILTERED, R.R_NO_ROUTE, None)
                        continue
                    if exc.errno == errno.ENOBUFS:
                        queue.appendleft(probe)
                        return 0.002
                    raise
                probe.tries += 1
                probe.sent = now
                probe.gen += 1
                probe.waiting = True
                pending[(key, port)] = probe
                hs.outstanding += 1
                self.inflight += 1
                deadlines.append((now + t.timeout, probe, probe.gen))
                sent_any += 1
                if sent_any >= 512:
                    return 0.0  # let answers be read before the receive buffer fills
        return None

    def _read_tcp(self, now: float) -> None:
        recv = self.raw.recv
        sport = self.sport
        unpack = struct.unpack_from
        pending = self.pending
        for _ in range(65536):
            try:
                pkt = recv(128)
            except OSError:  # BlockingIOError: all read
                return
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) < ihl + 14:
                continue
            src_port, dst_port, _seq, ack, _off, flags = unpack("!HHIIBB", pkt, ihl)
            if dst_port != sport:
                continue
            probe = pending.get((pkt[12:16], src_port))
            if probe is None or ((ack - 1) & 0xFFFFFFFF) != probe.isn:
                continue
            probe.hs.heard = True
            if flags & 0x12 == 0x12:
                self._answered(probe, R.S_OPEN, R.R_SYN_ACK, now)
            elif flags & 0x04:
                if probe.tries == 1 and probe.waiting:
                    # the bulk of a sweep: refused at the first try, kept compactly
                    hs = probe.hs
                    self._end_wait(probe)
                    probe.done = True
                    del pending[(hs.key, probe.port)]
                    self.closed.setdefault(hs.index, []).append(probe.port)
                    t = hs.timing
                    self.answers += 1
                    if t.samples < 64 or not self.answers & 15:  # every 16th is plenty
                        t.sample(now - probe.sent)
                    t.bulk_answered(1)
                else:
                    self._answered(probe, R.S_CLOSED, R.R_RESET, now)

    def _read_icmp(self, now: float) -> None:
        recv = self.icmp.recv
        for _ in range(65536):
            try:
                pkt = recv(256)
            except (BlockingIOError, OSError):
                return
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) < ihl + 8 + 20 + 8:
                continue
            icmp_type, code = pkt[ihl], pkt[ihl + 1]
            if icmp_type not in (3, 11):
                continue
            inner = ihl + 8
            inner_ihl = (pkt[inner] & 0x0F) * 4
            if pkt[inner + 9] != socket.IPPROTO_TCP:
                continue
            dst = pkt[inner + 16:inner + 20]
            sp, dp = struct.unpack_from("!HH", pkt, inner + inner_ihl)
            if sp != self.sport:
                continue
            probe = self.pending.get((dst, dp))
            if probe is None:
                continue
            state, reason = icmp_reason(icmp_type, code, False)
            sender = socket.inet_ntoa(pkt[12:16])
            if sender == probe.hs.host.address:
                probe.hs.heard = True
            elif reason in (R.R_HOST_UNREACH, R.R_NET_UNREACH):
                self._answered(probe, state, reason, now)
                # from this machine itself: our own ARP failed
                self._settle_down(probe.hs, reason, None if from_this_machine(sender) else sender)
                continue
            self._answered(probe, state, reason, now)

    def _answered(self, probe: _Probe, state: int, reason: int, now: float) -> None:
        self._end_wait(probe)
        self._final(probe, state, reason, probe.timed_answer(now))

    def _final(self, probe: _Probe, state: int, reason: int, rtt: float | None) -> None:
        probe.done = True
        self.pending.pop((probe.hs.key, probe.port), None)
        self.out.append(answer(probe.hs.index, probe.port, state, reason, rtt, probe.tries))

    def _expire(self, now: float) -> None:
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _, probe, gen = deadlines.popleft()
            if probe.done or gen != probe.gen:
                continue
            hs = probe.hs
            self._end_wait(probe)
            if probe.tries < hs.timing.allowed_tries:
                hs.retry.append(probe)
            else:
                hs.timing.gave_up()
                self._final(probe, R.S_FILTERED, R.R_NO_RESPONSE, None)

    def _flush(self) -> None:
        bulk = {BulkKey(i, R.S_CLOSED, R.R_RESET): ports for i, ports in self.closed.items() if ports}
        if self.out or bulk:
            batch, self.out = self.out, []
            self.closed = {}
            self.emit(batch, bulk)
