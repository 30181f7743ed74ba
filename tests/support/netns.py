"""Network namespaces for tests: throwaway hosts that only the test talks to.

Every namespace gets a unique name, its own loopback brought up, and is deleted (with every
process still inside it) when the context exits. Addresses for veth links come from the
benchmarking range 198.18.0.0/15 and the documentation prefix 2001:db8::/32 only.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

_counter = itertools.count()
REPO = Path(__file__).resolve().parents[2]


def available() -> bool:
    """True when this process may create namespaces (root with iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Netns:
    """One network namespace; use as a context manager."""

    def __init__(self, prefix: str = "pa") -> None:
        self.name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Netns":
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Anything else still inside (daemons that forked away) is ended too.
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
            if not left.stdout.strip():
                break
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
        """Run a command inside the namespace and wait for it."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(cmd), check=check, timeout=timeout, **kw)

    def popen(self, cmd: Sequence[str], **kw) -> subprocess.Popen:
        """Start a long-running command inside the namespace; it is killed on close()."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.argv(cmd), **kw)
        self._procs.append(proc)
        return proc

    def portatlas(self, *args: str, check: bool = False, timeout: float = 120,
                  env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the portatlas CLI (this checkout's, same interpreter) inside the namespace."""
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return self.run([sys.executable, "-m", "portatlas", *args], check=check,
                        timeout=timeout, env=full_env)

    def wait_for_tcp(self, port: int, host: str = "127.0.0.1", timeout: float = 15) -> None:
        """Block until something accepts TCP connections on host:port inside the namespace."""
        code = (
            "import socket,sys,time\n"
            f"end=time.monotonic()+{timeout}\n"
            "while time.monotonic()<end:\n"
            "    try:\n"
            f"        socket.create_connection(({host!r},{port}),timeout=0.5).close(); sys.exit(0)\n"
            "    except OSError: time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        result = self.run([sys.executable, "-c", code], check=False, timeout=timeout + 5)
        if result.returncode != 0:
            raise TimeoutError(f"nothing accepted on {host}:{port} in netns {self.name}")


_link_counter = itertools.count()


def link(a: Netns, b: Netns, *, subnet: int | None = None, v6: bool = True) -> tuple[str, str]:
    """Join two namespaces with a veth pair; returns (address of a, address of b) as IPv4 strings.

    a gets 198.18.<subnet>.1/24 and 2001:db8:<subnet>::1/64, b gets .2 and ::2.
    """
    n = next(_link_counter) if subnet is None else subnet
    n = n % 250
    ifa, ifb = f"pa{os.getpid() % 10000}a{n}", f"pa{os.getpid() % 10000}b{n}"
    _ip("link", "add", ifa, "type", "veth", "peer", "name", ifb)
    _ip("link", "set", ifa, "netns", a.name)
    _ip("link", "set", ifb, "netns", b.name)
    addr_a, addr_b = f"198.18.{n}.1", f"198.18.{n}.2"
    for ns, ifname, addr, addr6 in ((a, ifa, addr_a, f"2001:db8:{n}::1"),
                                    (b, ifb, addr_b, f"2001:db8:{n}::2")):
        _ip("-n", ns.name, "addr", "add", f"{addr}/24", "dev", ifname)
        if v6:
            _ip("-n", ns.name, "addr", "add", f"{addr6}/64", "dev", ifname, "nodad")
        _ip("-n", ns.name, "link", "set", ifname, "up")
    return addr_a, addr_b
