"""Which nmap probes a port gets, in which order. Pure.

nmap's rules, kept exactly:
 - only probes of the port's transport; NULL (TCP) is the passive greeting, not sent;
 - a probe whose `ports` (inside TLS: `sslports`) holds the port is always sent, whatever
   its rarity, and before the others;
 - any other probe is sent only when its rarity <= the intensity (0-9, default 7);
 - after a soft match for service S, only probes whose applicable lines can name S remain;
 - ports in the file's `Exclude` directive get no probes at all.

Our one change of order: probes the port does not hint at go by rarity (ties in file order)
instead of file order alone - the file is mostly rarity-sorted already, and the likeliest
probes first is what lets several run at once without wasting the port's time.
"""

from __future__ import annotations

from portatlas.identify.nmap.db import NmapProbe, ServiceProbes
from portatlas.identify.nmap.matching import possible_services

DEFAULT_INTENSITY = 7


def hinted(probe: NmapProbe, port: int, tls: bool) -> bool:
    return port in (probe.sslports if tls else probe.ports)


def excluded(db: ServiceProbes, transport: str, port: int) -> bool:
    return port in db.exclude.get(transport, frozenset())


def plan(db: ServiceProbes, transport: str, port: int, *, intensity: int = DEFAULT_INTENSITY,
         tls: bool = False, softmatch: str | None = None,
         done: frozenset[str] = frozenset()) -> list[NmapProbe]:
    """The probes to send to `port`, in order (NULL never included; `done` names skipped)."""
    if excluded(db, transport, port):
        return []
    first, rest = [], []
    for probe in db.probes:
        if probe.transport != transport or probe.name == "NULL" or probe.name in done:
            continue
        if softmatch is not None and softmatch not in possible_services(db, probe):
            continue
        if hinted(probe, port, tls):
            first.append(probe)
        elif probe.rarity <= intensity:
            rest.append(probe)
    rest.sort(key=lambda p: (p.rarity, p.order))
    return first + rest
