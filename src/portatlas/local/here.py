"""The "here" section of `portatlas PORT`: does anything listen on this port on this machine, and who.

This runs on every port lookup, so the common answer ("nothing") must cost next to nothing: on
Linux one netlink request per transport and family with the port compiled into a kernel-side
filter (no psutil, no /proc scan, no registry queries). Only when something matched are the
owning processes looked up and the listener classified.
"""

from __future__ import annotations

import os
import sys
from portatlas.errors import PortatlasError
from portatlas.local import _privileged, attach_processes, listeners
from portatlas.local.model import Snapshot, Notice

TYPE_CHECKING = False  # typing itself costs ~2.5 ms to import; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

    from portatlas.atlas import PortAnswer

LOOKED_AT = ("tcp", "udp")


def section(answer: "PortAnswer") -> dict[str, Any] | None:
    """JSON-ready: whether anything listens on answer.port (answer.transport, or TCP and UDP)
    in this machine's network namespace, and who. Never raises for lack of privileges."""
    port = answer.port
    if answer.transport and answer.transport not in LOOKED_AT:
        return {"port": port, "transports": [], "listening": None, "backend": None,
                "privileged": None, "sockets": [],
                "warnings": [{"code": "not-looked-at",
                              "text": f"only TCP and UDP sockets are looked at here, not {answer.transport}"}]}
    transports = (answer.transport,) if answer.transport else LOOKED_AT
    sockets = None
    backend = None
    if sys.platform.startswith("linux") and \
            os.environ.get("PORTATLAS_LOCAL_BACKEND", "netlink") == "netlink":
        from portatlas.local import netlink  # platform: the netlink reader is for Linux only

        try:
            sockets = netlink.dump(transports, ports=(port, port))
            backend = "netlink"
        except OSError:
            sockets = None  # not allowed here: the general path below falls back to /proc/net
    if sockets is not None and not sockets:
        return {"port": port, "transports": list(transports), "listening": False,
                "backend": backend, "privileged": None, "sockets": [], "warnings": []}
    return _details(answer, transports, sockets, backend)


def _details(answer, transports: tuple[str, ...], sockets, backend: str | None) -> dict[str, Any]:
    # lazy: the classifier only when the port has listeners (or netlink is unavailable)
    from portatlas.local.classify import Classifier

    port = answer.port
    if sockets is None:
        try:
            snap = listeners(port=port, transports=transports)
        except (OSError, PortatlasError) as exc:
            # a port answer must not fail because this machine could not be looked at
            return {"port": port, "transports": list(transports), "listening": None,
                    "backend": None, "privileged": None, "sockets": [],
                    "warnings": [{"code": "unavailable",
                                  "text": f"could not look at this machine's sockets: {exc}"}]}
    else:
        privileged = _privileged()
        warnings: list = []
        procs = attach_processes(sockets, warnings, privileged)
        snap = Snapshot(sockets, procs, warnings=warnings, backend=backend or "",
                        privileged=privileged)
    Classifier(answer.atlas).classify(snap)
    _reachability(snap)
    ordered = sorted(snap.sockets, key=lambda s: (s.transport, s.family, s.address))
    return {"port": port, "transports": list(transports), "listening": bool(ordered),
            "backend": snap.backend, "privileged": snap.privileged,
            "sockets": [snap.socket_dict(s) for s in ordered],
            "warnings": [w.to_dict() for w in snap.warnings]}


def _reachability(snap) -> None:
    """Whether other machines can reach the listeners (portatlas.exposure). Only as root, the
    only user who can read the packet filter: then it costs a few commands on top of the /proc
    scan this path already made; without root a note says so instead of running them."""
    if not snap.sockets:
        return
    if snap.privileged:
        # lazy: packet-filter reading (exposure) only as root and with listeners
        from portatlas.exposure import annotate

        annotate(snap)
        return

    snap.warnings.append(Notice("reachability-unknown",
                                "whether other machines can reach it through the packet filter "
                                "is known only as root (sudo portatlas PORT)"))
