"""Exposure: can other machines reach a listener through this machine's packet filter, and why.

    >>> from portatlas import local, exposure
    >>> snap = local.listeners()
    >>> look = exposure.look()                    # reads nft, iptables (both backends), ip, Docker
    >>> found = exposure.for_snapshot(snap, look)  # {id(socket): Exposure}
    >>> found[id(snap.sockets[0])].to_dict()       # verdict, reason, classes, notes, close

Layers: ruleset.py (one model of nftables and iptables), nftjson.py / iptsave.py (parsers, no
I/O), machine.py (interfaces, routes), walk.py (the path of a packet), assess.py (per listener
and source class), containers.py (Docker/Podman), read.py (the commands), advice.py (notes and
how to close). The JSON of an Exposure is documented in docs/exposure.md.
"""

from __future__ import annotations

from typing import Any

from portatlas.exposure.assess import (ANY_FORWARD, BLOCKED, EXPOSED, LIMITED, LOCAL_ONLY,
                                       UNKNOWN, VERDICTS, Assessor, Exposure, Listener)
from portatlas.exposure import read, containers as ctr, advice
from portatlas.exposure.machine import Machine
from portatlas.exposure.ruleset import Ruleset
from portatlas.exposure.containers import port_holder

__all__ = ["prepare", "cancel", "look", "for_snapshot", "annotate", "reachable", "Look", "Assessor", "Exposure", "Listener", "VERDICTS",
           "EXPOSED", "LIMITED", "LOCAL_ONLY", "BLOCKED", "UNKNOWN"]


class Look:
    """One reading of this machine's packet filter, interfaces and containers."""

    def __init__(self, assessor: Assessor, *, sources: list[dict[str, Any]] | None = None,
                 problems: list[str] | None = None, containers: list[dict[str, Any]] | None = None) -> None:
        self.assessor = assessor
        self.sources = sources or []
        self.problems = problems or []
        self.containers = containers or []

    def summary(self) -> dict[str, Any]:
        rs = self.assessor.ruleset
        return {"readable": self.assessor.unknown_reason is None,
                "reason": self.assessor.unknown_reason,
                "sources": self.sources, "problems": self.problems,
                "rules": rs.rule_count(), "chains": len(rs.chains),
                "containers": [{k: c[k] for k in ("runtime", "name", "image", "id", "addresses")}
                               for c in self.containers]}


def prepare() -> None:
    """Start the commands a look runs (nft, iptables-save, ip) now, so that they work while the
    caller does something else (reading the sockets); look() then collects their output.
    Call cancel() if look() will not follow."""
    read.start_all()


def cancel() -> None:
    """End what prepare() started (when no look() follows)."""
    read.stop_all()


def look(*, containers: bool = True) -> Look:
    """Read everything exposure needs. Never raises for lack of privileges or tools: the
    answers are then "unknown" with the reason."""

    read.start_all()
    try:
        try:
            machine = read.read_machine()
        except read.Unreadable as exc:
            return Look(Assessor(Ruleset(), Machine([]), unknown_reason=str(exc)))
        try:
            ruleset = read.read_ruleset()
        except read.Unreadable as exc:
            return Look(Assessor(Ruleset(), machine, unknown_reason=str(exc)))
    finally:
        read.stop_all()
    found: list[dict[str, Any]] = []
    problems = list(ruleset.problems)
    if containers:
        found, notes = ctr.fetch()
        problems.extend(notes)
        targets = ctr.targets(found)
    else:
        targets = {}
    assessor = Assessor(ruleset, machine, forward_targets=targets)
    return Look(assessor, sources=ruleset.sources, problems=problems, containers=found)


def for_snapshot(snapshot, look_: Look) -> dict[int, Exposure]:
    """An Exposure for every listening socket of a local.Snapshot, keyed by id(socket).
    Sockets that do not listen (established connections) get none."""

    out: dict[int, Exposure] = {}
    assess = look_.assessor.assess_socket
    complete = advice.complete
    # per holding process: what it forwards to (docker-proxy, a runtime's port reservation)
    proxies: dict[int, tuple[dict[str, Any] | None, tuple[str, int] | None]] = {}
    processes = snapshot.processes
    reachable_ = (EXPOSED, LIMITED)
    # 10,000 sockets: the loop body is kept to what each socket needs (a shared answer, found
    # by its shape) and the rare cases (proxies, exposed listeners) are taken aside
    for sock in snapshot.sockets:
        if not sock.listening or (sock.transport == "udp" and sock.remote_port):
            continue
        proxy = target = None
        for holder in sock.holders:
            found = proxies.get(holder.pid)
            if found is None:
                found = proxies[holder.pid] = _proxy_of(processes.get(holder.pid))
            if found[0] is not None:
                proxy, target = found
                break
        exp = assess(sock.transport, sock.family, sock.address, sock.port, sock.v6only,
                     sock.interface, target)
        # only exposed and limited listeners get notes of their own (advice.complete)
        out[id(sock)] = complete(exp, sock, snapshot, look_, proxy) \
            if exp.verdict in reachable_ else exp
    return out


def _proxy_of(proc) -> tuple[dict[str, Any] | None, tuple[str, int] | None]:
    """(port_holder's answer, the forward the socket accepts) for a socket's holding process."""
    proxy = port_holder(proc.cmdline if proc else None)
    if proxy is None:
        return None, None
    if proxy.get("reservation"):
        return proxy, ANY_FORWARD
    return proxy, (proxy["address"], proxy["port"])


def annotate(snapshot, look_: Look | None = None) -> Look:
    """Add "reachability" (Exposure.to_dict(), or None for sockets that do not listen) to every
    socket of a local.Snapshot and "packet_filter" (Look.summary()) to its report, as
    `portatlas local` shows them. Returns the Look used."""
    look_ = look_ or look()
    found = for_snapshot(snapshot, look_)
    dicts: dict[int, dict[str, Any]] = {}  # one dict per shared Exposure (encoded once, too)
    extras = snapshot.extras
    for sock in snapshot.sockets:
        key = id(sock)
        exp = found.get(key)
        if exp is None:
            value = None
        else:
            value = dicts.get(id(exp))
            if value is None:
                value = dicts[id(exp)] = exp.to_dict()
        extra = extras.get(key)
        if extra is None:
            extras[key] = {"reachability": value}
        else:
            extra["reachability"] = value
    snapshot.head_extras["packet_filter"] = look_.summary()
    return look_


def reachable(sock, snapshot) -> bool:
    """Whether an annotated socket can be reached from other machines (exposed or limited)."""
    reach = (snapshot.extras.get(id(sock)) or {}).get("reachability")
    return bool(reach) and reach["verdict"] in (EXPOSED, LIMITED)
