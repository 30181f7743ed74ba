"""Hosts that accept a connection on every port.

SYN proxies, "tcpwrapped" front ends and firewalls that redirect every port to one service
complete the TCP handshake for any port, so a plain connect scan would report thousands of
open ports. Detection uses only the ports the user named (nothing else is probed):

1. Trigger: at least MIN_OPEN TCP ports open and at least MIN_SHARE of the scanned ports
   open. Real hosts rarely listen on most of a port range; catch-alls always do.
2. Behaviour: connect to a deterministic, evenly spread sample of the open ports and record
   what happens in the first moments: a banner (normalised: digits blanked, first line),
   the peer closing (FIN), a reset, or silence. A catch-all behaves the same on every port;
   real services differ.
3. Verdict: if at least AGREE of the sample behave identically, the host is accept-all.
   Then (up to FULL_CHECK_MAX open ports) every open port is fingerprinted, and ports that
   behave differently from the catch-all are kept as ordinary open ports (a real sshd on 22
   behind a redirect-everything rule stays visible). Above that only the sample is checked
   and the report says so.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any, NamedTuple

from portatlas.scan.engine import run_async
from portatlas.scan.ports import compact
from portatlas.scan.results import OPEN, UNSCANNED, HostReport
from portatlas.scan.sysres import LINGER_RESET
from portatlas.vocab import Behaviour

MIN_OPEN = 16
MIN_SHARE = 0.75
SAMPLE = 12
AGREE = 0.9
FULL_CHECK_MAX = 4096
CONCURRENCY = 128

DESCRIPTIONS = {
    Behaviour.RESET: "each connection is accepted, then reset: a SYN proxy or a front end with "
             "nothing behind the port",
    Behaviour.CLOSES: "each connection is accepted, then closed without a word (\"tcpwrapped\")",
    Behaviour.BANNER: "every port greets with the same banner: all ports lead to one service "
              "(a firewall redirecting every port)",
    Behaviour.SILENT: "every port accepts and stays silent: a SYN proxy, a tarpit, or every port "
              "forwarded to one silent service",
}
# the accept-all "kind" in the scan JSON (docs/scan.md) says "closed" where the shared
# vocabulary says "closes" (tcpwrapped); the schema keeps its word
KIND_NAMES = {Behaviour.CLOSES: "closed"}


class Fingerprint(NamedTuple):
    """What one port did right after accepting a connection."""

    behaviour: Behaviour
    banner: str | None = None   # BANNER: the first line, normalised (normalise_banner)


def detect_all(reports: list[HostReport]) -> None:
    for hr in reports:
        info = detect(hr)
        if info is not None:
            hr.accept_all = info


def candidate(hr: HostReport) -> bool:
    counts = hr.counts("tcp")
    scanned = sum(counts.values()) - counts[UNSCANNED]
    return counts[OPEN] >= MIN_OPEN and counts[OPEN] >= MIN_SHARE * scanned


def detect(hr: HostReport) -> dict[str, Any] | None:
    if not candidate(hr):
        return None
    counts = hr.counts("tcp")
    scanned = sum(counts.values()) - counts[UNSCANNED]
    opened = [r for r in hr.detailed_ports() if r.transport == "tcp" and r.state == OPEN]
    timing = hr.timing.get("tcp") or {}
    srtt = (timing.get("srtt_ms") or 1.0) / 1000
    wait = min(2.0, max(0.4, 4 * srtt + 0.3))  # time for a banner or a reset to arrive
    step = len(opened) / SAMPLE
    sample = [opened[int(i * step)] for i in range(min(SAMPLE, len(opened)))]
    prints = fingerprint_ports(hr.host, [r.port for r in sample], wait)
    counts = Counter(prints.values())
    if not counts:
        return None
    ((common, n),) = counts.most_common(1)
    if n < AGREE * len(sample) or common.behaviour == Behaviour.UNREACHABLE:
        return None  # ports behave differently: real services
    checked = "sample"
    distinct: list[int] = []
    if len(opened) <= FULL_CHECK_MAX:
        rest = [r.port for r in opened if r.port not in prints]
        prints.update(fingerprint_ports(hr.host, rest, wait))
        checked = "all"
        distinct = sorted(p for p, fp in prints.items() if fp != common)
    catch_all = [r.port for r in opened if r.port not in distinct]
    for r in opened:
        if r.port not in distinct:
            r.wildcard = True
    kind = common.behaviour
    return {
        "transport": "tcp",
        "kind": KIND_NAMES.get(kind, kind),
        "description": DESCRIPTIONS[kind],
        "banner": _EXAMPLES.get(common.banner, common.banner) if kind == Behaviour.BANNER else None,
        "open_ports": len(opened),
        "scanned_ports": scanned,
        "catch_all_ports": len(catch_all),
        "catch_all": compact(catch_all),
        "distinct_ports": distinct,
        "checked": checked,
        "sample_size": len(sample),
    }


def fingerprint_ports(host, ports: list[int], wait: float) -> dict[int, Fingerprint]:
    if not ports:
        return {}
    import asyncio  # tens of ms to import (engine.run_async); only for a host that looks accept-all

    async def main() -> dict[int, Fingerprint]:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(port: int) -> tuple[int, Fingerprint]:
            async with sem:
                return port, await fingerprint(host, port, wait)

        return dict(await asyncio.gather(*(one(p) for p in ports)))

    return run_async(main)


async def fingerprint(host, port: int, wait: float) -> Fingerprint:
    """What a port does in its first `wait` seconds after accepting a connection."""
    import asyncio  # loaded by fingerprint_ports, which runs this coroutine

    loop = asyncio.get_running_loop()
    sock = socket.socket(host.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, host.sockaddr(port)), max(1.0, 2 * wait))
        except (ConnectionResetError, ConnectionAbortedError):
            return Fingerprint(Behaviour.RESET)  # accepted, then reset before we could look: a SYN proxy
        except (OSError, asyncio.TimeoutError):
            return Fingerprint(Behaviour.UNREACHABLE)
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 512), wait)
        except asyncio.TimeoutError:
            return Fingerprint(Behaviour.SILENT)
        except ConnectionResetError:
            return Fingerprint(Behaviour.RESET)
        except OSError:
            return Fingerprint(Behaviour.RESET)
        if not data:
            return Fingerprint(Behaviour.CLOSES)
        _EXAMPLES.setdefault(normalise_banner(data), raw_banner(data))
        return Fingerprint(Behaviour.BANNER, normalise_banner(data))
    finally:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
        sock.close()


_EXAMPLES: dict[str, str] = {}  # normalised banner -> one banner as received


def raw_banner(data: bytes) -> str:
    # portatlas.identify's package takes ~100 ms to import: only once a banner was seen
    from portatlas.identify.base import escape_evidence

    return escape_evidence(data.split(b"\n", 1)[0][:120], 120)


def normalise_banner(data: bytes) -> str:
    """First line, digits blanked (dates, counters, PIDs vary per connection), escaped."""
    from portatlas.identify.base import escape_evidence  # ~100 ms: see raw_banner

    line = data.split(b"\n", 1)[0][:120]
    blanked = bytes(0x23 if 0x30 <= b <= 0x39 else b for b in line)
    return escape_evidence(blanked, 120)
