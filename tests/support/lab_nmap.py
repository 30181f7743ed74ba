"""The identification lab: every real test server, old and new, with its ground truth.

Truth is written in nmap's vocabulary (the service names of nmap-services and of the match
lines of nmap-service-probes: `domain`, `http-proxy`, `ipp`, `socks5`...), so nmap and
portatlas are judged by one table. A row says:

    host       which lab namespace the server runs in ("text", "binary": the servers of the
               older tests, on the ports those tests use; "new": the issue-11 lab)
    port, transport
    service    the truth; `aliases` lists other names that are just as right (portatlas
               names the protocol: `dns` for `domain`, `https` for http over TLS...)
    product    the product nmap's vocabulary gives it (None: no product to expect); a
               reported product is right when one contains the other, case-insensitively
    tls        the service is spoken inside TLS on this port
    started    which Debian package / start function runs it

`start_lab()` starts the whole lab (every host namespace in parallel, one client namespace
joined to each by a veth pair) and yields a Lab whose `targets` are (address, port,
transport, Row). Everything is removed when the context exits.
"""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from support import servers_binary as sb
from support import servers_lab as sl
from support import servers_text as st
from support.netns import Netns


@dataclass(frozen=True)
class Row:
    host: str
    port: int
    transport: str
    service: str
    product: str | None
    started: str
    tls: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """Every name that counts as right for this port."""
        base = {self.service, *self.aliases}
        base |= {n.removeprefix("ssl/") for n in base}
        return frozenset(base)


@dataclass(frozen=True)
class Server:
    """One start function, its keyword arguments and the ports it opens."""

    host: str
    name: str
    start: Callable[..., object]
    kwargs: dict
    rows: tuple[Row, ...]


def _rows(host: str, started: str, service: str, product: str | None,
          ports: Sequence[tuple[int, str] | tuple[int, str, bool]],
          aliases: Sequence[str] = ()) -> tuple[Row, ...]:
    out = []
    for spec in ports:
        port, transport = spec[0], spec[1]
        tls = bool(spec[2]) if len(spec) > 2 else False
        out.append(Row(host, port, transport, service, product, started, tls, tuple(aliases)))
    return tuple(out)


def S(host: str, name: str, start: Callable[..., object], kwargs: dict, service: str,
      product: str | None, ports, aliases: Sequence[str] = (), started: str | None = None
      ) -> Server:
    return Server(host, name, start, kwargs,
                  _rows(host, started or name, service, product, ports, aliases))


T, U = "tcp", "udp"

# ---- the older tests' servers (support.servers_text / servers_binary), on their ports ------
OLD: list[Server] = [
    S("text", "openssh", st.start_ssh, {"ports": (22, 103)}, "ssh", "OpenSSH",
      [(22, T), (103, T)]),
    S("text", "nginx", st.start_nginx, {"http_ports": (80, 57), "https_ports": (443, 8443)},
      "http", "nginx", [(80, T), (57, T), (443, T, True), (8443, T, True)], ("https",)),
    S("text", "redis", st.start_redis, {"ports": (6379, 8080)}, "redis", "Redis",
      [(6379, T), (8080, T)]),
    S("text", "memcached", st.start_memcached, {"ports": (11211, 4000)}, "memcached",
      "memcached", [(11211, T), (4000, T)]),
    S("text", "vsftpd", st.start_vsftpd, {"ports": (21, 2121)}, "ftp", "vsftpd",
      [(21, T), (2121, T)]),
    S("text", "exim", st.start_exim, {"ports": (25, 2525), "smtps_port": 465}, "smtp", "Exim",
      [(25, T), (2525, T), (465, T, True)], ("smtps",)),
    Server("text", "dovecot", st.start_dovecot, {},
           _rows("text", "dovecot", "imap", "Dovecot", [(143, T), (1430, T), (993, T, True)],
                 ("imaps",))
           + _rows("text", "dovecot", "pop3", "Dovecot", [(110, T), (1100, T), (995, T, True)],
                   ("pop3s",))),
    S("text", "rsync", st.start_rsync, {"ports": (873, 1873)}, "rsync", None,
      [(873, T), (1873, T)]),
    S("text", "ngircd", st.start_ngircd, {"ports": (6667, 7000)}, "irc", "ngircd",
      [(6667, T), (7000, T)]),
    S("text", "prosody", st.start_prosody, {"port": 5222}, "jabber", "Prosody",
      [(5222, T)], ("xmpp", "xmpp-client")),
    S("text", "kamailio", st.start_kamailio, {"port": 5060}, "sip", "Kamailio",
      [(5060, T), (5060, U)]),
    S("text", "telnetd", st.start_telnetd, {"ports": (23, 2323)}, "telnet", None,
      [(23, T), (2323, T)]),
    S("binary", "postgresql", sb.start_postgresql, {"ports": (5432, 103)}, "postgresql",
      "PostgreSQL", [(5432, T), (103, T)]),
    S("binary", "mosquitto", sb.start_mosquitto, {"ports": (1883, 8080)}, "mqtt", "Mosquitto",
      [(1883, T), (8080, T)]),
    S("binary", "dnsmasq", sb.start_dnsmasq, {"ports": (53, 5353)}, "domain", "dnsmasq",
      [(53, U), (5353, U), (53, T), (5353, T)], ("dns",)),
    S("binary", "chrony", sb.start_chrony, {"ports": (123, 500)}, "ntp", None,
      [(123, U), (500, U)]),
    S("binary", "snmpd", sb.start_snmpd, {"ports": (161, 69)}, "snmp", "net-snmp",
      [(161, U), (69, U)]),
    S("binary", "memcached-udp", sb.start_memcached_udp, {"ports": (11211, 1900)}, "memcached",
      "memcached", [(11211, U), (1900, U), (11211, T), (1900, T)]),
]

# ---- the issue-11 lab (support.servers_lab) ----------------------------------------------
NEW: list[Server] = [
    S("new", "dropbear", sl.start_dropbear, {"ports": (22, 2222)}, "ssh", "Dropbear sshd",
      [(22, T), (2222, T)], started="dropbear-bin"),
    S("new", "lighttpd", sl.start_lighttpd, {"ports": (80, 8008)}, "http", "lighttpd",
      [(80, T), (8008, T)]),
    S("new", "squid", sl.start_squid, {"ports": (3128, 10080)}, "http-proxy", "Squid",
      [(3128, T), (10080, T)]),
    S("new", "tinyproxy", sl.start_tinyproxy, {"port": 8888}, "http-proxy", "tinyproxy",
      [(8888, T)]),
    S("new", "dante", sl.start_dante, {"ports": (1080, 1081)}, "socks5", None,
      [(1080, T), (1081, T)], started="dante-server"),
    S("new", "beanstalkd", sl.start_beanstalkd, {"ports": (11300, 9000)}, "beanstalkd", None,
      [(11300, T), (9000, T)], ("beanstalk",)),
    S("new", "nats", sl.start_nats, {"ports": (4222, 7422)}, "nats", "NATS",
      [(4222, T), (7422, T)], started="nats-server"),
    S("new", "gearmand", sl.start_gearmand, {"port": 4730}, "gearman", "Gearman",
      [(4730, T)], started="gearman-job-server"),
    S("new", "git-daemon", sl.start_git_daemon, {"ports": (9418, 9419)}, "git", None,
      [(9418, T), (9419, T)], started="git"),
    S("new", "svnserve", sl.start_svnserve, {"ports": (3690, 3691)}, "svnserve", "Subversion",
      [(3690, T), (3691, T)], ("svn",), started="subversion"),
    S("new", "epmd", sl.start_epmd, {"ports": (4369, 4370)}, "epmd",
      "Erlang Port Mapper Daemon", [(4369, T), (4370, T)], started="erlang-base"),
    S("new", "distccd", sl.start_distccd, {"port": 3632}, "distccd", "distccd", [(3632, T)],
      ("distcc",), started="distcc"),
    S("new", "cupsd", sl.start_cupsd, {"ports": (631, 8631)}, "ipp", "CUPS",
      [(631, T), (8631, T)], started="cups-daemon"),
    S("new", "slapd", sl.start_slapd, {"ports": (389, 3389), "ldaps_port": 636}, "ldap",
      "OpenLDAP", [(389, T), (3389, T), (636, T, True)], ("ldaps",)),
    S("new", "mariadb", sl.start_mariadb, {"port": 3306, "extra_port": 3307}, "mysql",
      "MariaDB", [(3306, T), (3307, T)], started="mariadb-server"),
    S("new", "bind9", sl.start_bind9, {"port": 53}, "domain", "ISC BIND", [(53, U), (53, T)],
      ("dns",)),
    S("new", "unbound", sl.start_unbound, {"port": 5300}, "domain", "Unbound",
      [(5300, U), (5300, T)], ("dns",)),
    S("new", "knot", sl.start_knot, {"port": 1053}, "domain", "Knot DNS", [(1053, U), (1053, T)],
      ("dns",)),
    S("new", "tftpd", sl.start_tftpd, {"ports": (69, 6969)}, "tftp", None,
      [(69, U), (6969, U)], started="tftpd-hpa"),
    S("new", "coturn", sl.start_coturn, {"port": 3478}, "stun", "coturn",
      [(3478, U), (3478, T)], ("turn",)),
    S("new", "rpcbind", sl.start_rpcbind, {}, "rpcbind", None, [(111, U), (111, T)],
      ("sunrpc",)),
    S("new", "krb5kdc", sl.start_krb5kdc, {"port": 88}, "kerberos-sec", None,
      [(88, U), (88, T)], ("kerberos", "kerberos5"), started="krb5-kdc"),
    S("new", "freeradius", sl.start_freeradius, {"ports": (1812, 1813)}, "radius", None,
      [(1812, U), (1813, U)], ("radius-acct",)),
    S("new", "openvpn", sl.start_openvpn, {"port": 1194}, "openvpn", "OpenVPN",
      [(1194, U), (1194, T)]),
    S("new", "inspircd", sl.start_inspircd, {"ports": (6667, 6000)}, "irc", "InspIRCd",
      [(6667, T), (6000, T)]),
    Server("new", "inetd", sl.start_inetd, {"gopher_port": 70, "finger_port": 79},
           _rows("new", "openbsd-inetd", "echo", None, [(7, T)])
           + _rows("new", "openbsd-inetd", "daytime", None, [(13, T), (13, U)])
           + _rows("new", "openbsd-inetd", "time", None, [(37, T), (37, U)])
           + _rows("new", "gophernicus", "gopher", "Gophernicus", [(70, T)])
           + _rows("new", "fingerd", "finger", None, [(79, T)])),
    S("new", "oidentd", sl.start_oidentd, {"ports": (113, 1130)}, "ident", "oidentd",
      [(113, T), (1130, T)], ("auth",)),
    S("new", "pgbouncer", sl.start_pgbouncer, {"port": 6432}, "pgbouncer", "PgBouncer",
      [(6432, T)], ("postgresql",)),
    Server("new", "stunnel", sl.start_stunnel, {"tunnels": ((4443, 80), (3692, 3690))},
           _rows("new", "stunnel4 + lighttpd", "http", "lighttpd", [(4443, T, True)],
                 ("https",))
           + _rows("new", "stunnel4 + subversion", "svnserve", "Subversion", [(3692, T, True)],
                   ("svn",))),
]

# services nmap's database has no name for (nmap-services and nmap-service-probes): named as
# their own projects name them; nmap cannot be right on them, portatlas may
OUTSIDE_NMAP = frozenset({"beanstalkd", "nats"})

LAB: list[Server] = OLD + NEW
ROWS: list[Row] = [row for server in LAB for row in server.rows]


def rows_of(servers: Sequence[Server]) -> list[Row]:
    return [row for server in servers for row in server.rows]


# ---- judging a tool's answer ---------------------------------------------------------------

def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def product_right(row: Row, reported: str | None) -> bool:
    """Right when one of the row's product spellings ('A|B') is in the report (or the whole
    report in it), ignoring case and punctuation."""
    if not row.product or not reported:
        return False
    said = _norm(reported)
    return any(_norm(p) in said or (said and said in _norm(p)) for p in row.product.split("|"))


# what tools say when they do not know: no name (neither right nor wrong)
NO_NAME = frozenset({"unknown", "tcpwrapped"})


def judge(row: Row, names: set[str]) -> str:
    """'right', 'none' or 'wrong' for the names a tool gave."""
    clean = {n.lower().removeprefix("ssl/") for n in names} - NO_NAME
    if not clean:
        return "none"
    return "right" if clean & row.names else "wrong"


# ---- starting the lab ---------------------------------------------------------------------

_veth = iter(range(10**6))


def _ip(*args: str) -> None:
    import subprocess

    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def join(client: Netns, host: Netns, subnet: int) -> str:
    """A veth pair made inside `client` with its peer moved straight into `host` (never in the
    root namespace); client 198.18.<subnet>.1/24, host .2. Returns the host's address."""
    n = next(_veth)
    a, b = f"pa11l{n}c", f"pa11l{n}h"
    _ip("-n", client.name, "link", "add", a, "type", "veth", "peer", "name", b,
        "netns", host.name)
    _ip("-n", client.name, "addr", "add", f"198.18.{subnet}.1/24", "dev", a)
    _ip("-n", host.name, "addr", "add", f"198.18.{subnet}.2/24", "dev", b)
    _ip("-n", client.name, "link", "set", a, "up")
    _ip("-n", host.name, "link", "set", b, "up")
    return f"198.18.{subnet}.2"


@dataclass
class Lab:
    client: Netns
    hosts: dict[str, Netns]
    addresses: dict[str, str]          # host label -> address seen from the client
    rows: list[Row]
    started: float = 0.0               # seconds spent starting the servers

    def address(self, row: Row) -> str:
        return self.addresses[row.host]

    def targets(self) -> list[tuple[str, int, str]]:
        return [(self.address(r), r.port, r.transport) for r in self.rows]

    def row_at(self, address: str, port: int, transport: str) -> Row:
        for row in self.rows:
            if (self.address(row), row.port, row.transport) == (address, port, transport):
                return row
        raise KeyError((address, port, transport))


# the lab's own subnets: far from the 198.18.0-249 that support.netns.link() counts through
_SUBNETS = {"text": 250, "binary": 251, "new": 252}


@contextlib.contextmanager
def start_lab(tmp: Path, servers: Sequence[Server] = tuple(LAB), workers: int = 6
              ) -> Iterator[Lab]:
    """Start `servers` (default: the whole lab), each host label in its own namespace, and a
    client namespace joined to every host. Raises if any server fails to start."""
    import time

    tmp.mkdir(parents=True, exist_ok=True)
    labels = sorted({s.host for s in servers})
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(Netns("pa11l-c"))
        hosts = {h: stack.enter_context(Netns(f"pa11l-{h[:3]}")) for h in labels}
        addresses = {h: join(client, hosts[h], _SUBNETS.get(h, 253 - i))
                     for i, h in enumerate(labels)}
        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [(s, pool.submit(s.start, hosts[s.host], tmp / f"{s.host}-{s.name}",
                                       **s.kwargs)) for s in servers]
            errors = []
            for server, future in futures:
                try:
                    future.result()
                except Exception as exc:  # report every server that failed, not just one
                    errors.append(f"{server.name}: {exc}")
            if errors:
                raise RuntimeError("lab servers failed to start:\n  " + "\n  ".join(errors))
        rows = [row for s in servers for row in s.rows]
        yield Lab(client, hosts, addresses, rows, time.monotonic() - begin)
