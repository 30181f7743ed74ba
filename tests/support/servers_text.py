"""Real servers from Debian packages for the identification tests and benchmark.

Each start function writes a private configuration into a temporary directory and runs the
daemon in the foreground inside a Netns (as root, without systemd), listening on the ports it
is given: the standard one and unexpected ones. It returns once every port accepts.

Nothing here touches this machine's own network: the daemons live in the namespace and die
with it. A few daemons insist on a run-time directory of the host file system (/run/sshd,
/run/dovecot's base_dir is redirected); those are created empty if missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from support.netns import Netns


@dataclass
class Service:
    """A running test server and the truth about it (for assertions and the benchmark)."""

    name: str
    protocol: str                 # what portatlas should report
    product: str | None           # product name portatlas should report
    ports: dict[int, str]         # port -> "tcp"/"udp"
    tls_ports: tuple[int, ...] = ()
    facts: dict = field(default_factory=dict)


def wait_ports(ns: Netns, ports: Sequence[int], host: str = "127.0.0.1", timeout: float = 20) -> None:
    """Block until every TCP port accepts inside the namespace (one subprocess for all)."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        f"for p in {list(ports)!r}:\n"
        "    while True:\n"
        "        try:\n"
        f"            socket.create_connection(({host!r},p),timeout=0.5).close(); break\n"
        "        except OSError:\n"
        "            if time.monotonic()>end: sys.exit('port %d never opened' % p)\n"
        "            time.sleep(0.05)\n"
    )
    result = ns.run([sys.executable, "-c", code], check=False, timeout=timeout + 10)
    if result.returncode != 0:
        raise TimeoutError(f"netns {ns.name}: {result.stderr.strip()}")


def _check_alive(proc: subprocess.Popen, what: str, log: Path | None = None) -> None:
    time.sleep(0.05)
    if proc.poll() is not None:
        detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} exited at start (code {proc.returncode}) {detail}")


def make_cert(directory: Path, cn: str = "portatlas.test", sans: Sequence[str] = ("portatlas.test",),
              days: int = 30, expired: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate made by the test; returns (cert, key) paths (PEM).

    `expired` dates it 2020-01-01..2020-02-01, so it ended long ago."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "portatlas tests")])
    if expired:
        start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
        end = datetime.datetime(2020, 2, 1, tzinfo=datetime.timezone.utc)
    else:
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        end = start + datetime.timedelta(days=days)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


# --- OpenSSH ------------------------------------------------------------------------------
def start_ssh(ns: Netns, tmp: Path, ports: Sequence[int] = (22, 103)) -> Service:
    tmp.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation directory
    keys = []
    for kind in ("ed25519", "ecdsa", "rsa"):
        key = tmp / f"host_{kind}"
        if not key.exists():
            extra = ["-b", "2048"] if kind == "rsa" else []
            subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(key)],
                           check=True, capture_output=True)
        keys.append(key)
    cfg = tmp / "sshd_config"
    lines = [f"Port {p}" for p in ports] + [f"HostKey {k}" for k in keys] + [
        "PidFile none", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin no", "MaxStartups 100", "LoginGraceTime 10", "StrictModes no"]
    cfg.write_text("\n".join(lines) + "\n")
    proc = ns.popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)])
    _check_alive(proc, "sshd")
    wait_ports(ns, ports)
    return Service("openssh", "ssh", "OpenSSH", {p: "tcp" for p in ports},
                   facts={"host_keys": {"ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"}})


# --- nginx --------------------------------------------------------------------------------
def start_nginx(ns: Netns, tmp: Path, http_ports: Sequence[int] = (80, 57),
                https_ports: Sequence[int] = (443, 8443), h2c_ports: Sequence[int] = (),
                expired_port: int | None = None) -> Service:
    """nginx: the test page on every port; HTTP/2 (ALPN h2) on the HTTPS ports, HTTP/2 with
    prior knowledge on `h2c_ports`, and an expired certificate on `expired_port`."""
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="www.portatlas.test",
                          sans=("www.portatlas.test", "portatlas.test"))
    root = tmp / "html"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text(
        "<!DOCTYPE html><html><head><title>portatlas test page</title></head>"
        "<body><p>hello</p></body></html>\n")
    temp_paths = "".join(f"    {kind}_temp_path {tmp}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    listen = "".join(f"        listen {p};\n" for p in http_ports)
    listen += "".join(f"        listen {p} ssl http2;\n" for p in https_ports)
    listen += "".join(f"        listen {p} http2;\n" for p in h2c_ports)
    expired_server = ""
    if expired_port:
        old_cert, old_key = make_cert(tmp / "old", cn="old.portatlas.test",
                                      sans=("old.portatlas.test",), expired=True)
        expired_server = (f"    server {{\n        listen {expired_port} ssl;\n"
                          f"        root {root};\n        ssl_certificate {old_cert};\n"
                          f"        ssl_certificate_key {old_key};\n    }}\n")
    cfg = tmp / "nginx.conf"
    cfg.write_text(f"""
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp_paths}
    server {{
{listen}
        server_name www.portatlas.test;
        root {root};
        ssl_certificate {cert};
        ssl_certificate_key {key};
    }}
{expired_server}}}
""")
    proc = ns.popen(["nginx", "-e", f"{tmp}/error.log", "-c", str(cfg), "-g", "daemon off;"])
    _check_alive(proc, "nginx", tmp / "error.log")
    ports = [*http_ports, *https_ports, *h2c_ports] + ([expired_port] if expired_port else [])
    wait_ports(ns, ports)
    tls_ports = tuple(https_ports) + ((expired_port,) if expired_port else ())
    return Service("nginx", "http", "nginx", {p: "tcp" for p in ports}, tls_ports=tls_ports,
                   facts={"title": "portatlas test page", "cert_cn": "www.portatlas.test"})


# --- Redis --------------------------------------------------------------------------------
def start_redis(ns: Netns, tmp: Path, ports: Sequence[int] = (6379, 8080)) -> Service:
    """One redis-server per port (Redis listens on a single TCP port)."""
    for port in ports:
        work = tmp / f"redis-{port}"
        work.mkdir(parents=True, exist_ok=True)
        proc = ns.popen(["redis-server", "--port", str(port), "--bind", "0.0.0.0", "::",
                         "--protected-mode", "no", "--daemonize", "no", "--save", "",
                         "--appendonly", "no", "--dir", str(work), "--logfile", str(work / "log")])
        _check_alive(proc, "redis-server", work / "log")
    wait_ports(ns, ports)
    return Service("redis", "redis", "Redis", {p: "tcp" for p in ports})


# --- memcached ----------------------------------------------------------------------------
def start_memcached(ns: Netns, tmp: Path, ports: Sequence[int] = (11211, 4000),
                    udp_port: int | None = None) -> Service:
    listen = ",".join(f"0.0.0.0:{p}" for p in ports)
    cmd = ["memcached", "-u", "nobody", "-m", "16", "-c", "64", "-l", listen]
    cmd += ["-U", str(udp_port)] if udp_port else ["-U", "0"]
    proc = ns.popen(cmd)
    _check_alive(proc, "memcached")
    wait_ports(ns, ports)
    found = {p: "tcp" for p in ports}
    if udp_port:
        found[udp_port] = "udp"
    return Service("memcached", "memcached", "memcached", found)


# --- vsftpd -------------------------------------------------------------------------------
def start_vsftpd(ns: Netns, tmp: Path, ports: Sequence[int] = (21, 2121)) -> Service:
    """One vsftpd per port (listen_port takes one value), with AUTH TLS enabled."""
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="ftp.portatlas.test", sans=("ftp.portatlas.test",))
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    for port in ports:
        cfg = tmp / f"vsftpd-{port}.conf"
        cfg.write_text("\n".join([
            "listen=YES", "listen_ipv6=NO", f"listen_port={port}", "background=NO",
            "anonymous_enable=YES", f"anon_root={empty}", "local_enable=NO", "write_enable=NO",
            f"secure_chroot_dir={empty}", "seccomp_sandbox=NO", "max_clients=200", "max_per_ip=100",
            "ssl_enable=YES", "allow_anon_ssl=YES", "force_local_logins_ssl=NO",
            "force_local_data_ssl=NO", f"rsa_cert_file={cert}", f"rsa_private_key_file={key}",
            "ssl_tlsv1=YES", "ssl_sslv2=NO", "ssl_sslv3=NO", "require_ssl_reuse=NO",
            "xferlog_enable=NO", "vsftpd_log_file=/dev/null", "pasv_enable=YES", ""]))
        proc = ns.popen(["vsftpd", str(cfg)])
        _check_alive(proc, "vsftpd")
    wait_ports(ns, ports)
    return Service("vsftpd", "ftp", "vsftpd", {p: "tcp" for p in ports})


# --- Exim ---------------------------------------------------------------------------------
def start_exim(ns: Netns, tmp: Path, ports: Sequence[int] = (25, 2525),
               smtps_port: int | None = 465) -> Service:
    """Exim with a private configuration (-C): STARTTLS on every port, implicit TLS on
    `smtps_port`. Root calling exim with -C keeps root (the caller's own uid), so it can bind
    port 25; spool and logs go to the temporary directory."""
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="mail.portatlas.test", sans=("mail.portatlas.test",))
    spool = tmp / "spool"
    spool.mkdir(exist_ok=True)
    all_ports = [*ports] + ([smtps_port] if smtps_port else [])
    tls_on = f"tls_on_connect_ports = {smtps_port}\n" if smtps_port else ""
    cfg = tmp / "exim.conf"
    cfg.write_text(f"""
primary_hostname = mail.portatlas.test
daemon_smtp_ports = {" : ".join(str(p) for p in all_ports)}
{tls_on}spool_directory = {spool}
log_file_path = {tmp}/%slog
exim_user = root
exim_group = root
never_users =
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts = *
tls_certificate = {cert}
tls_privatekey = {key}
acl_smtp_rcpt = acl_check_rcpt
smtp_accept_max = 200
smtp_accept_max_per_host = 100
begin acl
acl_check_rcpt:
  deny message = relay not permitted
begin routers
begin transports
""")
    proc = ns.popen(["exim4", "-C", str(cfg), "-bdf", "-oP", str(tmp / "exim.pid")])
    _check_alive(proc, "exim4", tmp / "mainlog")
    wait_ports(ns, all_ports)
    return Service("exim", "smtp", "Exim", {p: "tcp" for p in all_ports},
                   tls_ports=(smtps_port,) if smtps_port else (),
                   facts={"hostname": "mail.portatlas.test"})


# --- Dovecot ------------------------------------------------------------------------------
def start_dovecot(ns: Netns, tmp: Path, imap_ports: Sequence[int] = (143, 1430),
                  pop3_ports: Sequence[int] = (110, 1100), imaps_port: int = 993,
                  pop3s_port: int = 995) -> tuple[Service, Service]:
    tmp.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="imap.portatlas.test", sans=("imap.portatlas.test",))
    base = tmp / "run"
    base.mkdir(exist_ok=True)
    # the first listener of each kind overrides Dovecot's built-in one of the same name
    imap_listeners = "".join(f"  inet_listener imap{i or ''} {{\n    port = {p}\n  }}\n"
                             for i, p in enumerate(imap_ports))
    imap_listeners += f"  inet_listener imaps {{\n    port = {imaps_port}\n    ssl = yes\n  }}\n"
    pop3_listeners = "".join(f"  inet_listener pop3{i or ''} {{\n    port = {p}\n  }}\n"
                             for i, p in enumerate(pop3_ports))
    pop3_listeners += f"  inet_listener pop3s {{\n    port = {pop3s_port}\n    ssl = yes\n  }}\n"
    cfg = tmp / "dovecot.conf"
    cfg.write_text(f"""
protocols = imap pop3
listen = *
base_dir = {base}
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:{tmp}/mail/%u
passdb {{
  driver = static
  args = password=unused-test-password
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={tmp}/mail/%u
}}
service imap-login {{
{imap_listeners}  process_min_avail = 1
}}
service pop3-login {{
{pop3_listeners}  process_min_avail = 1
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_max_userip_connections = 100
""")
    proc = ns.popen(["dovecot", "-F", "-c", str(cfg)])
    _check_alive(proc, "dovecot", tmp / "dovecot.log")
    wait_ports(ns, [*imap_ports, imaps_port, *pop3_ports, pop3s_port])
    imap = Service("dovecot-imap", "imap", "Dovecot", {p: "tcp" for p in [*imap_ports, imaps_port]},
                   tls_ports=(imaps_port,))
    pop3 = Service("dovecot-pop3", "pop3", "Dovecot", {p: "tcp" for p in [*pop3_ports, pop3s_port]},
                   tls_ports=(pop3s_port,))
    return imap, pop3


# --- rsync --------------------------------------------------------------------------------
def start_rsync(ns: Netns, tmp: Path, ports: Sequence[int] = (873, 1873)) -> Service:
    tmp.mkdir(parents=True, exist_ok=True)
    share = tmp / "share"
    share.mkdir(exist_ok=True)
    cfg = tmp / "rsyncd.conf"
    cfg.write_text(f"use chroot = no\npid file =\nlog file = {tmp}/rsyncd.log\n"
                   f"[pub]\n    path = {share}\n    comment = portatlas test share\n"
                   "    read only = yes\n")
    for port in ports:
        proc = ns.popen(["rsync", "--daemon", "--no-detach", f"--port={port}", f"--config={cfg}"])
        _check_alive(proc, "rsync")
    wait_ports(ns, ports)
    return Service("rsync", "rsync", None, {p: "tcp" for p in ports})


# --- ngIRCd -------------------------------------------------------------------------------
def start_ngircd(ns: Netns, tmp: Path, ports: Sequence[int] = (6667, 7000)) -> Service:
    tmp.mkdir(parents=True, exist_ok=True)
    motd = tmp / "motd"
    motd.write_text("portatlas test IRC server\n")
    cfg = tmp / "ngircd.conf"
    cfg.write_text(f"""[Global]
Name = irc.portatlas.test
Info = portatlas test IRC
Listen = 0.0.0.0
Ports = {", ".join(str(p) for p in ports)}
PidFile = {tmp}/ngircd.pid
MotdFile = {motd}
[Limits]
MaxConnectionsIP = 100
[Options]
Ident = no
DNS = no
PAM = no
""")
    proc = ns.popen(["ngircd", "-n", "-f", str(cfg)])
    _check_alive(proc, "ngircd")
    wait_ports(ns, ports)
    return Service("ngircd", "irc", "ngIRCd", {p: "tcp" for p in ports})


# --- Prosody (XMPP) -----------------------------------------------------------------------
def start_prosody(ns: Netns, tmp: Path, port: int = 5222) -> Service:
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    cert, key = make_cert(tmp / "tls", cn="portatlas.test", sans=("portatlas.test",))
    cfg = tmp / "prosody.cfg.lua"
    cfg.write_text(f"""
run_as_root = true
pidfile = "{tmp}/prosody.pid"
data_path = "{data}"
daemonize = false
log = {{ {{ levels = {{ min = "error" }}, to = "file", filename = "{tmp}/prosody.log" }} }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping" }}
modules_disabled = {{ "s2s"; "posix" }}
plugin_paths = {{ }}
authentication = "internal_hashed"
c2s_require_encryption = false
certificates = "{cert.parent}"
ssl = {{ certificate = "{cert}"; key = "{key}"; }}
VirtualHost "portatlas.test"
""")
    proc = ns.popen(["prosody", "--config", str(cfg), "-F"])
    _check_alive(proc, "prosody", tmp / "prosody.log")
    wait_ports(ns, [port])
    return Service("prosody", "xmpp", None, {port: "tcp"}, facts={"from": "portatlas.test"})


# --- Kamailio (SIP) -----------------------------------------------------------------------
def start_kamailio(ns: Netns, tmp: Path, port: int = 5060) -> Service:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "kamailio.cfg"
    cfg.write_text(f"""#!KAMAILIO
debug=0
log_stderror=yes
fork=yes
children=1
tcp_children=1
listen=udp:0.0.0.0:{port}
listen=tcp:0.0.0.0:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "textops.so"
request_route {{
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("404", "Not here");
}}
""")
    proc = ns.popen(["kamailio", "-f", str(cfg), "-DD", "-E", "-w", str(tmp),
                     "-P", str(tmp / "kamailio.pid")])
    _check_alive(proc, "kamailio")
    wait_ports(ns, [port])
    return Service("kamailio", "sip", "kamailio", {port: "tcp"}, facts={"udp_port": port})


# --- GNU inetutils telnetd (run inetd-style by socat) ---------------------------------------
def start_telnetd(ns: Netns, tmp: Path, ports: Sequence[int] = (23, 2323)) -> Service:
    """telnetd expects inetd to hand it the accepted socket; socat does that (nofork)."""
    for port in ports:
        proc = ns.popen(["socat", f"TCP-LISTEN:{port},fork,reuseaddr",
                         "EXEC:/usr/sbin/telnetd -h -E /bin/false,nofork"])
        _check_alive(proc, "socat/telnetd")
    wait_ports(ns, ports)
    return Service("telnetd", "telnet", None, {p: "tcp" for p in ports})


STARTERS: dict[str, Callable[..., object]] = {
    "openssh": start_ssh,
    "nginx": start_nginx,
    "redis": start_redis,
    "memcached": start_memcached,
    "vsftpd": start_vsftpd,
    "exim": start_exim,
    "dovecot": start_dovecot,
    "rsync": start_rsync,
    "ngircd": start_ngircd,
    "prosody": start_prosody,
    "kamailio": start_kamailio,
    "telnetd": start_telnetd,
}


def have(binary: str) -> bool:
    return shutil.which(binary) is not None or Path(binary).exists()
