"""Adaptive timing: how long to wait for a silent port, how often to ask again, how much to
send at once. Each host gets its own estimator; decisions are explained in docs/scan.md.

The round-trip estimator is the classic one of TCP (RFC 6298), also what nmap uses:
    srtt   <- srtt + (sample - srtt) / 8
    rttvar <- rttvar + (|sample - srtt| - rttvar) / 4
    timeout = clamp(srtt + 4 * rttvar, min_timeout, max_timeout)
Every probe of a connect scan is a fresh connection, so every answer is an unambiguous sample
(no Karn's rule needed).

Retries follow nmap's evidence rule: a silent port is asked `tries` times at first; when a
port answers only on a later try, that is evidence of packet loss on the path, so the host's
allowance grows to one more than the latest successful try (up to max_retries + 1) and its
window of outstanding probes is halved (multiplicative decrease). Ports that never answer
(DROP rules) are no evidence of loss, so a firewalled host does not slow the scan down.
"""

from __future__ import annotations


class TimingOptions:
    """Knobs shared by every host of a scan (CLI options map onto these)."""

    __slots__ = ("initial_timeout", "min_timeout", "max_timeout", "base_tries", "max_retries",
                 "max_concurrency", "initial_window", "rate")

    def __init__(self, *, initial_timeout: float = 1.0, min_timeout: float = 0.1,
                 max_timeout: float = 1.5, base_tries: int = 3, max_retries: int = 6,
                 max_concurrency: int = 1024, initial_window: int = 256,
                 rate: float | None = None) -> None:
        self.initial_timeout = initial_timeout  # before the first answer from a host
        self.min_timeout = min_timeout          # floor: scheduler jitter on a busy machine
        self.max_timeout = max_timeout          # ceiling: slow links still finish
        self.base_tries = base_tries            # probes per silent port before evidence of loss
        self.max_retries = max_retries          # ceiling on retries once loss is seen
        self.max_concurrency = max_concurrency  # probes outstanding at once, all hosts
        self.initial_window = initial_window    # per-host window before it grows
        self.rate = rate                        # probes per second, all hosts (None: adaptive)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


class HostTiming:
    """Round-trip estimate, retry allowance and send window of one host."""

    __slots__ = ("opts", "srtt", "rttvar", "timeout", "samples", "allowed_tries",
                 "max_success_try", "window", "inflight", "last_cut", "drops")

    def __init__(self, opts: TimingOptions, seed_from: "HostTiming | None" = None) -> None:
        self.opts = opts
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.timeout = opts.initial_timeout
        if seed_from is not None and seed_from.srtt is not None:
            # another host of the same scan answered already: a better first guess than 1 s
            self.timeout = min(opts.initial_timeout, max(seed_from.timeout, opts.min_timeout) * 2)
        self.samples = 0
        self.allowed_tries = max(1, opts.base_tries)
        self.max_success_try = 1
        self.window = max(1, min(opts.initial_window, opts.max_concurrency))
        self.inflight = 0
        self.last_cut = 0.0
        self.drops = 0

    def sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            delta = rtt - self.srtt
            self.srtt += delta / 8
            self.rttvar += (abs(delta) - self.rttvar) / 4
        self.samples += 1
        o = self.opts
        # rttvar has a floor of 5 ms so that a run of identical samples on a quiet LAN
        # does not shrink the timeout to the bare RTT
        self.timeout = min(o.max_timeout, max(o.min_timeout, self.srtt + 4 * max(self.rttvar, 0.005)))

    def answered(self, tries: int, now: float) -> None:
        """A probe on its `tries`-th try got an answer (any answer)."""
        if tries > self.max_success_try:
            self.max_success_try = tries
            self.allowed_tries = min(self.opts.max_retries + 1,
                                     max(self.allowed_tries, tries + 1))
        if tries > 1:
            self.drops += 1
            # at most one cut per timeout interval, so a burst of losses counts once
            if now - self.last_cut > self.timeout:
                self.window = max(8, self.window // 2)
                self.last_cut = now
        elif self.window < self.opts.max_concurrency:
            self.window += 1

    def bulk_answered(self, count: int) -> None:
        """`count` first-try answers at once (the fast path)."""
        if count and self.window < self.opts.max_concurrency:
            self.window = min(self.opts.max_concurrency, self.window + count)

    def gave_up(self) -> None:
        """A port stayed silent through all its tries: no evidence either way; let the
        window grow a little so that firewalled hosts still get scanned briskly."""
        if self.window < self.opts.max_concurrency:
            self.window += 1

    def to_dict(self) -> dict:
        ms = (lambda v: None if v is None else round(v * 1000, 3))
        return {"srtt_ms": ms(self.srtt), "rttvar_ms": ms(self.rttvar),
                "timeout_ms": ms(self.timeout), "samples": self.samples,
                "tries_allowed": self.allowed_tries, "loss_evidence": self.drops}


class RateLimiter:
    """Token bucket: at most `rate` sends per second, bursts of up to 1/50 s worth."""

    __slots__ = ("rate", "tokens", "burst", "last")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate / 50)
        self.tokens = self.burst
        self.last = now

    def take(self, now: float) -> bool:
        if self.tokens < 1:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1:
                return False
        self.tokens -= 1
        return True

    def wait_time(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)
