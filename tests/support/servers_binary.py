"""Real servers for the binary and UDP protocol tests, started inside a network namespace.

Every function has the same shape, so tests and benchmarks/bench_identify.py can use them
interchangeably:

    start_<name>(ns: Netns, port: int, tmp: Path) -> None

It writes the server's configuration under `tmp` (a fresh directory the caller owns), starts
the Debian-packaged daemon in the foreground inside `ns` (ns.popen, so Netns.close() ends it),
listening on every address of the namespace on `port`, and returns once the server answers
(or raises TimeoutError). Nothing is started on the host.

    start_postgresql  postgres (trust authentication, no TLS)          TCP
    start_mosquitto   mosquitto (anonymous clients allowed)             TCP
    start_dnsmasq     dnsmasq as a DNS server only                      UDP and TCP
    start_chrony      chronyd serving its local clock (never sets it)   UDP
    start_snmpd       snmpd with rocommunity public                     UDP
    start_memcached   memcached with UDP enabled                        UDP and TCP

SERVERS maps a short name to (function, transports) for loops in tests and benchmarks.
The Debian packages are listed in .ci/apt/identify-binary.txt.
"""

from __future__ import annotations

import os
import pwd
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from support.netns import Netns

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _give_to(path: Path, user: str) -> None:
    """Hand a directory (and its parents' search permission) to a daemon's user."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in path.parents:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o011)


def _wait_for_udp(ns: Netns, port: int, payload: bytes, timeout: float = 15) -> None:
    """Block until something inside `ns` answers `payload` on UDP `port` of 127.0.0.1."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.2)\n"
        "while time.monotonic()<end:\n"
        "    try:\n"
        f"        s.sendto({payload!r},('127.0.0.1',{port})); s.recvfrom(4096); sys.exit(0)\n"
        "    except OSError: time.sleep(0.05)\n"
        "sys.exit(1)\n"
    )
    result = ns.run([sys.executable, "-c", code], check=False, timeout=timeout + 5)
    if result.returncode != 0:
        raise TimeoutError(f"nothing answered on udp 127.0.0.1:{port} in netns {ns.name}")


def _check_alive(proc: subprocess.Popen, what: str, log: Path | None = None) -> None:
    if proc.poll() is not None:
        detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} exited with status {proc.returncode}: {detail}")


# ---- PostgreSQL -----------------------------------------------------------------------------

_PG_TEMPLATE: Path | None = None


def _pg_bin(tool: str) -> str:
    for directory in PG_BIN_CANDIDATES:
        if (directory / tool).exists():
            return str(directory / tool)
    found = shutil.which(tool)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {tool} is not installed (Debian package postgresql)")
    return found


def _pg_template(tmp: Path) -> Path:
    """initdb once per process (it takes seconds) and copy the cluster for each server."""
    global _PG_TEMPLATE
    if _PG_TEMPLATE is None or not _PG_TEMPLATE.exists():
        base = Path(tmp).parent / f"pa-pg-template-{os.getpid()}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        _give_to(base, "postgres")
        data = base / "data"
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(data),
                        "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                        "--locale=C.UTF-8"],
                       check=True, capture_output=True, timeout=120)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")
        _PG_TEMPLATE = data
    return _PG_TEMPLATE


def start_postgresql(ns: Netns, port: int, tmp: Path) -> None:
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "pgdata"
    shutil.copytree(_pg_template(tmp), data, symlinks=True)
    entry = pwd.getpwnam("postgres")
    for path in [data, *data.rglob("*")]:
        os.lchown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(data, 0o700)
    _give_to(tmp, "postgres")
    log = tmp / "postgres.log"
    proc = ns.popen(["runuser", "-u", "postgres", "--", _pg_bin("postgres"), "-D", str(data),
                     "-p", str(port), "-k", str(tmp), "-c", "listen_addresses=*",
                     "-c", "fsync=off", "-c", "logging_collector=off"],
                    stderr=open(log, "wb"))
    deadline = time.monotonic() + 30
    while True:
        try:
            ns.wait_for_tcp(port, timeout=2)
            return
        except TimeoutError:
            _check_alive(proc, "postgres", log)
            if time.monotonic() > deadline:
                raise


# ---- Mosquitto ------------------------------------------------------------------------------

def start_mosquitto(ns: Netns, port: int, tmp: Path) -> None:
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port}\nallow_anonymous true\npersistence false\n"
                    "log_dest stderr\nuser mosquitto\n")
    _give_to(tmp, "mosquitto")
    log = tmp / "mosquitto.log"
    proc = ns.popen(["mosquitto", "-c", str(conf)], stderr=open(log, "wb"))
    try:
        ns.wait_for_tcp(port)
    except TimeoutError:
        _check_alive(proc, "mosquitto", log)
        raise


# ---- dnsmasq --------------------------------------------------------------------------------

def _dns_query_version_bind() -> bytes:
    return (struct.pack(">HHHHHH", 0x5053, 0, 1, 0, 0, 0)
            + b"\x07version\x04bind\x00\x00\x10\x00\x03")


def start_dnsmasq(ns: Netns, port: int, tmp: Path) -> None:
    """A DNS server only (no DHCP), answering from a tiny hosts file of its own."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    hosts = tmp / "hosts"
    hosts.write_text("198.18.0.53 ns.portatlas.test\n")
    log = tmp / "dnsmasq.log"
    proc = ns.popen(["dnsmasq", "-k", f"--port={port}", "--no-resolv", "--no-hosts",
                     f"--addn-hosts={hosts}", "--conf-file=/dev/null", "--pid-file=",
                     "--user=nobody", "--group=nogroup", "--log-facility=-"],
                    stderr=open(log, "wb"))
    try:
        _wait_for_udp(ns, port, _dns_query_version_bind())
        ns.wait_for_tcp(port)
    except TimeoutError:
        _check_alive(proc, "dnsmasq", log)
        raise


# ---- chrony ---------------------------------------------------------------------------------

NTP_CLIENT_REQUEST = b"\x23" + b"\x00" * 39 + b"portatls"


def start_chrony(ns: Netns, port: int, tmp: Path) -> None:
    """chronyd serving its local clock at stratum 10. -x: it never touches the clock (the
    namespace shares the host's clock)."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "chrony.conf"
    conf.write_text(f"port {port}\ncmdport 0\nallow all\nlocal stratum 10\n"
                    f"pidfile {tmp / 'chronyd.pid'}\ndriftfile {tmp / 'chrony.drift'}\n")
    _give_to(tmp, "_chrony")
    log = tmp / "chronyd.log"
    proc = ns.popen(["chronyd", "-d", "-x", "-u", "_chrony", "-f", str(conf)],
                    stderr=open(log, "wb"))
    try:
        _wait_for_udp(ns, port, NTP_CLIENT_REQUEST)
    except TimeoutError:
        _check_alive(proc, "chronyd", log)
        raise


# ---- snmpd ----------------------------------------------------------------------------------

SNMP_V3_DISCOVERY = bytes.fromhex(
    "303a020103300f02024a69020300ffe30401040201030410300e0400020100020100040004000400"
    "301204000400a00c020237f00201000201003000")


def start_snmpd(ns: Netns, port: int, tmp: Path) -> None:
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "snmpd.conf"
    conf.write_text("rocommunity public default\nrocommunity6 public default\n"
                    "sysLocation portatlas test namespace\nsysContact nobody@portatlas.test\n")
    _give_to(tmp, "Debian-snmp")
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp / "persist"), MIBS="", MIBDIRS="/nonexistent")
    log = tmp / "snmpd.log"
    proc = ns.popen(["snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(log), "-u", "Debian-snmp",
                     "-g", "Debian-snmp", f"udp:{port}", f"udp6:{port}"],
                    env=env)
    try:
        _wait_for_udp(ns, port, SNMP_V3_DISCOVERY)
    except TimeoutError:
        _check_alive(proc, "snmpd", log)
        raise


# ---- memcached ------------------------------------------------------------------------------

def start_memcached(ns: Netns, port: int, tmp: Path) -> None:
    """memcached on `port` over TCP and UDP (UDP is off by default since 1.5.6)."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "memcached.log"
    proc = ns.popen(["memcached", "-u", "memcache", "-m", "16", "-p", str(port), "-U", str(port),
                     "-l", "0.0.0.0,::"], stderr=open(log, "wb"))
    try:
        ns.wait_for_tcp(port)
        _wait_for_udp(ns, port, b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n")
    except TimeoutError:
        _check_alive(proc, "memcached", log)
        raise


SERVERS: dict[str, tuple[Callable[[Netns, int, Path], None], tuple[str, ...]]] = {
    "postgresql": (start_postgresql, ("tcp",)),
    "mosquitto": (start_mosquitto, ("tcp",)),
    "dnsmasq": (start_dnsmasq, ("udp", "tcp")),
    "chrony": (start_chrony, ("udp",)),
    "snmpd": (start_snmpd, ("udp",)),
    "memcached": (start_memcached, ("udp", "tcp")),
}
