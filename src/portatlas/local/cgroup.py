"""Which systemd unit or container a Linux process belongs to, read from /proc/PID/cgroup.

The cgroup path is where systemd and container runtimes file a process, so it answers "who
started this?" better than the parent pid does:
    0::/system.slice/ssh.service                         -> unit ssh.service
    0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service
                                                         -> unit foo.service (user manager)
    0::/system.slice/docker-<64 hex>.scope               -> docker container <12 hex>
    0::/kubepods.slice/.../cri-containerd-<hex>.scope    -> containerd (Kubernetes) container
    0::/machine.slice/libpod-<hex>.scope/container       -> podman container
    0::/lxc.payload.web/...                              -> lxc container "web"
    12:name=systemd:/docker/<hex>  (cgroup v1)           -> docker container
"""

from __future__ import annotations

import re

# (runtime, pattern over one path component or the whole path); the group is the id or name
_CONTAINERS = (
    ("docker", re.compile(r"(?:^|/)docker[-/]([0-9a-f]{12,64})(?:\.scope)?(?:/|$)")),
    ("podman", re.compile(r"(?:^|/)libpod-(?:conmon-)?([0-9a-f]{12,64})(?:\.scope)?(?:/|$)")),
    ("containerd", re.compile(r"(?:^|/)cri-containerd-([0-9a-f]{12,64})(?:\.scope)?(?:/|$)")),
    ("cri-o", re.compile(r"(?:^|/)crio-(?:conmon-)?([0-9a-f]{12,64})(?:\.scope)?(?:/|$)")),
    ("kubernetes", re.compile(r"(?:^|/)kubepods[^/]*/(?:[^/]+/)*?([0-9a-f]{64})(?:/|$)")),
    ("lxc", re.compile(r"(?:^|/)lxc(?:\.payload)?[./]([^/]+)")),
    ("systemd-nspawn", re.compile(r"(?:^|/)machine-([^/]+)\.scope(?:/|$)")),
)
_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".timer")


def cgroup_path(text: str) -> str | None:
    """The most telling cgroup path: the unified (v2) one, else systemd's v1 hierarchy, else the
    first non-root path of any controller. None when every path is "/"."""
    unified = named = other = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if path in ("", "/"):
            continue
        if hid == "0" and controllers == "":
            unified = path
        elif controllers == "name=systemd":
            named = path
        elif other is None:
            other = path
    return unified or named or other


def describe_cgroup(text: str) -> tuple[str | None, dict[str, str] | None, str | None]:
    """(unit, container, path) for the contents of a /proc/PID/cgroup file."""
    path = cgroup_path(text)
    if path is None:
        return None, None, None
    container = None
    for runtime, pattern in _CONTAINERS:
        match = pattern.search(path)
        if match:
            ident = match.group(1)
            if runtime == "systemd-nspawn":
                ident = ident.replace("\\x2d", "-")
            container = {"runtime": runtime, "id": ident[:12] if _is_hex(ident) else ident}
            break
    unit = None
    for part in reversed(path.strip("/").split("/")):
        if part.endswith(_UNIT_SUFFIXES) and not (container and container["id"] in part):
            unit = part
            break
    if unit and container and unit.startswith(("docker-", "libpod-", "cri-containerd-", "crio-")):
        unit = None
    return unit, container, path


def _is_hex(text: str) -> bool:
    return len(text) >= 12 and all(c in "0123456789abcdef" for c in text)
