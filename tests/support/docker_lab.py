"""Docker for exposure tests: a real dockerd inside the server namespace of an exposure Lab, or
(where dockerd cannot run) Docker's own NAT/filter rules with a real docker-proxy in front of
a stand-in "container" namespace.

Everything Docker keeps lives under a temporary directory; the bridge is 198.19.7.0/24.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from support.netns import Netns

BRIDGE_NET = "198.19.7"
IMAGE = "pa14/busybox:test"
SERVE = ["/bin/nc", "-ll", "-p", "80", "-e", "/bin/hello"]  # the container's command


def docker_available() -> str | None:
    """None when dockerd can be tried, else why not."""
    for tool in ("dockerd", "docker", "containerd", "runc"):
        if not shutil.which(tool):
            return f"{tool} is not installed (Debian docker.io)"
    if not Path("/bin/busybox").is_file():
        return "/bin/busybox is missing (Debian busybox-static), needed for a local image"
    return None


class Dockerd:
    """dockerd running in a namespace (nsenter keeps /sys, so cgroups stay visible; `ip netns
    exec` would remount /sys and dockerd would find no devices cgroup)."""

    def __init__(self, ns: Netns, root: Path) -> None:
        self.ns = ns
        self.root = root
        self.sock = root / "docker.sock"
        self.proc: subprocess.Popen | None = None
        self.log = root / "dockerd.log"

    def start(self, timeout: float = 60) -> None:
        cfg = {"bip": f"{BRIDGE_NET}.1/24", "iptables": True, "ip6tables": False,
               "ipv6": False, "storage-driver": "vfs",
               "data-root": str(self.root / "data"), "exec-root": str(self.root / "exec"),
               "pidfile": str(self.root / "docker.pid"), "hosts": [f"unix://{self.sock}"],
               "default-address-pools": [{"base": "198.19.8.0/21", "size": 24}]}
        (self.root / "daemon.json").write_text(json.dumps(cfg))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.ns.name}", "dockerd", "--config-file",
                 str(self.root / "daemon.json")], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd exited: " + self.failure())
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("dockerd did not come up: " + self.failure())

    def failure(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        bad = [l for l in lines if "level=error" in l or "level=fatal" in l or "failed" in l]
        return (bad or lines or ["no output"])[-1][:300]

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", f"unix://{self.sock}", *args], check=check,
                              capture_output=True, input=input, timeout=timeout)

    def import_busybox(self) -> None:
        rootfs = self.root / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            info = tarfile.TarInfo("bin")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
            tar.add("/bin/busybox", "bin/busybox")
            for name in ("sh", "httpd", "nc", "sleep", "echo"):
                link = tarfile.TarInfo(f"bin/{name}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
            # what the container serves: its name, to every connection
            script = b"#!/bin/sh\necho ctr\n"
            hello = tarfile.TarInfo("bin/hello")
            hello.mode = 0o755
            hello.size = len(script)
            tar.addfile(hello, io.BytesIO(script))
        self.docker("import", "-", IMAGE, input=rootfs.read_bytes())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).stdout.decode().split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        self.proc = None


# Docker's rules for one container publishing host port HOST to CONTAINER:PORT (the layout
# docker.io 20.10 writes, read from a real dockerd in this same test suite).
def docker_rules(host_port: int, container_ip: str, port: int, bridge: str = "docker0") -> str:
    return f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s {BRIDGE_NET}.0/24 ! -o {bridge} -j MASQUERADE
-A POSTROUTING -s {container_ip}/32 -d {container_ip}/32 -p tcp -m tcp --dport {port} -j MASQUERADE
-A DOCKER -i {bridge} -j RETURN
-A DOCKER ! -i {bridge} -p tcp -m tcp --dport {host_port} -j DNAT --to-destination {container_ip}:{port}
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o {bridge} -j DOCKER
-A FORWARD -i {bridge} ! -o {bridge} -j ACCEPT
-A FORWARD -i {bridge} -o {bridge} -j ACCEPT
-A DOCKER -d {container_ip}/32 ! -i {bridge} -o {bridge} -p tcp -m tcp --dport {port} -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i {bridge} ! -o {bridge} -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o {bridge} -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""
