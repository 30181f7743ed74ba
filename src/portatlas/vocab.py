"""The shared vocabularies: port states, reasons, identification outcomes and server
behaviours, each named once (core: scan, identify and the renderers all use them).

StrEnum members are strings: they compare equal to their values, format as their values and
are written by json as their values, so the JSON schemas are unchanged by using them. enum is
imported by `re` anyway, so this costs nothing on the start-up path.
"""

from __future__ import annotations

from enum import StrEnum


class PortState(StrEnum):
    """The state of one port of one host (nmap's words)."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    OPEN_FILTERED = "open|filtered"
    UNSCANNED = "unscanned"  # not probed yet when the scan was interrupted


class Reason(StrEnum):
    """Why a port got its state. Named as nmap names them where nmap has a word, so the XML
    output reads the same to tools that ingest nmap's. Listed in the order of the engines'
    integer codes (Reason.code, Reason.from_code)."""

    SYN_ACK = "syn-ack"
    REFUSED = "conn-refused"
    NO_RESPONSE = "no-response"
    PORT_UNREACH = "port-unreach"
    HOST_UNREACH = "host-unreach"
    NET_UNREACH = "net-unreach"
    ADMIN_PROHIBITED = "admin-prohibited"
    UDP_RESPONSE = "udp-response"
    PROTO_UNREACH = "proto-unreach"
    NO_ROUTE = "no-route"
    LOCAL_FIREWALL = "local-firewall"
    SELF_CONNECT = "self-connect"
    UNSCANNED = "unscanned"
    TIME_EXCEEDED = "time-exceeded"
    ERROR = "error"
    RESET = "reset"  # SYN scan: nmap's word for a refused port

    @property
    def words(self) -> str:
        """The reason for people ("refused (TCP reset)")."""
        return REASON_WORDS[self]


REASON_WORDS: dict[str, str] = {
    Reason.SYN_ACK: "connection accepted",
    Reason.REFUSED: "refused (TCP reset)",
    Reason.NO_RESPONSE: "no answer",
    Reason.PORT_UNREACH: "ICMP port unreachable",
    Reason.HOST_UNREACH: "ICMP host unreachable",
    Reason.NET_UNREACH: "ICMP network unreachable",
    Reason.ADMIN_PROHIBITED: "ICMP administratively prohibited",
    Reason.UDP_RESPONSE: "reply received",
    Reason.PROTO_UNREACH: "ICMP protocol unreachable",
    Reason.NO_ROUTE: "no route to the host from here",
    Reason.LOCAL_FIREWALL: "blocked by this machine's firewall",
    Reason.SELF_CONNECT: "only reached itself (nothing listens)",
    Reason.UNSCANNED: "not probed (scan interrupted)",
    Reason.TIME_EXCEEDED: "ICMP time exceeded",
    Reason.ERROR: "local error",
    Reason.RESET: "refused (TCP reset)",
}

# the reasons that prove a host is up: something on it answered
ANSWERING_REASONS = (Reason.SYN_ACK, Reason.REFUSED, Reason.RESET, Reason.UDP_RESPONSE,
                     Reason.PORT_UNREACH, Reason.PROTO_UNREACH)


class Outcome(StrEnum):
    """What identification concluded about a port (Verdict.outcome)."""

    IDENTIFIED = "identified"
    UNIDENTIFIED = "open-unidentified"
    CLOSED = "closed"
    FILTERED = "filtered"
    ERROR = "error"
    INCOMPLETE = "incomplete"  # a deadline or Ctrl-C arrived before the port was decided


class Behaviour(StrEnum):
    """What a server does when nothing recognises it: identification's extra.behaviour, and
    (the first five) the accept-all detector's fingerprint of a port (scan.wildcard)."""

    SILENT = "silent"            # accepts and never sends a byte
    CLOSES = "closes"            # accepts and closes without a word ("tcpwrapped")
    RESET = "reset"              # accepts and resets
    BANNER = "banner"            # greets (the accept-all detector compares the greetings)
    UNREACHABLE = "unreachable"  # could not even connect again
    TLS_REFUSED = "tls-refused"  # speaks TLS, refused our handshake
    TLS_INSIDE_UNKNOWN = "tls-inside-unknown"  # speaks TLS; the service inside is not known
    STREAM = "stream"            # sends without end
    HUGE_BANNER = "huge-banner"  # sends a huge greeting, then stops
    TARPIT = "tarpit"            # trickles data
    TEXT = "text"                # text no probe recognised
    BINARY = "binary"            # binary data no probe recognised
    UNRECOGNISED_REPLY = "unrecognised-reply"  # UDP: a reply no probe recognised
