"""What a snapshot remembers of each listener or scanned port: a key and a few facets.

A key names the thing that can appear or disappear (a listening socket: transport, address,
interface, port; a scanned port: host, transport, port; a scanned host). Facets are what can
change while the key stays: the program behind a socket, its binary, its exposure, what answers.
Only facets worth telling a person are kept; volatile details (inode, fd, timing) are not, so
two looks at an unchanged machine give identical items.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


# socket fields whose change is an exposure change (the address class today; the packet-filter
# verdict when the socket dict carries one)
EXPOSURE_FIELDS = ("exposure", "reachability")


@dataclass(frozen=True)
class Item:
    """One thing in a snapshot: its key, a short label for people, and its facets."""

    key: str
    label: str
    facets: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "facets": self.facets}


def local_items(report: dict[str, Any]) -> dict[str, Item]:
    """Items of a `portatlas.local/1` report: one per listening socket (connections are left
    out: they come and go by the second and are not what a change log is for)."""
    items: dict[str, Item] = {}
    for sock in report.get("sockets") or ():
        if not _listening(sock):
            continue
        item = local_item(sock)
        items.setdefault(item.key, item)
    return items


def _listening(sock: dict[str, Any]) -> bool:
    state = (sock.get("state") or "").upper()
    if sock.get("transport") == "udp":
        return not sock.get("remote_port")
    return state == "LISTEN"


def local_item(sock: dict[str, Any]) -> Item:
    where = sock.get("address") or "*"
    if sock.get("interface"):
        where += f"%{sock['interface']}"
    shown = f"[{where}]" if ":" in where else where
    key = f"{sock['transport']} {where} {sock['port']}"
    label = f"{sock['transport']} {shown}:{sock['port']}"
    processes = sock.get("processes") or ()
    facets: dict[str, Any] = {
        "process": sorted({_process_label(p) for p in processes}) or None,
        "pids": sorted({p["pid"] for p in processes if p.get("pid")}) or None,
        "binary": sorted({_binary(p.get("exe")) for p in processes if p.get("exe")}) or None,
        "user": sock.get("user"),
    }
    for name in EXPOSURE_FIELDS:
        if name in sock:
            facets[name] = _condensed(sock[name])
    if sock.get("identified"):
        facets["identification"] = _identification(sock["identified"])
    return Item(key, label, facets)


def _condensed(value: Any) -> Any:
    """A packet-filter verdict without its wording: the verdict and each source class's
    verdict (a reworded reason or a renumbered rule handle is not a change of exposure)."""
    if not isinstance(value, dict) or "verdict" not in value:
        return value
    classes = {c.get("class"): c.get("verdict") for c in value.get("classes") or ()
               if isinstance(c, dict)}
    out: dict[str, Any] = {"verdict": value["verdict"]}
    if classes:
        out["classes"] = classes
    return out


def _process_label(p: dict[str, Any]) -> str:
    name = p.get("name") or (p.get("exe") or "").rsplit("/", 1)[-1] or "?"
    user = p.get("user")
    where = p.get("container") or p.get("unit")
    out = name + (f" ({user})" if user else "")
    return out + (f" [{where}]" if where else "")


def _binary(exe: str) -> str:
    """The executable with its size and modification time, so an upgraded binary at the same
    path counts as a change (a hash would read every binary on every look)."""
    path = exe.removesuffix(" (deleted)")
    try:
        st = os.stat(path)
    except OSError:
        return exe
    return f"{exe} ({st.st_size} bytes, modified {int(st.st_mtime)})"


def _identification(verdict: dict[str, Any]) -> dict[str, Any] | None:
    keep = {k: verdict.get(k) for k in ("outcome", "service", "protocol", "product", "version")}
    return {k: v for k, v in keep.items() if v is not None} or None


def scan_items(report: dict[str, Any]) -> dict[str, Item]:
    """Items of a `portatlas.scan/1` report: each host (up or down), and each port that is not
    closed (a port that was open and is now closed or no longer answers is a 'changed' state
    when the later scan covered it, and 'disappeared' when it did not)."""
    items: dict[str, Item] = {}
    for host in report.get("hosts") or ():
        address = host.get("address") or host.get("target")
        shown = f"[{address}]" if ":" in (address or "") else address
        hkey = f"host {address}"
        items[hkey] = Item(hkey, f"host {host.get('target') or address}",
                           {"status": host.get("status")})
        for port in _host_ports(host):
            if port["state"] == "closed":
                continue
            key = f"{port['transport']} {address} {port['port']}"
            facets: dict[str, Any] = {"state": port["state"]}
            service = port.get("service")
            if isinstance(service, dict):
                ident = _identification(service)
                if ident:
                    facets["identification"] = ident
            items[key] = Item(key, f"{port['transport']} {shown}:{port['port']}", facets)
    return items


def expand_compact(text: str) -> list[int]:
    """'1-3,5' -> [1, 2, 3, 5] (the compact range form of scan output)."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit():
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _host_ports(host: dict[str, Any]) -> list[dict[str, Any]]:
    """The host's listed ports plus every port summarised in its extraports groups."""
    ports = [dict(p) for p in host.get("ports") or ()]
    for group in host.get("extraports") or ():
        if group.get("state") == "closed":
            continue
        for reason in group.get("reasons") or ():
            for number in expand_compact(reason.get("ports") or ""):
                ports.append({"port": number, "transport": group["transport"],
                              "state": group["state"]})
    return ports
