"""The interface every protocol module implements (sans-I/O: bytes in, decisions out).

A protocol module is a subclass of `Probe` registered with `@register`. It never touches a
socket: the driver (portatlas.identify.driver) opens the connection, gives the probe the bytes
that arrived, and does what the probe's `Step` says. That keeps every module testable with
captured bytes and fuzzable with random ones.

The conversation, for one connection:
    probe = ProbeClass(ctx)
    step = probe.start()            # Send(b"...") or Wait() (server speaks first)
    loop: data arrives -> step = probe.feed(all_bytes_so_far)
          Send(x)       -> driver sends x, keeps reading
          Wait()        -> driver keeps reading (until the probe's read budget or timeout)
          StartTLS()    -> driver wraps the socket in TLS, then calls probe.tls_ready(info)
          Verdict(...)  -> done: this is (or is not) the protocol
          NoMatch()     -> done: not this protocol
    on timeout/close:  step = probe.finish(all_bytes_so_far)  # last chance to decide
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

# outcomes of a port (Verdict.outcome)
IDENTIFIED = "identified"
UNIDENTIFIED = "open-unidentified"
CLOSED = "closed"
FILTERED = "filtered"
ERROR = "error"


@dataclass
class Verdict:
    """What answers on a port. `protocol` is a lower-case name such as 'ssh', 'http', 'mtp'."""

    protocol: str | None
    product: str | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.9  # 0..1: 1.0 = protocol-defined handshake fully parsed
    evidence: str = ""       # short, safely escaped excerpt of what was received
    outcome: str = IDENTIFIED
    tls: dict[str, Any] | None = None  # certificate/version/cipher when TLS was spoken

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "protocol": self.protocol, "product": self.product,
                "version": self.version, "confidence": round(self.confidence, 2),
                "extra": self.extra, "tls": self.tls, "evidence": self.evidence}


@dataclass
class Send:
    data: bytes


@dataclass
class Wait:
    pass


@dataclass
class NoMatch:
    reason: str = ""


@dataclass
class StartTLS:
    """Upgrade the connection to TLS now (after a STARTTLS exchange, or for implicit TLS)."""

    server_name: str | None = None
    alpn: tuple[str, ...] = ()


Step = Send | Wait | NoMatch | StartTLS | Verdict


@dataclass
class ProbeContext:
    host: str
    port: int
    transport: str = "tcp"
    server_name: str | None = None  # for SNI and Host headers
    in_tls: bool = False            # the connection is already TLS-wrapped
    registered: tuple[str, ...] = ()  # service names the registry gives this port


class Probe:
    """Base class of a protocol module. Subclasses set the class attributes and override
    start/feed/finish."""

    name: ClassVar[str] = ""
    transport: ClassVar[str] = "tcp"
    # ports where this protocol is commonly found (the driver tries those probes first)
    ports: ClassVar[frozenset[int]] = frozenset()
    # registry service names that hint at this protocol (e.g. {'imap', 'imaps'})
    services: ClassVar[frozenset[str]] = frozenset()
    # True when the server speaks first: the probe can decide from the banner alone
    server_first: ClassVar[bool] = False
    # order among probes when no hint applies (lower first); cheap/common ones low
    rarity: ClassVar[int] = 50
    # bytes the driver reads at most for this probe (hostile servers send endless streams)
    read_budget: ClassVar[int] = 16384

    def __init__(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    def start(self) -> Step:
        """First move: Send(payload) for client-first protocols, Wait() for banner protocols."""
        return Wait()

    def feed(self, data: bytes) -> Step:
        """All bytes received so far on this connection (since the last Send)."""
        return NoMatch()

    def finish(self, data: bytes) -> Step:
        """The server went quiet or closed; decide with what there is."""
        return NoMatch("no answer")

    def tls_ready(self, info: dict[str, Any]) -> Step:
        """Called after StartTLS succeeded; `info` is the TLS facts (version, cipher, cert)."""
        return NoMatch("probe does not continue after TLS")

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        """For server-first protocols: does an unsolicited banner look like ours?"""
        return False


REGISTRY: dict[str, type[Probe]] = {}


def register(cls: type[Probe]) -> type[Probe]:
    """Class decorator: make a protocol module known to the driver."""
    key = f"{cls.name}/{cls.transport}"
    if not cls.name or key in REGISTRY:
        raise ValueError(f"probe {key!r} has no name or is registered twice")
    REGISTRY[key] = cls
    return cls


def escape_evidence(data: bytes, limit: int = 160) -> str:
    """A printable, single-line excerpt: printable ASCII kept, everything else as \\xNN."""
    out = []
    for byte in data[:limit]:
        if byte == 0x0A:
            out.append("\\n")
        elif byte == 0x0D:
            out.append("\\r")
        elif 0x20 <= byte < 0x7F and byte != 0x5C:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    if len(data) > limit:
        out.append("…")
    return "".join(out)
