"""Containers behind published ports: Docker and Podman.

Three sources, each optional:
  - docker-proxy processes (their command line names the container's address and port);
  - the runtime's API (GET /containers/json over its unix socket, when this user may read it):
    names, images and the addresses of running containers;
  - the DNAT rules themselves (the walker follows them; this module only names the target).
Parsing is here without I/O; fetch() is the one function that talks to a socket.
"""

from __future__ import annotations

import json
import os
from typing import Any

from portatlas.exposure import addr

API_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")
MAX_REPLY = 8 * 1024 * 1024
PROXY_NAMES = ("docker-proxy", "rootlessport", "podman-proxy")
# Processes that only hold a published host port for a container (Podman's conmon binds it so
# that nothing else can take it, and never relays traffic: the runtime's DNAT carries it).
# Their command line does not say where the port goes; the DNAT rule does.
RESERVER_NAMES = {"conmon": "podman"}


def port_holder(cmdline: list[str] | None) -> dict[str, Any] | None:
    """What a socket's holder means for exposure: a proxy for one container address and port
    (proxy_target), a runtime's port reservation ({"reservation": True, "runtime"}), or None
    for any other program."""
    if not cmdline:
        return None
    runtime = RESERVER_NAMES.get(os.path.basename(cmdline[0]))
    if runtime is not None:
        return {"reservation": True, "runtime": runtime}
    return proxy_target(cmdline)


def proxy_target(cmdline: list[str] | None) -> dict[str, Any] | None:
    """docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2
    -container-port 80 -> {"proto", "host_ip", "host_port", "address", "port"}."""
    if not cmdline:
        return None
    name = os.path.basename(cmdline[0])
    if name not in PROXY_NAMES:
        return None
    opts: dict[str, str] = {}
    args = cmdline[1:]
    for i, word in enumerate(args):
        if word.startswith("-") and i + 1 < len(args):
            opts[word.lstrip("-")] = args[i + 1]
    try:
        return {"proto": opts.get("proto", "tcp"), "host_ip": opts.get("host-ip"),
                "host_port": int(opts["host-port"]), "address": opts["container-ip"],
                "port": int(opts["container-port"])}
    except (KeyError, ValueError):
        return None


def parse_containers(data: bytes | str, runtime: str = "docker") -> list[dict[str, Any]]:
    """The reply of GET /containers/json (Docker's and Podman's compatible API)."""
    items = json.loads(data)
    out = []
    if not isinstance(items, list):
        raise ValueError("not a container list")
    for item in items:
        if not isinstance(item, dict):
            continue
        names = item.get("Names") or []
        name = (names[0] if names else item.get("Id", "")[:12]).lstrip("/")
        addresses = []
        nets = ((item.get("NetworkSettings") or {}).get("Networks") or {})
        for net in nets.values():
            for key in ("IPAddress", "GlobalIPv6Address"):
                value = (net or {}).get(key)
                if value:
                    addresses.append(value)
        ports = []
        for p in item.get("Ports") or ():
            if p.get("PublicPort"):
                ports.append({"host_ip": p.get("IP") or "0.0.0.0", "host_port": p["PublicPort"],
                              "port": p.get("PrivatePort"), "proto": p.get("Type", "tcp")})
        out.append({"runtime": runtime, "id": (item.get("Id") or "")[:12], "name": name,
                    "image": item.get("Image"), "addresses": addresses, "published": ports,
                    "state": item.get("State")})
    return out


def targets(containers: list[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """(family, address, container port) -> who is there, for naming DNAT destinations."""
    out: dict[tuple[str, int, int], dict[str, Any]] = {}
    for c in containers:
        who = {"runtime": c["runtime"], "name": c["name"], "image": c["image"], "id": c["id"]}
        for a in c["addresses"]:
            try:
                fam, value = addr.family_of(a), addr.to_int(a)
            except ValueError:
                continue
            for p in c["published"]:
                if p.get("port"):
                    out[(fam, value, int(p["port"]))] = who
    return out


def fetch(path: str | None = None, timeout: float = 2.0) -> tuple[list[dict[str, Any]], list[str]]:
    """Running containers from every API socket this user can open, and notes on the rest."""
    notes: list[str] = []
    found: list[dict[str, Any]] = []
    candidates = [path] if path else _sockets()
    for sock_path in candidates:
        if not os.path.exists(sock_path):
            continue
        runtime = "podman" if "podman" in sock_path else "docker"
        try:
            body = _get(sock_path, "/containers/json", timeout)
            found.extend(parse_containers(body, runtime))
        except PermissionError:
            notes.append(f"the {runtime} API ({sock_path}) is not readable by this user: "
                         "container names are not shown")
        except (OSError, ValueError) as exc:
            notes.append(f"the {runtime} API ({sock_path}) did not answer: {exc}")
    return found, notes


def _sockets() -> list[str]:
    out = []
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        out.append(host[len("unix://"):])
    out.extend(p for p in API_SOCKETS if p not in out)
    return out


def _get(path: str, url: str, timeout: float) -> bytes:
    import socket  # here: most machines have no runtime socket, and socket is a big import
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(f"GET {url} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        chunks, total = [], 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_REPLY:
                raise ValueError("the reply is too large")
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise ValueError(status.decode("latin-1", "replace")[:80])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return body


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)
