"""Whether a host is up and how we know: the record host discovery and the engines hand
around (scan/discovery.py, scan/tcp.py, scan/syn.py), and its words for people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass
class HostStatus:
    """Whether a host is up and how we know.

    reason (nmap's words): up: arp-response, nd-response, echo-reply, timestamp-reply,
    syn-ack, reset, conn-refused, port-unreach/admin-prohibited/... (the host's own ICMP
    error), localhost-response, user-set (-Pn); down: no-response, host-unreach,
    net-unreach, admin-prohibited (a router's), no-route.
    method: how it was asked: arp, nd, icmp-echo, icmp-timestamp, tcp-syn-443, tcp-ack-80,
    tcp-connect-80, tcp-connect-443, local, none (-Pn), port-scan (a -Pn host settled by the
    answers to its port probes). For a host that is down, method names what went unanswered:
    arp, nd, icmp+tcp (raw probes of a routed host) or tcp-connect.
    """

    state: str
    reason: str
    method: str
    mac: str | None = None
    vendor: str | None = None
    rtt: float | None = None
    by: str | None = None       # who sent the deciding ICMP error, when one did
    dropped: int = 0            # port probes dropped because the host was settled down

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "method": self.method,
                "mac": self.mac, "vendor": self.vendor,
                "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
                "icmp_from": self.by}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HostStatus":
        rtt = d.get("rtt_ms")
        return cls(d["state"], d["reason"], d["method"], d.get("mac"), d.get("vendor"),
                   None if rtt is None else rtt / 1000, d.get("icmp_from"))

    def words(self) -> str:
        """How it answered, for people: 'ARP reply', 'no ARP reply', 'TCP reset from 443'."""
        return describe(self)


def describe(st: HostStatus) -> str:
    m, r = st.method, st.reason
    if st.state == DOWN:
        if r == "no-route":
            return "no route from here"
        if r == "no-response":
            return {"arp": "no ARP reply", "nd": "no neighbour advertisement",
                    "icmp+tcp": "no reply to ICMP echo/timestamp, TCP SYN 443, ACK 80",
                    "tcp-connect": "no answer on TCP 80 or 443"}.get(m, "no response")
        text = {"host-unreach": "ICMP host unreachable", "net-unreach": "ICMP network unreachable",
                "admin-prohibited": "ICMP administratively prohibited"}.get(r, r)
        return f"{text} from {st.by}" if st.by else text
    if r == "user-set":
        return "assumed up (-Pn)"
    if r == "localhost-response":
        return "this machine"
    text = {"arp-response": "ARP reply", "nd-response": "neighbour advertisement",
            "echo-reply": "ICMP echo reply", "timestamp-reply": "ICMP timestamp reply",
            "syn-ack": "SYN-ACK", "reset": "TCP reset", "conn-refused": "TCP reset",
            }.get(r, f"its own ICMP {r}")
    port = m.rsplit("-", 1)[-1] if m.startswith("tcp-") else ""
    if port.isdigit():
        text += f" from port {port}"
    return text


def assumed_up() -> HostStatus:
    return HostStatus(UP, "user-set", "none")
