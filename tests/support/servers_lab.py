"""More real servers (Debian packages) for the identification lab of issue 11.

Daemons the other test files do not use: each start function writes a private configuration
into `tmp`, runs the daemon in the foreground inside a Netns (ns.popen, so Netns.close() ends
it with the namespace), listening on the ports it is given, and returns once every port
answers (TimeoutError / RuntimeError otherwise). Nothing listens in the root namespace.

    start_<name>(ns: Netns, tmp: Path, **ports) -> None

The ground truth (which port runs what, in nmap's vocabulary) is in support.lab_nmap; the
Debian packages are listed in .ci/apt/identify-lab.txt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from support.netns import Netns
from support.servers_binary import _daemon_dir
from support.servers_text import make_cert, wait_ports


def _alive(proc: subprocess.Popen, what: str, log: Path | None = None, wait: float = 0.1) -> None:
    time.sleep(wait)
    if proc.poll() is not None:
        detail = log.read_text(errors="replace")[-1500:] if log and log.exists() else ""
        raise RuntimeError(f"{what} exited at start (code {proc.returncode}) {detail}")


def _log(tmp: Path, name: str):
    return open(tmp / name, "wb")


def wait_udp(ns: Netns, probes: Sequence[tuple[int, bytes]], timeout: float = 20) -> None:
    """Block until each (port, payload) gets a UDP reply at 127.0.0.1 inside `ns`."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        f"for port,payload in {list(probes)!r}:\n"
        "    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.3)\n"
        "    while True:\n"
        "        try:\n"
        "            s.sendto(payload,('127.0.0.1',port)); s.recvfrom(4096); break\n"
        "        except OSError:\n"
        "            if time.monotonic()>end: sys.exit('udp port %d never answered' % port)\n"
        "            time.sleep(0.1)\n"
    )
    result = ns.run([sys.executable, "-c", code], check=False, timeout=timeout + 5)
    if result.returncode != 0:
        raise TimeoutError(f"netns {ns.name}: {result.stderr.strip()}")


def _low_ports(ns: Netns) -> None:
    """Let daemons that never run as root bind ports below 1024, in this namespace only."""
    ns.run(["sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0"])


# ---- Dropbear (SSH) -------------------------------------------------------------------------

def start_dropbear(ns: Netns, tmp: Path, ports: Sequence[int] = (22, 2222)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    key = tmp / "dropbear_ed25519"
    if not key.exists():
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True,
                       capture_output=True)
    args = []
    for port in ports:
        args += ["-p", str(port)]
    proc = ns.popen(["dropbear", "-F", "-E", "-s", "-r", str(key), "-P", str(tmp / "pid"),
                     *args], stderr=_log(tmp, "log"))
    _alive(proc, "dropbear", tmp / "log")
    wait_ports(ns, ports)


# ---- lighttpd (HTTP) ------------------------------------------------------------------------

def start_lighttpd(ns: Netns, tmp: Path, ports: Sequence[int] = (80, 8008)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    root = tmp / "html"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text("<html><head><title>lab lighttpd</title></head>"
                                     "<body>lab</body></html>\n")
    extra = "".join(f'$SERVER["socket"] == ":{p}" {{ }}\n' for p in ports[1:])
    cfg = tmp / "lighttpd.conf"
    cfg.write_text(f'server.document-root = "{root}"\nserver.port = {ports[0]}\n'
                   f'server.errorlog = "{tmp}/error.log"\nserver.pid-file = "{tmp}/pid"\n'
                   'index-file.names = ( "index.html" )\n'
                   'mimetype.assign = ( ".html" => "text/html" )\n' + extra)
    proc = ns.popen(["lighttpd", "-D", "-f", str(cfg)], stderr=_log(tmp, "stderr"))
    _alive(proc, "lighttpd", tmp / "stderr")
    wait_ports(ns, ports)


# ---- Squid and tinyproxy (HTTP proxies) -------------------------------------------------------

def start_squid(ns: Netns, tmp: Path, ports: Sequence[int] = (3128, 10080)) -> None:
    tmp = _daemon_dir(tmp, "proxy")
    cfg = tmp / "squid.conf"
    cfg.write_text("".join(f"http_port {p}\n" for p in ports) + f"""
pid_filename {tmp}/squid.pid
cache_log {tmp}/cache.log
access_log none
cache deny all
cache_mem 8 MB
cache_dir null /tmp
coredump_dir {tmp}
http_access deny all
visible_hostname proxy.lab.test
cache_effective_user proxy
dns_nameservers 127.0.0.1
workers 1
shutdown_lifetime 0 seconds
""")
    proc = ns.popen(["squid", "-N", "-f", str(cfg)], stderr=_log(tmp, "stderr"))
    _alive(proc, "squid", tmp / "cache.log", wait=0.3)
    wait_ports(ns, ports, timeout=30)


def start_tinyproxy(ns: Netns, tmp: Path, port: int = 8888) -> None:
    tmp = _daemon_dir(tmp, "tinyproxy")
    cfg = tmp / "tinyproxy.conf"
    cfg.write_text(f"User tinyproxy\nGroup tinyproxy\nPort {port}\nTimeout 60\n"
                   f"LogLevel Error\nLogFile \"{tmp}/log\"\nMaxClients 50\n"
                   "Allow 0.0.0.0/0\nViaProxyName \"tinyproxy\"\n")
    proc = ns.popen(["tinyproxy", "-d", "-c", str(cfg)], stderr=_log(tmp, "stderr"))
    _alive(proc, "tinyproxy", tmp / "stderr")
    wait_ports(ns, [port])


# ---- Dante (SOCKS) --------------------------------------------------------------------------

def start_dante(ns: Netns, tmp: Path, ports: Sequence[int] = (1080, 1081)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "danted.conf"
    cfg.write_text("logoutput: stderr\n"
                   + "".join(f"internal: 0.0.0.0 port = {p}\n" for p in ports)
                   + "external: lo\nsocksmethod: none\nclientmethod: none\n"
                   "user.privileged: root\nuser.unprivileged: nobody\n"
                   "client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }\n"
                   "socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }\n")
    proc = ns.popen(["danted", "-f", str(cfg), "-p", str(tmp / "pid"), "-N", "1"],
                    stderr=_log(tmp, "log"))
    _alive(proc, "danted", tmp / "log", wait=0.3)
    wait_ports(ns, ports)


# ---- job and message queues -------------------------------------------------------------------

def start_beanstalkd(ns: Netns, tmp: Path, ports: Sequence[int] = (11300, 9000)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for port in ports:
        proc = ns.popen(["beanstalkd", "-l", "0.0.0.0", "-p", str(port), "-u", "nobody"],
                        stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "beanstalkd", tmp / f"log-{port}")
    wait_ports(ns, ports)


def start_nats(ns: Netns, tmp: Path, ports: Sequence[int] = (4222, 7422)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for port in ports:
        proc = ns.popen(["nats-server", "-a", "0.0.0.0", "-p", str(port), "-n", f"lab-{port}"],
                        stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "nats-server", tmp / f"log-{port}")
    wait_ports(ns, ports)


def start_gearmand(ns: Netns, tmp: Path, port: int = 4730) -> None:
    tmp = _daemon_dir(tmp, "gearman")
    proc = ns.popen(["gearmand", "-L", "0.0.0.0", "-p", str(port), "-u", "gearman",
                     "-l", str(tmp / "log"), "--pid-file", str(tmp / "pid"), "-t", "1"],
                    stderr=_log(tmp, "stderr"))
    _alive(proc, "gearmand", tmp / "stderr")
    wait_ports(ns, [port])


# ---- version control --------------------------------------------------------------------------

def start_git_daemon(ns: Netns, tmp: Path, ports: Sequence[int] = (9418, 9419)) -> None:
    repos = tmp / "repos"
    (repos / "lab.git").mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", str(repos / "lab.git")], check=True)
    for port in ports:
        proc = ns.popen(["git", "daemon", "--reuseaddr", f"--port={port}", "--listen=0.0.0.0",
                         f"--base-path={repos}", "--export-all", "--user=nobody",
                         "--group=nogroup", str(repos)], stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "git daemon", tmp / f"log-{port}")
    wait_ports(ns, ports)


def start_svnserve(ns: Netns, tmp: Path, ports: Sequence[int] = (3690, 3691)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    repo = tmp / "repo"
    if not repo.exists():
        subprocess.run(["svnadmin", "create", str(repo)], check=True, capture_output=True)
    for port in ports:
        proc = ns.popen(["svnserve", "-d", "--foreground", "-r", str(repo),
                         "--listen-host", "0.0.0.0", "--listen-port", str(port)],
                        stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "svnserve", tmp / f"log-{port}")
    wait_ports(ns, ports)


# ---- Erlang port mapper -----------------------------------------------------------------------

def start_epmd(ns: Netns, tmp: Path, ports: Sequence[int] = (4369, 4370)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for port in ports:
        proc = ns.popen(["epmd", "-port", str(port)], stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "epmd", tmp / f"log-{port}")
    wait_ports(ns, ports)


# ---- distcc -----------------------------------------------------------------------------------

def start_distccd(ns: Netns, tmp: Path, port: int = 3632) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    proc = ns.popen(["distccd", "--no-detach", "--daemon", "--port", str(port),
                     "--allow", "0.0.0.0/0", "--listen", "0.0.0.0", "--user", "nobody",
                     "--log-stderr", "--jobs", "2"], stderr=_log(tmp, "log"))
    _alive(proc, "distccd", tmp / "log")
    wait_ports(ns, [port])
