"""Real servers for the binary and UDP protocol tests, started inside a network namespace.

The functions follow the convention of support.servers_text (helper 5a's file), so tests and
benchmarks/bench_identify.py can loop over both sets alike:

    start_<name>(ns: Netns, tmp: Path, ports=(standard, unexpected)) -> Service

Each writes the server's configuration in a directory the daemon's user owns (under /tmp,
linked from the caller's `tmp`; see _daemon_dir), starts the Debian-packaged daemon in the
foreground inside `ns` (ns.popen, so Netns.close() ends it) listening on every address of the
namespace on each port, and returns once every port answers (TimeoutError otherwise). The returned Service carries the truth the identification must find.
Nothing is started on the host.

    start_postgresql  postgres, one per port (trust auth; TLS on tls_ports)    TCP  5432, 103
    start_mosquitto   mosquitto (anonymous clients allowed)                    TCP  1883, 8080
    start_dnsmasq     dnsmasq as a DNS server only, one per port               UDP+TCP 53, 5353
    start_chrony      chronyd serving its local clock (never sets it), one per port  UDP 123, 4123
    start_snmpd       snmpd with rocommunity public                            UDP  161, 1161
    start_memcached_udp  memcached with UDP switched on                 UDP(+TCP) 11211, 11311

SERVERS maps a short name to its start function. Debian packages: .ci/apt/identify-binary.txt.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from support.netns import Netns
from support.servers_text import Service, make_cert


def _daemon_dir(tmp: Path | None, user: str) -> Path:
    """A directory a daemon that drops root can use: owned by `user`, under /tmp itself.

    Not inside the caller's `tmp`: pytest keeps /tmp/pytest-of-root at mode 0700 (and a
    concurrent pytest run resets it), so an unprivileged daemon could not reach into it. The
    directory is linked from `tmp` (for logs when a test fails) and removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=f"pa-{user.strip('_')}-", dir="/tmp"))
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o755)
    atexit.register(shutil.rmtree, path, True)
    if tmp is not None:
        tmp = Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        link = tmp / f"daemon-dir-{path.name}"
        if not link.exists():
            link.symlink_to(path)
    return path


def _wait_for_udp(ns: Netns, probes: Sequence[tuple[int, bytes]], timeout: float = 15) -> None:
    """Block until something inside `ns` answers each (port, payload) on UDP at 127.0.0.1."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.2)\n"
        f"for port,payload in {list(probes)!r}:\n"
        "    while True:\n"
        "        try:\n"
        "            s.sendto(payload,('127.0.0.1',port)); s.recvfrom(4096); break\n"
        "        except OSError:\n"
        "            if time.monotonic()>end: sys.exit('udp port %d never answered' % port)\n"
        "            time.sleep(0.05)\n"
    )
    result = ns.run([sys.executable, "-c", code], check=False, timeout=timeout + 5)
    if result.returncode != 0:
        raise TimeoutError(f"netns {ns.name}: {result.stderr.strip()}")


def _wait_for_tcp(ns: Netns, ports: Sequence[int], timeout: float = 20) -> None:
    for port in ports:
        ns.wait_for_tcp(port, timeout=timeout)


def _started(procs: Sequence[tuple[subprocess.Popen, str, Path]], wait: Callable[[], None]) -> None:
    """Run `wait`; if it times out, report a daemon that died (with its log) instead."""
    try:
        wait()
    except TimeoutError:
        for proc, what, log in procs:
            if proc.poll() is not None:
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{what} exited with status {proc.returncode}: {detail}")
        raise


# ---- PostgreSQL -----------------------------------------------------------------------------

_PG_TEMPLATE: Path | None = None
PG_VERSION_FILE = "PG_VERSION"


def _pg_bin(tool: str) -> str:
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / tool).exists():
            return str(directory / tool)
    found = shutil.which(tool)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {tool} is not installed (Debian package postgresql)")
    return found


def _pg_template() -> Path:
    """initdb once per process and copy the cluster for each server."""
    global _PG_TEMPLATE
    if _PG_TEMPLATE is None or not _PG_TEMPLATE.exists():
        data = _daemon_dir(None, "postgres") / "data"
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(data),
                        "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                        "--locale=C.UTF-8"],
                       check=True, capture_output=True, timeout=120)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")
        _PG_TEMPLATE = data
    return _PG_TEMPLATE


def start_postgresql(ns: Netns, tmp: Path, ports: Sequence[int] = (5432, 103),
                     tls_ports: Sequence[int] = ()) -> Service:
    """One postgres per port (a cluster listens on a single port), as the postgres user.
    Ports also listed in `tls_ports` get ssl=on with a self-signed certificate."""
    tmp = _daemon_dir(tmp, "postgres")
    entry = pwd.getpwnam("postgres")
    tls_args: list[str] = []
    if tls_ports:
        cert, key = make_cert(tmp / "tls", cn="postgres.portatlas.test",
                              sans=("postgres.portatlas.test",))
        for path in (tmp / "tls", cert, key):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(key, 0o600)
        tls_args = ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]
    if min(ports) < 1024:
        # postgres never runs as root; let it bind low ports in this namespace only
        ns.run(["sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0"])
    procs = []
    for port in ports:
        data = tmp / f"pgdata-{port}"
        shutil.copytree(_pg_template(), data, symlinks=True)
        for path in [data, *data.rglob("*")]:
            os.lchown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(data, 0o700)
        log = tmp / f"postgres-{port}.log"
        proc = ns.popen(["runuser", "-u", "postgres", "--", _pg_bin("postgres"), "-D", str(data),
                         "-p", str(port), "-k", str(tmp), "-c", "listen_addresses=*",
                         "-c", "fsync=off", "-c", "logging_collector=off",
                         *(tls_args if port in tls_ports else [])],
                        stderr=open(log, "wb"))
        procs.append((proc, "postgres", log))
    _started(procs, lambda: _wait_for_tcp(ns, ports, timeout=30))
    major = (_pg_template() / PG_VERSION_FILE).read_text().strip()
    return Service("postgresql", "postgresql", "PostgreSQL", {p: "tcp" for p in ports},
                   tls_ports=tuple(p for p in ports if p in tls_ports), facts={"major": major})


# ---- Mosquitto ------------------------------------------------------------------------------

def start_mosquitto(ns: Netns, tmp: Path, ports: Sequence[int] = (1883, 8080)) -> Service:
    tmp = _daemon_dir(tmp, "mosquitto")
    conf = tmp / "mosquitto.conf"
    conf.write_text("".join(f"listener {port}\n" for port in ports)
                    + "allow_anonymous true\npersistence false\nlog_dest stderr\nuser mosquitto\n")
    log = tmp / "mosquitto.log"
    proc = ns.popen(["mosquitto", "-c", str(conf)], stderr=open(log, "wb"))
    _started([(proc, "mosquitto", log)], lambda: _wait_for_tcp(ns, ports))
    return Service("mosquitto", "mqtt", "Mosquitto", {p: "tcp" for p in ports})


# ---- dnsmasq --------------------------------------------------------------------------------

DNS_VERSION_BIND = (bytes.fromhex("50530000000100000000000007")
                    + b"version\x04bind\x00\x00\x10\x00\x03")


def start_dnsmasq(ns: Netns, tmp: Path, ports: Sequence[int] = (53, 5353)) -> Service:
    """dnsmasq as a DNS server only (no DHCP), one per port, answering from a tiny hosts file.
    Every port serves UDP and TCP; Service.ports lists UDP, facts['tcp_ports'] the same ports."""
    tmp = _daemon_dir(tmp, "nobody")
    hosts = tmp / "hosts"
    hosts.write_text("198.18.0.53 ns.portatlas.test\n")
    procs = []
    for port in ports:
        log = tmp / f"dnsmasq-{port}.log"
        proc = ns.popen(["dnsmasq", "-k", f"--port={port}", "--no-resolv", "--no-hosts",
                         f"--addn-hosts={hosts}", "--conf-file=/dev/null", "--pid-file=",
                         "--user=nobody", "--group=nogroup", "--log-facility=-"],
                        stderr=open(log, "wb"))
        procs.append((proc, "dnsmasq", log))

    def wait() -> None:
        _wait_for_udp(ns, [(port, DNS_VERSION_BIND) for port in ports])
        _wait_for_tcp(ns, ports)

    _started(procs, wait)
    return Service("dnsmasq", "dns", "dnsmasq", {p: "udp" for p in ports},
                   facts={"tcp_ports": tuple(ports)})


# ---- chrony ---------------------------------------------------------------------------------

NTP_CLIENT_REQUEST = b"\x23" + b"\x00" * 39 + b"portatls"


def start_chrony(ns: Netns, tmp: Path, ports: Sequence[int] = (123, 4123)) -> Service:
    """chronyd serving its local clock at stratum 10, one per port. -x: it never touches the
    clock, which the namespace shares with the host."""
    tmp = _daemon_dir(tmp, "_chrony")
    procs = []
    for port in ports:
        conf = tmp / f"chrony-{port}.conf"
        conf.write_text(f"port {port}\ncmdport 0\nallow all\nlocal stratum 10\n"
                        f"pidfile {tmp / f'chronyd-{port}.pid'}\n")
        log = tmp / f"chronyd-{port}.log"
        proc = ns.popen(["chronyd", "-d", "-x", "-u", "_chrony", "-f", str(conf)],
                        stderr=open(log, "wb"))
        procs.append((proc, "chronyd", log))
    _started(procs, lambda: _wait_for_udp(ns, [(p, NTP_CLIENT_REQUEST) for p in ports]))
    return Service("chrony", "ntp", "chrony", {p: "udp" for p in ports})


# ---- snmpd ----------------------------------------------------------------------------------

def _snmp_v3_discovery() -> bytes:
    from portatlas.identify.protocols.snmp import build_v3_discovery

    return build_v3_discovery(0x5041, 0x5054)


def start_snmpd(ns: Netns, tmp: Path, ports: Sequence[int] = (161, 1161)) -> Service:
    tmp = _daemon_dir(tmp, "Debian-snmp")
    conf = tmp / "snmpd.conf"
    conf.write_text("rocommunity public default\nrocommunity6 public default\n"
                    "sysLocation portatlas test namespace\nsysContact nobody@portatlas.test\n")
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(tmp / "persist"), MIBS="",
               MIBDIRS="/nonexistent")
    log = tmp / "snmpd.log"
    listen = ",".join(f"udp:{p},udp6:{p}" for p in ports)
    proc = ns.popen(["snmpd", "-f", "-C", "-c", str(conf), "-Lf", str(log), "-u", "Debian-snmp",
                     "-g", "Debian-snmp", listen], env=env)
    _started([(proc, "snmpd", log)],
             lambda: _wait_for_udp(ns, [(p, _snmp_v3_discovery()) for p in ports]))
    return Service("snmpd", "snmp", "Net-SNMP", {p: "udp" for p in ports})


# ---- memcached over UDP ---------------------------------------------------------------------

MEMCACHED_UDP_VERSION = b"\x50\x41\x00\x00\x00\x01\x00\x00version\r\n"


def start_memcached_udp(ns: Netns, tmp: Path, ports: Sequence[int] = (11211, 11311)) -> Service:
    """memcached answering UDP (and TCP) on every port. With -l ADDR:PORT, memcached binds its
    UDP sockets to the -l ports; -U only has to be non-zero to switch UDP on."""
    tmp = _daemon_dir(tmp, "memcache")
    listen = ",".join(f"0.0.0.0:{p}" for p in ports)
    log = tmp / "memcached.log"
    proc = ns.popen(["memcached", "-u", "memcache", "-m", "16", "-c", "64", "-l", listen,
                     "-U", str(ports[0])], stderr=open(log, "wb"))
    _started([(proc, "memcached", log)],
             lambda: _wait_for_udp(ns, [(p, MEMCACHED_UDP_VERSION) for p in ports]))
    return Service("memcached-udp", "memcached", "memcached", {p: "udp" for p in ports})


SERVERS: dict[str, Callable[..., Service]] = {
    "postgresql": start_postgresql,
    "mosquitto": start_mosquitto,
    "dnsmasq": start_dnsmasq,
    "chrony": start_chrony,
    "snmpd": start_snmpd,
    "memcached-udp": start_memcached_udp,
}
