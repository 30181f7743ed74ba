"""What one port showed, kept for an answer when nothing recognised it (or only partly): bytes,
timing, resets, closes, samples. Shared by the TCP driver and the UDP run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from portatlas.vocab import Behaviour

MAX_SENDS = 12             # exchanges per conversation (a probe never needs more)
SAMPLE_LIMIT = 4096        # bytes kept per connection for evidence and nmap matching
MAX_SAMPLES = 12


@dataclass
class Observations:
    """Everything seen on one port, for an unidentified (or partial) answer."""

    bytes_total: int = 0
    chunks: int = 0
    t_first: float | None = None
    t_last: float | None = None
    connects: int = 0
    resets: int = 0
    closed_empty: int = 0      # connections closed by the server before any byte
    banner_closed: bool = False  # closed while we only listened (before we sent anything)
    silent: int = 0            # waits that ended with not one byte
    oversize: int = 0          # read budgets exceeded
    stream: tuple[str, int, float] | None = None  # (huge-banner|stream, bytes, seconds)
    tls_refused: str | None = None  # a TLS alert answered our handshake
    samples: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tried: dict[str, str] = field(default_factory=dict)

    def received(self, chunk: bytes) -> None:
        now = time.monotonic()
        self.bytes_total += len(chunk)
        self.chunks += 1
        self.t_first = self.t_first or now
        self.t_last = now

    def sample(self, label: str, data: bytes) -> None:
        if data and len(self.samples) < MAX_SAMPLES:
            self.samples.append((label, bytes(data[:SAMPLE_LIMIT])))

    def note(self, text: str) -> None:
        if text and text not in self.notes and len(self.notes) < 20:
            self.notes.append(text)

    @property
    def first_bytes(self) -> bytes:
        return self.samples[0][1] if self.samples else b""

    def behaviour(self) -> tuple[Behaviour, str]:
        """(kind, reason) describing a server nothing recognised."""
        if self.stream:
            kind, count, seconds = self.stream
            if kind == Behaviour.STREAM:
                return Behaviour.STREAM, (f"sends an endless stream: more than {count} bytes "
                                          f"in {seconds:.1f}s without pause")
            return Behaviour.HUGE_BANNER, f"sent a huge banner of {count} bytes, then stopped"
        if self.bytes_total == 0:
            if self.banner_closed or (self.closed_empty and self.closed_empty >= self.resets
                                      and self.closed_empty >= self.silent):
                # (data we then send to a closed socket earns a reset: the close came first)
                return Behaviour.CLOSES, "accepts connections and closes them without a word"
            if self.resets and self.resets >= self.silent:
                return Behaviour.RESET, "resets connections without sending anything"
            return Behaviour.SILENT, "accepts connections but never sent a byte to any probe"
        if self.tls_refused:
            return Behaviour.TLS_REFUSED, f"speaks TLS but refused our handshake ({self.tls_refused})"
        if self.resets >= max(1, self.connects // 2) and self.bytes_total < 1024:
            return Behaviour.RESET, (f"resets connections (after {self.bytes_total} bytes in all)")
        span = (self.t_last or 0) - (self.t_first or 0)
        if self.chunks >= 3 and span >= 1.0 and self.bytes_total / max(span, 0.001) < 32:
            return Behaviour.TARPIT, (f"trickles data: {self.bytes_total} bytes in {self.chunks} "
                              f"pieces over {span:.1f}s")
        data = b"".join(s for _, s in self.samples)
        printable = sum(1 for b in data if 0x20 <= b < 0x7F or b in (9, 10, 13))
        if data and printable / len(data) >= 0.85:
            return Behaviour.TEXT, "sends text no probe recognised"
        return Behaviour.BINARY, "sends binary data no probe recognised"
