"""More real servers (Debian packages) for the identification lab of issue 11.

Daemons the other test files do not use: each start function writes a private configuration
into `tmp`, runs the daemon in the foreground inside a Netns (ns.popen, so Netns.close() ends
it with the namespace), listening on the ports it is given, and returns once every port
answers (TimeoutError / RuntimeError otherwise). Nothing listens in the root namespace.

    start_<name>(ns: Netns, tmp: Path, **ports) -> None

The ground truth (which port runs what, in nmap's vocabulary) is in support.lab_nmap; the
Debian packages are listed in .ci/apt/identify-lab.txt. Daemons that drop root get their
directory from servers_binary._daemon_dir (owned by their user, under /tmp).

    start_dropbear    SSH                 start_cupsd      IPP          start_krb5kdc  Kerberos
    start_lighttpd    HTTP                start_slapd      LDAP, LDAPS  start_freeradius RADIUS
    start_squid       HTTP proxy          start_mariadb    MySQL        start_openvpn  OpenVPN
    start_tinyproxy   HTTP proxy          start_bind9      DNS          start_inspircd IRC
    start_dante       SOCKS5              start_unbound    DNS          start_inetd    echo,
    start_beanstalkd  job queue           start_knot       DNS            daytime, time, gopher,
    start_nats        message queue       start_tftpd      TFTP           finger
    start_gearmand    job queue           start_coturn     STUN/TURN    start_oidentd  ident
    start_git_daemon  git                 start_rpcbind    ONC RPC      start_pgbouncer pooler
    start_svnserve    Subversion          start_epmd       Erlang       start_stunnel  TLS in
    start_distccd     distcc                                              front of others
"""

from __future__ import annotations

import os
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


# ---- CUPS (IPP) -------------------------------------------------------------------------------

def start_cupsd(ns: Netns, tmp: Path, ports: Sequence[int] = (631, 8631)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for sub in ("cache", "state", "spool", "tmp", "log", "ppd", "ssl"):
        (tmp / sub).mkdir(exist_ok=True)
    (tmp / "cupsd.conf").write_text(
        "".join(f"Listen 0.0.0.0:{p}\n" for p in ports)
        + "LogLevel warn\nBrowsing Off\nWebInterface Yes\nDefaultAuthType None\n"
        "ServerAlias *\n<Location />\n  Order allow,deny\n  Allow all\n</Location>\n")
    (tmp / "cups-files.conf").write_text(
        f"ServerRoot {tmp}\nCacheDir {tmp}/cache\nStateDir {tmp}/state\n"
        f"RequestRoot {tmp}/spool\nTempDir {tmp}/tmp\nErrorLog {tmp}/log/error_log\n"
        f"AccessLog {tmp}/log/access_log\nPageLog {tmp}/log/page_log\n"
        f"ServerKeychain {tmp}/ssl\n"
        "User lp\nGroup lp\nSystemGroup root\nFileDevice No\n")
    proc = ns.popen(["cupsd", "-f", "-c", str(tmp / "cupsd.conf"),
                     "-s", str(tmp / "cups-files.conf")], stderr=_log(tmp, "stderr"))
    _alive(proc, "cupsd", tmp / "stderr", wait=0.3)
    wait_ports(ns, ports)


# ---- OpenLDAP slapd ---------------------------------------------------------------------------

def start_slapd(ns: Netns, tmp: Path, ports: Sequence[int] = (389, 3389),
                ldaps_port: int | None = 636) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "db").mkdir(exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="ldap.lab.test", sans=("ldap.lab.test",))
    (tmp / "slapd.conf").write_text(f"""include /etc/ldap/schema/core.schema
pidfile {tmp}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 10485760
suffix "dc=lab,dc=test"
rootdn "cn=admin,dc=lab,dc=test"
directory {tmp}/db
""")
    urls = [f"ldap://0.0.0.0:{p}/" for p in ports]
    if ldaps_port:
        urls.append(f"ldaps://0.0.0.0:{ldaps_port}/")
    proc = ns.popen(["slapd", "-d", "0", "-f", str(tmp / "slapd.conf"), "-h", " ".join(urls)],
                    stderr=_log(tmp, "log"))
    _alive(proc, "slapd", tmp / "log", wait=0.3)
    wait_ports(ns, [*ports, *([ldaps_port] if ldaps_port else [])])


# ---- MariaDB ----------------------------------------------------------------------------------

def start_mariadb(ns: Netns, tmp: Path, port: int = 3306, extra_port: int | None = 3307) -> None:
    tmp = _daemon_dir(tmp, "mysql")
    data = tmp / "data"
    subprocess.run(["runuser", "-u", "mysql", "--", "mariadb-install-db", "--no-defaults",
                    f"--datadir={data}", "--skip-test-db",
                    "--auth-root-authentication-method=normal"],
                   check=True, capture_output=True, timeout=120)
    extra = [f"--extra-port={extra_port}"] if extra_port else []
    proc = ns.popen(["runuser", "-u", "mysql", "--", "mariadbd", "--no-defaults",
                     f"--datadir={data}", f"--port={port}", "--bind-address=0.0.0.0",
                     f"--socket={tmp}/mysqld.sock", f"--pid-file={tmp}/mysqld.pid",
                     "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve",
                     f"--log-error={tmp}/error.log", *extra])
    _alive(proc, "mariadbd", tmp / "error.log", wait=0.3)
    wait_ports(ns, [port, *([extra_port] if extra_port else [])], timeout=40)


# ---- DNS servers: BIND, Unbound, Knot -----------------------------------------------------------

def dns_query(name: str = "version.bind", qtype: int = 16, qclass: int = 3) -> bytes:
    """A DNS query (id 0x5041, recursion desired) for `name` (TXT/CH by default)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    return b"\x50\x41\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + \
        qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big")


def start_bind9(ns: Netns, tmp: Path, port: int = 53) -> None:
    tmp = _daemon_dir(tmp, "bind")
    (tmp / "lab.test.zone").write_text(
        "$TTL 300\n@ IN SOA ns.lab.test. admin.lab.test. 1 3600 600 86400 300\n"
        "@ IN NS ns.lab.test.\nns IN A 198.18.0.53\n")
    (tmp / "named.conf").write_text(f"""options {{
    directory "{tmp}";
    listen-on port {port} {{ any; }};
    listen-on-v6 {{ none; }};
    pid-file none;
    recursion no;
    dnssec-validation no;
    session-keyfile none;
}};
zone "lab.test" {{ type primary; file "{tmp}/lab.test.zone"; }};
""")
    proc = ns.popen(["named", "-g", "-n", "1", "-u", "bind", "-c", str(tmp / "named.conf")],
                    stderr=_log(tmp, "log"))
    _alive(proc, "named", tmp / "log", wait=0.3)
    wait_udp(ns, [(port, dns_query())])
    wait_ports(ns, [port])


def start_unbound(ns: Netns, tmp: Path, port: int = 5300) -> None:
    tmp = _daemon_dir(tmp, "unbound")
    (tmp / "unbound.conf").write_text(f"""server:
    interface: 0.0.0.0
    port: {port}
    do-ip6: no
    chroot: ""
    username: "unbound"
    directory: "{tmp}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 0.0.0.0/0 allow
    module-config: "iterator"
    num-threads: 1
    local-zone: "lab.test." static
    local-data: "ns.lab.test. A 198.18.0.53"
remote-control:
    control-enable: no
""")
    proc = ns.popen(["unbound", "-d", "-c", str(tmp / "unbound.conf")], stderr=_log(tmp, "log"))
    _alive(proc, "unbound", tmp / "log", wait=0.3)
    wait_udp(ns, [(port, dns_query())])
    wait_ports(ns, [port])


def start_knot(ns: Netns, tmp: Path, port: int = 1053) -> None:
    tmp = _daemon_dir(tmp, "knot")
    (tmp / "lab.test.zone").write_text(
        "$TTL 300\n@ IN SOA ns.lab.test. admin.lab.test. 1 3600 600 86400 300\n"
        "@ IN NS ns.lab.test.\nns IN A 198.18.0.53\n")
    (tmp / "knot.conf").write_text(f"""server:
    listen: 0.0.0.0@{port}
    rundir: "{tmp}"
    user: knot:knot
    identity: ns.lab.test
    version: ""
log:
  - target: stderr
    any: error
database:
    storage: "{tmp}"
template:
  - id: default
    storage: "{tmp}"
zone:
  - domain: lab.test
    file: "{tmp}/lab.test.zone"
""")
    proc = ns.popen(["knotd", "-c", str(tmp / "knot.conf")], stderr=_log(tmp, "log"))
    _alive(proc, "knotd", tmp / "log", wait=0.3)
    wait_udp(ns, [(port, dns_query("lab.test", 6, 1))])
    wait_ports(ns, [port])


# ---- TFTP -------------------------------------------------------------------------------------

TFTP_READ = b"\x00\x01lab-missing-file\x00octet\x00"


def start_tftpd(ns: Netns, tmp: Path, ports: Sequence[int] = (69, 6969)) -> None:
    tmp = _daemon_dir(tmp, "nobody")
    (tmp / "root").mkdir(exist_ok=True)
    for port in ports:
        proc = ns.popen(["in.tftpd", "-L", "-4", "-u", "nobody", "-s", str(tmp / "root"),
                         "-a", f":{port}"], stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "in.tftpd", tmp / f"log-{port}")
    wait_udp(ns, [(p, TFTP_READ) for p in ports])


# ---- STUN/TURN (coturn) -----------------------------------------------------------------------

STUN_BINDING = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"portatlas-lb"


def start_coturn(ns: Netns, tmp: Path, port: int = 3478) -> None:
    tmp = _daemon_dir(tmp, "turnserver")
    proc = ns.popen(["turnserver", "-n", "--listening-ip", "0.0.0.0", "--listening-port",
                     str(port), "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout",
                     "--simple-log", "--pidfile", str(tmp / "pid"), "--realm", "lab.test",
                     "--proc-user", "turnserver", "--proc-group", "turnserver",
                     "--relay-threads", "1", "--no-stun-backward-compatibility"],
                    stdout=_log(tmp, "log"))
    _alive(proc, "turnserver", tmp / "log", wait=0.3)
    wait_udp(ns, [(port, STUN_BINDING)])
    wait_ports(ns, [port])


# ---- rpcbind ----------------------------------------------------------------------------------

RPC_NULL = (b"\x50\x41\x50\x54" b"\x00\x00\x00\x00" b"\x00\x00\x00\x02" b"\x00\x01\x86\xa0"
            b"\x00\x00\x00\x02" b"\x00\x00\x00\x00" + b"\x00" * 16)


def start_rpcbind(ns: Netns, tmp: Path) -> None:
    """rpcbind on 111 (TCP and UDP). It insists on /run/rpcbind.sock and /run/rpcbind.lock:
    a private mount namespace with its own /run keeps those off the host."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc = ns.popen(["unshare", "-m", "sh", "-c",
                     "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/rpcbind && "
                     "exec rpcbind -f -w"], stderr=_log(tmp, "log"))
    _alive(proc, "rpcbind", tmp / "log", wait=0.3)
    wait_udp(ns, [(111, RPC_NULL)])
    wait_ports(ns, [111])


# ---- Kerberos KDC (MIT) -----------------------------------------------------------------------

def start_krb5kdc(ns: Netns, tmp: Path, port: int = 88) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    realm = "LAB.TEST"
    (tmp / "krb5.conf").write_text(
        f"[libdefaults]\n default_realm = {realm}\n"
        f"[realms]\n {realm} = {{\n  kdc = 127.0.0.1\n }}\n")
    (tmp / "kdc.conf").write_text(f"""[kdcdefaults]
 kdc_ports = {port}
 kdc_tcp_ports = {port}
[realms]
 {realm} = {{
  database_name = {tmp}/principal
  key_stash_file = {tmp}/stash
  acl_file = {tmp}/kadm5.acl
 }}
[logging]
 kdc = FILE:{tmp}/kdc.log
""")
    env = dict(os.environ, KRB5_CONFIG=str(tmp / "krb5.conf"),
               KRB5_KDC_PROFILE=str(tmp / "kdc.conf"))
    if not (tmp / "principal").exists():
        subprocess.run(["kdb5_util", "create", "-s", "-r", realm, "-P", "lab-master-key"],
                       check=True, capture_output=True, env=env, timeout=60)
    proc = ns.popen(["krb5kdc", "-n", "-r", realm, "-P", str(tmp / "pid")], env=env,
                    stderr=_log(tmp, "stderr"))
    _alive(proc, "krb5kdc", tmp / "stderr", wait=0.3)
    wait_ports(ns, [port])


# ---- FreeRADIUS -------------------------------------------------------------------------------

def radius_request(secret: bytes = b"lab-secret") -> bytes:
    """An Access-Request for user 'lab' (no password: the server answers Access-Reject)."""
    user = b"lab"
    attrs = bytes([1, 2 + len(user)]) + user
    return bytes([1, 0x41]) + (20 + len(attrs)).to_bytes(2, "big") + b"portatlas-lab-ra" + attrs


def start_freeradius(ns: Netns, tmp: Path, ports: Sequence[int] = (1812, 1813)) -> None:
    """A minimal radiusd.conf written from scratch: every client, every request rejected."""
    tmp = _daemon_dir(tmp, "freerad")
    auth, acct = ports
    (tmp / "radiusd.conf").write_text(f"""prefix = /usr
raddbdir = {tmp}
confdir = {tmp}
logdir = {tmp}
run_dir = {tmp}
libdir = /usr/lib/freeradius
pidfile = {tmp}/radiusd.pid
max_request_time = 5
log {{
    destination = stderr
}}
security {{
    allow_core_dumps = no
}}
thread pool {{
    start_servers = 1
    max_servers = 2
    min_spare_servers = 1
    max_spare_servers = 2
}}
client any {{
    ipaddr = 0.0.0.0/0
    secret = lab-secret
    require_message_authenticator = no
}}
modules {{
    always reject {{
        rcode = reject
    }}
    always ok {{
        rcode = ok
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = *
        port = {auth}
    }}
    listen {{
        type = acct
        ipaddr = *
        port = {acct}
    }}
    authorize {{
        reject
    }}
    authenticate {{
    }}
    preacct {{
        ok
    }}
    accounting {{
        ok
    }}
}}
""")
    proc = ns.popen(["freeradius", "-f", "-l", "stdout", "-d", str(tmp)],
                    stdout=_log(tmp, "log"), stderr=subprocess.STDOUT)
    _alive(proc, "freeradius", tmp / "log", wait=0.5)
    wait_udp(ns, [(auth, radius_request())])


# ---- OpenVPN (TLS mode, no tunnel device) -------------------------------------------------------

OPENVPN_HARD_RESET = b"\x38" + b"portatls" + b"\x00" + b"\x00\x00\x00\x00"


def start_openvpn(ns: Netns, tmp: Path, port: int = 1194) -> None:
    """Two openvpn servers on `port`: UDP and TCP, in TLS server mode (many clients). The tap
    device each needs is created inside the namespace and dies with it; nothing is routed."""
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="vpn.lab.test", sans=("vpn.lab.test",))
    common = ["openvpn", "--mode", "server", "--dev", "tap", "--tls-server", "--ca", str(cert),
              "--cert", str(cert), "--key", str(key), "--dh", "none", "--verb", "1",
              "--lport", str(port), "--user", "nobody", "--group", "nogroup"]
    procs = []
    for proto in ("udp4", "tcp4-server"):
        log = tmp / f"{proto}.log"
        procs.append((ns.popen([*common, "--proto", proto, "--log", str(log)]), log))
    for proc, log in procs:
        _alive(proc, "openvpn", log, wait=0.3)
    wait_ports(ns, [port])
    wait_udp(ns, [(port, OPENVPN_HARD_RESET)])


# ---- InspIRCd ---------------------------------------------------------------------------------

def start_inspircd(ns: Netns, tmp: Path, ports: Sequence[int] = (6667, 6000)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    binds = "".join(f'<bind address="" port="{p}" type="clients">\n' for p in ports)
    (tmp / "inspircd.conf").write_text(f"""\
<server name="irc.lab.test" description="lab IRC" network="LabNet">
<admin name="lab" nick="lab" email="lab@lab.test">
{binds}<connect allow="*" timeout="60" localmax="200" globalmax="200" limit="500" maxconnwarn="off">
<class name="users" commands="*">
<type name="none" classes="users">
<pid file="{tmp}/inspircd.pid">
<files motd="{tmp}/motd">
<dns timeout="1">
<options prefixquit="Quit: " allowcoreunload="no">
<security hidesplits="no">
<performance softlimit="1024" somaxconn="128">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{tmp}/ircd.log">
<path configdir="{tmp}" datadir="{tmp}" logdir="{tmp}" runtimedir="{tmp}">
""")
    (tmp / "motd").write_text("lab IRC server\n")
    proc = ns.popen(["inspircd", "--nofork", "--runasroot", f"--config={tmp}/inspircd.conf"],
                    stdout=_log(tmp, "stdout"))
    _alive(proc, "inspircd", tmp / "stdout", wait=0.5)
    wait_ports(ns, ports)


# ---- inetd (internal echo/daytime/time) with gophernicus and fingerd behind it --------------

def start_inetd(ns: Netns, tmp: Path, gopher_port: int = 70, finger_port: int = 79) -> None:
    tmp = _daemon_dir(tmp, "nobody")
    gopher = tmp / "gopher"
    gopher.mkdir(exist_ok=True)
    (gopher / "gophermap").write_text("ilab gopher hole\n0readme\treadme.txt\n")
    (gopher / "readme.txt").write_text("lab\n")
    (tmp / "inetd.conf").write_text(
        "echo stream tcp nowait root internal\n"
        "echo dgram udp wait root internal\n"
        "daytime stream tcp nowait root internal\n"
        "daytime dgram udp wait root internal\n"
        "time stream tcp nowait root internal\n"
        "time dgram udp wait root internal\n"
        f"{gopher_port} stream tcp nowait nobody /usr/sbin/gophernicus gophernicus "
        f"-h gopher.lab.test -r {gopher} -nf -nv\n"
        f"{finger_port} stream tcp nowait nobody /usr/sbin/in.fingerd in.fingerd\n")
    proc = ns.popen(["inetd", "-d", str(tmp / "inetd.conf")], stderr=_log(tmp, "log"))
    _alive(proc, "inetd", tmp / "log", wait=0.3)
    # (its UDP services ignore datagrams from loopback addresses, so only TCP is awaited)
    wait_ports(ns, [7, 13, 37, gopher_port, finger_port])


# ---- oidentd (ident) --------------------------------------------------------------------------

def start_oidentd(ns: Netns, tmp: Path, ports: Sequence[int] = (113, 1130)) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for port in ports:
        proc = ns.popen(["oidentd", "-i", "-S", "-a", "0.0.0.0", "-p", str(port),
                         "-u", "nobody", "-g", "nogroup"], stderr=_log(tmp, f"log-{port}"))
        _alive(proc, "oidentd", tmp / f"log-{port}")
    wait_ports(ns, ports)


# ---- PgBouncer --------------------------------------------------------------------------------

def start_pgbouncer(ns: Netns, tmp: Path, port: int = 6432) -> None:
    """PgBouncer with no reachable backend: it still answers the startup and SSL requests."""
    tmp = _daemon_dir(tmp, "postgres")
    (tmp / "users.txt").write_text('"lab" "lab"\n')
    (tmp / "pgbouncer.ini").write_text(f"""[databases]
lab = host=127.0.0.1 port=5999 dbname=lab
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp}/users.txt
logfile = {tmp}/pgbouncer.log
pidfile = {tmp}/pgbouncer.pid
""")
    proc = ns.popen(["runuser", "-u", "postgres", "--", "pgbouncer", str(tmp / "pgbouncer.ini")],
                    stderr=_log(tmp, "stderr"))
    _alive(proc, "pgbouncer", tmp / "stderr", wait=0.3)
    wait_ports(ns, [port])


# ---- stunnel: TLS in front of other lab services ------------------------------------------------

def start_stunnel(ns: Netns, tmp: Path, tunnels: Sequence[tuple[int, int]] = ((4443, 80),
                                                                            (3692, 3690))) -> None:
    """stunnel accepting TLS on each (port, plain port) and forwarding to 127.0.0.1:plain
    (the lab's own plain-text services)."""
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="tls.lab.test", sans=("tls.lab.test",))
    body = "".join(f"[t{accept}]\naccept = 0.0.0.0:{accept}\nconnect = 127.0.0.1:{plain}\n"
                   for accept, plain in tunnels)
    (tmp / "stunnel.conf").write_text(f"foreground = yes\npid =\ncert = {cert}\nkey = {key}\n"
                                      f"output = {tmp}/stunnel.log\n{body}")
    proc = ns.popen(["stunnel4", str(tmp / "stunnel.conf")], stderr=_log(tmp, "stderr"))
    _alive(proc, "stunnel", tmp / "stderr", wait=0.3)
    wait_ports(ns, [accept for accept, _ in tunnels])
