"""What a scan found: PortResult per probed port, HostReport per address, ScanReport overall.

The engines work with small integers (state and reason codes) for speed; this module maps them
to the names of portatlas.vocab (PortState, Reason: nmap's vocabulary where one exists).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from portatlas.vocab import ANSWERING_REASONS, REASON_WORDS, PortState, Reason

# states (portatlas.vocab.PortState) ---------------------------------------------------------
OPEN = PortState.OPEN
CLOSED = PortState.CLOSED
FILTERED = PortState.FILTERED
OPEN_FILTERED = PortState.OPEN_FILTERED
UNSCANNED = PortState.UNSCANNED

# the engines' integer codes index these tuples
STATES = (OPEN, CLOSED, FILTERED, OPEN_FILTERED, UNSCANNED)
S_OPEN, S_CLOSED, S_FILTERED, S_OPEN_FILTERED, S_UNSCANNED = range(5)

# reasons (portatlas.vocab.Reason): the engines' integer codes index this tuple; the words for
# people are reason_words(name)
REASONS: tuple[Reason, ...] = tuple(Reason)
(R_SYN_ACK, R_REFUSED, R_NO_RESPONSE, R_PORT_UNREACH, R_HOST_UNREACH, R_NET_UNREACH,
 R_ADMIN_PROHIBITED, R_UDP_RESPONSE, R_PROTO_UNREACH, R_NO_ROUTE, R_LOCAL_FIREWALL,
 R_SELF_CONNECT, R_UNSCANNED, R_TIME_EXCEEDED, R_ERROR, R_RESET) = range(len(REASONS))


def reason_words(reason: str) -> str:
    return REASON_WORDS.get(reason, reason)


class PortResult:
    """The answer for one port of one host.

    `service` is filled by identification (portatlas.identify) when it ran: the dict of a
    Verdict (outcome, protocol, product, version, confidence, extra, tls, evidence).
    """

    __slots__ = ("port", "transport", "state", "reason", "rtt", "tries", "registered",
                 "service", "wildcard")

    def __init__(self, port: int, transport: str, state: str, reason: str,
                 rtt: float | None = None, tries: int = 1) -> None:
        self.port = port
        self.transport = transport
        self.state = state
        self.reason = reason
        self.rtt = rtt          # seconds from sending the probe that was answered to the answer
        self.tries = tries      # probes sent for this port
        self.registered: list[dict[str, Any]] | None = None  # registry entries (service, description)
        self.service: dict[str, Any] | None = None            # identification verdict, if any
        self.wildcard = False   # part of an accept-everything host's catch-all

    @property
    def registered_names(self) -> list[str]:
        return [r["service"] for r in self.registered or () if r.get("service")]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "port": self.port,
            "transport": self.transport,
            "state": self.state,
            "reason": self.reason,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
            "tries": self.tries,
            "registered": self.registered,
            "service": self.service,
        }
        if self.wildcard:
            out["wildcard"] = True
        return out

    def __repr__(self) -> str:
        return f"PortResult({self.port}/{self.transport} {self.state} {self.reason})"


class PortGroup(NamedTuple):
    """The key of HostReport.bulk: ports of one transport that share a state and a reason."""

    transport: str
    state: str
    reason: str


class HostReport:
    """Everything found on one address.

    Ports with a detailed answer (open ports, anything with an RTT or retries) are PortResult
    objects in `ports`; the bulk of a sweep (thousands of ports refused at the first try) is
    kept compactly in `bulk` as {PortGroup(transport, state, reason): [port, ...]}. Use the methods
    below rather than either dict to see every port.
    """

    def __init__(self, host) -> None:
        self.host = host                     # portatlas.scan.targets.Host
        self.ports: dict[tuple[int, str], PortResult] = {}
        self.bulk: dict[PortGroup, list[int]] = {}
        self.timing: dict[str, dict[str, float | None]] = {}   # transport -> srtt/rttvar/timeout
        self.accept_all: dict[str, Any] | None = None          # see portatlas.scan.wildcard
        self.ndjson_prefix: str | None = None  # scan.output's template for this host's lines
        self.discovery = None   # portatlas.scan.discovery.HostStatus when discovery ran (or -Pn)

    def add(self, result: PortResult) -> None:
        self.ports[(result.port, result.transport)] = result

    def add_bulk(self, transport: str, state: str, reason: str, ports) -> None:
        self.bulk.setdefault(PortGroup(transport, state, reason), []).extend(ports)

    @property
    def status(self) -> str:
        """'up' when discovery found the host or anything on it answered (accepted,
        refused, replied or the host itself sent ICMP), 'down' when discovery (or a failed
        ARP/ND under -Pn) settled it so, else 'unknown': silence proves nothing either way."""
        if self.discovery is not None and self.discovery.state in ("up", "down") \
                and self.discovery.reason != "user-set":
            return self.discovery.state
        answering = ANSWERING_REASONS
        if any(reason in answering for (_, _, reason), ports in self.bulk.items() if ports):
            return "up"
        for r in self.ports.values():
            if r.reason in answering:
                return "up"
        return "unknown"

    def sorted_ports(self) -> list[PortResult]:
        """Every port as a PortResult (bulk ones made on the fly), by transport and port."""
        out = list(self.ports.values())
        for (transport, state, reason), ports in self.bulk.items():
            out.extend(PortResult(p, transport, state, reason) for p in ports)
        out.sort(key=lambda r: (r.transport, r.port))
        return out

    def expand_bulk(self) -> None:
        """Turn the compact closed/unscanned ranges into PortResults (for a few ports only)."""
        for result in self.sorted_ports():
            self.ports[(result.port, result.transport)] = result
        self.bulk.clear()

    def detailed_ports(self) -> list[PortResult]:
        return sorted(self.ports.values(), key=lambda r: (r.transport, r.port))

    def scanned(self, transport: str) -> set[int]:
        found = {p for (p, t) in self.ports if t == transport}
        for (t, _, _), ports in self.bulk.items():
            if t == transport:
                found.update(ports)
        return found

    def counts(self, transport: str | None = None) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for r in self.ports.values():
            if transport is None or r.transport == transport:
                out[r.state] += 1
        for (t, state, _), ports in self.bulk.items():
            if transport is None or t == transport:
                out[state] += len(ports)
        return out

    def open_ports(self) -> list[PortResult]:
        return [r for r in self.detailed_ports() if r.state == OPEN]

    def state_map(self) -> dict[tuple[int, str], tuple[str, str]]:
        """{(port, transport): (state, reason)} for every port (tests, comparisons)."""
        out = {k: (r.state, r.reason) for k, r in self.ports.items()}
        for (transport, state, reason), ports in self.bulk.items():
            for p in ports:
                out[(p, transport)] = (state, reason)
        return out


class ScanReport:
    """The whole scan: one HostReport per address, in the order the targets were given."""

    def __init__(self, hosts: list[HostReport], *, command: str, argv: list[str],
                 options: dict[str, Any]) -> None:
        self.hosts = hosts
        self.command = command
        self.argv = argv
        self.options = options
        self.started = time.time()
        self.finished: float | None = None
        self.interrupted = False
        self.notes: list[str] = []

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def all_results(self):
        for host in self.hosts:
            for result in host.sorted_ports():
                yield host, result
