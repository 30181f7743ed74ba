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
                           (or probe.tls_failed(reason) when the handshake fails)
          IdentifyInside(v) -> (TLS probe only) identify what speaks inside the TLS layer;
                           v is the answer when nothing inside is recognised
          Verdict(...)  -> done: this is the protocol (confidence < TENTATIVE: the driver
                           keeps it but goes on looking for a surer answer)
          NoMatch()     -> done: not this protocol
    on timeout/close/read budget:  step = probe.finish(all_bytes_so_far)  # last chance

Rules the driver follows (docs/identify.md has the full story):
 - a server-first probe (server_first=True, start() -> Wait) is only run when bytes were seen:
   the driver first feeds the passive banner to every server-first probe in memory; those
   answering NoMatch are dropped without a connection. `claims_banner` only orders them.
 - client-first probes each get a fresh connection (the silent banner connection is reused
   by the first one); for UDP every datagram is fed on its own (not concatenated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from portatlas.vocab import Outcome

# outcomes of a port (Verdict.outcome; portatlas.vocab.Outcome)
IDENTIFIED = Outcome.IDENTIFIED
UNIDENTIFIED = Outcome.UNIDENTIFIED
CLOSED = Outcome.CLOSED
FILTERED = Outcome.FILTERED
ERROR = Outcome.ERROR
INCOMPLETE = Outcome.INCOMPLETE  # a deadline or Ctrl-C arrived before the port was decided

# verdicts below this confidence are tentative: the driver keeps looking for a surer one
TENTATIVE = 0.8

# protocol -> conventional service name when spoken over implicit TLS
TLS_NAMES = {"http": "https", "imap": "imaps", "pop3": "pop3s", "smtp": "smtps", "ftp": "ftps",
             "ldap": "ldaps", "irc": "ircs", "xmpp": "xmpps", "telnet": "telnets",
             "nntp": "nntps", "sip": "sips", "mqtt": "secure-mqtt", "amqp": "amqps",
             "rtsp": "rtsps", "redis": "rediss"}


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
    # filled in by the driver (probes leave these alone)
    host: str | None = None
    port: int | None = None
    transport: str = "tcp"
    reason: str = ""                   # why this outcome, in a few words
    registered: list[str] = field(default_factory=list)  # registry service names of the port
    elapsed: float = 0.0               # seconds spent on this port

    @property
    def service(self) -> str | None:
        """The conventional name: 'https' for HTTP over implicit TLS, else the protocol."""
        if self.protocol and self.tls and not self.tls.get("starttls"):
            return TLS_NAMES.get(self.protocol, self.protocol)
        return self.protocol

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "transport": self.transport,
                "outcome": self.outcome, "protocol": self.protocol, "service": self.service,
                "product": self.product, "version": self.version,
                "confidence": round(self.confidence, 2), "extra": self.extra, "tls": self.tls,
                "evidence": self.evidence, "reason": self.reason,
                "registered": list(self.registered), "elapsed": round(self.elapsed, 3)}


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


@dataclass
class IdentifyInside:
    """After an implicit-TLS handshake: identify the protocol spoken inside. `fallback` is the
    answer when nothing inside is recognised (protocol 'tls')."""

    fallback: Verdict


Step = Send | Wait | NoMatch | StartTLS | IdentifyInside | Verdict


@dataclass
class ProbeContext:
    host: str
    port: int
    transport: str = "tcp"
    server_name: str | None = None  # for SNI and Host headers
    in_tls: bool = False            # the connection is already TLS-wrapped
    registered: tuple[str, ...] = ()  # service names the registry gives this port
    tls: dict[str, Any] | None = None  # handshake facts when in_tls (version, alpn, cert...)


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

    def tls_failed(self, reason: str) -> Step:
        """Called when the handshake after StartTLS failed; by default decide without TLS."""
        return self.finish(b"")

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
