"""The Time protocol (RFC 868): the server sends the time as one 32-bit number, seconds since
1900-01-01 UTC, and nothing else (TCP: then it closes; UDP: in answer to any datagram, an
empty one per the RFC).

Four bytes prove little by themselves, so the verdict needs all of: exactly four bytes and
the end of the answer (TCP: the close or silence; UDP: one datagram), and a value within
MAX_SKEW of our own clock (random bytes fall there about once in 50,000 tries). A server
whose clock is far off is left unnamed: a miss, not a wrong name.
"""

from __future__ import annotations

import struct
import time as _time

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register

EPOCH_1900 = 2208988800   # seconds from 1900-01-01 to 1970-01-01
MAX_SKEW = 86400          # a day either way
_WRAP = 1 << 32


def plausible(data: bytes, now: float | None = None) -> int | None:
    """The clock offset in seconds (server - us) when `data` is an RFC 868 time near ours."""
    if len(data) != 4:
        return None
    value = struct.unpack(">I", data)[0]
    ours = int((now if now is not None else _time.time()) + EPOCH_1900) % _WRAP
    offset = (value - ours + _WRAP // 2) % _WRAP - _WRAP // 2  # modulo 2**32 (2036 wrap)
    return offset if abs(offset) <= MAX_SKEW else None


def verdict(data: bytes, transport: str) -> Step:
    offset = plausible(data)
    if offset is None:
        return NoMatch("not an RFC 868 time near ours")
    return Verdict("time", None, None, {"clock_offset_s": offset, "transport": transport,
                                        "format": "32 bits"}, 0.9, escape_evidence(data))


@register
class TimeTcpProbe(Probe):
    name = "time"
    transport = "tcp"
    ports = frozenset({37})
    services = frozenset({"time"})
    server_first = True
    rarity = 60
    read_budget = 64

    def feed(self, data: bytes) -> Step:
        return Wait() if len(data) <= 4 else NoMatch("more than four bytes")

    def finish(self, data: bytes) -> Step:
        return verdict(data, "tcp") if data else NoMatch("no answer")


@register
class TimeUdpProbe(Probe):
    name = "time"
    transport = "udp"
    ports = frozenset({37})
    services = frozenset({"time"})
    rarity = 60
    read_budget = 64

    def start(self) -> Step:
        return Send(b"")

    def feed(self, data: bytes) -> Step:
        return verdict(data, "udp")

    def finish(self, data: bytes) -> Step:
        return NoMatch("no answer")
