"""Each listener held against the knowledge base: what its port is registered for, and flags.

Flags (docs/local.md lists them with examples); each carries a one-line explanation:
  unassigned           the port is unassigned in the IANA registry
  reserved             the port is reserved by IANA
  deassigned           the port's registration was withdrawn
  dynamic              the port is in the dynamic range 49152-65535 (never assigned)
  trojan               a historic list names malware that once used the port (left out when
                       the program is one known to serve the port's registered service)
  unauthorized-use     IANA records unauthorized use of the port
  privileged-non-root  a port below 1024 held by a non-root user

Only listening sockets (LISTEN, UNCONN) are classified: the local port of a connection is
normally an ephemeral one, and flags on it would be noise.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from bisect import bisect_left
import sys

from portatlas.local.model import Socket, Snapshot, user_name, Notice
from portatlas.model import ASSIGNED, DEASSIGNED, RESERVED, UNASSIGNED, Entry, overall_status
from portatlas.errors import PortatlasError

if TYPE_CHECKING:
    from portatlas.atlas import Atlas

PRIVILEGED_BELOW = 1024
DYNAMIC_START = 49152
# Ports closer than this are fetched from the database in one range query instead of one each.
_SPAN_GAP = 64
_TROJAN_NAMES_SHOWN = 3

# Programs commonly serving a registered service (facts, not a judgement): used to say whether
# a listener is "what the port is registered for". A program not listed is not wrong, just
# unknown; `portatlas local --identify` asks the service itself.
KNOWN_PROGRAMS: dict[str, tuple[str, ...]] = {
    "ssh": ("sshd", "dropbear", "sshd-session"),
    "http": ("nginx", "apache2", "httpd", "caddy", "lighttpd", "haproxy", "traefik", "envoy",
             "varnishd", "h2o", "openresty"),
    "https": ("nginx", "apache2", "httpd", "caddy", "lighttpd", "haproxy", "traefik", "envoy", "h2o"),
    "http-alt": ("nginx", "apache2", "httpd", "caddy", "tomcat", "jetty", "squid", "traefik"),
    "domain": ("named", "dnsmasq", "unbound", "systemd-resolve", "systemd-resolved", "coredns",
               "pdns_server", "pdns_recursor", "knotd", "nsd", "kresd"),
    "smtp": ("master", "exim4", "exim", "sendmail", "smtpd", "opensmtpd", "postfix"),
    "submission": ("master", "exim4", "exim", "sendmail", "smtpd", "postfix"),
    "submissions": ("master", "exim4", "exim", "smtpd", "postfix"),
    "imap": ("dovecot", "imap-login", "cyrus-master"),
    "imaps": ("dovecot", "imap-login", "cyrus-master"),
    "pop3": ("dovecot", "pop3-login"),
    "pop3s": ("dovecot", "pop3-login"),
    "postgresql": ("postgres", "postmaster"),
    "mysql": ("mysqld", "mariadbd"),
    "ntp": ("ntpd", "chronyd", "systemd-timesyncd", "ntpsec"),
    "bootps": ("dhcpd", "dnsmasq", "kea-dhcp4", "udhcpd"),
    "bootpc": ("dhclient", "dhcpcd", "systemd-networkd", "NetworkManager", "udhcpc"),
    "netbios-ns": ("nmbd",),
    "netbios-dgm": ("nmbd",),
    "netbios-ssn": ("smbd",),
    "microsoft-ds": ("smbd",),
    "sunrpc": ("rpcbind", "portmap"),
    "snmp": ("snmpd",),
    "ldap": ("slapd",),
    "ldaps": ("slapd",),
    "ftp": ("vsftpd", "proftpd", "pure-ftpd"),
    "telnet": ("telnetd", "in.telnetd", "inetutils-telnetd"),
    "syslog": ("rsyslogd", "syslog-ng", "syslogd"),
    "mdns": ("avahi-daemon", "systemd-resolve"),
    "ipp": ("cupsd",),
    "epmd": ("epmd",),
    "amqp": ("beam.smp", "rabbitmq-server"),
    "kerberos": ("krb5kdc",),
    "isakmp": ("charon", "pluto", "racoon"),
    "openvpn": ("openvpn",),
    "sip": ("asterisk", "kamailio", "opensips"),
    "memcache": ("memcached",),
    "redis": ("redis-server",),
    "mongodb": ("mongod",),
    "x11": ("Xorg", "Xwayland", "X"),
    "rsync": ("rsync",),
    "tftp": ("in.tftpd", "tftpd"),
}


_KNOWN_LOWER = {service: frozenset(p.lower() for p in programs)
                for service, programs in KNOWN_PROGRAMS.items()}


class Classifier:
    """Classifies snapshots against one Atlas (or, without one, with what needs no registry).
    Lookups are cached, so a --watch loop pays for each port once."""

    def __init__(self, atlas: "Atlas | None") -> None:
        self.atlas = atlas
        self._ports: dict[tuple[int, str], tuple[list[dict[str, Any]], list[tuple[str, str]]]] = {}
        self._entries: dict[int, list[Entry]] = {}
        self._trojans: dict[tuple[int, str], list[str]] | None = None
        self._threshold: int | None = None

    # registry look-ups ---------------------------------------------------------------
    def _prefetch(self, ports: set[int]) -> None:
        """Fetch the entries for many ports at once: one range query per cluster of ports."""
        atlas = self.atlas
        wanted = sorted(p for p in ports if p not in self._entries)
        if atlas is None or not wanted:
            return
        spans: list[list[int]] = [[wanted[0], wanted[0]]]
        for port in wanted[1:]:
            if port - spans[-1][1] <= _SPAN_GAP:
                spans[-1][1] = port
            else:
                spans.append([port, port])

        for lo, hi in spans:
            if lo == hi:
                self._entries[lo] = atlas.entries(lo)
                continue
            first, last = bisect_left(wanted, lo), bisect_left(wanted, hi + 1)
            for port in wanted[first:last]:
                self._entries[port] = []
            for entry in atlas.range(lo, hi):
                # ranges may be wide: visit only the wanted ports they cover
                i = bisect_left(wanted, max(entry.port_lo, lo), first, last)
                while i < last and wanted[i] <= entry.port_hi:
                    self._entries[wanted[i]].append(entry)
                    i += 1
        if len(wanted) > 4 and self._trojans is None:
            self._trojans = atlas.store.all_trojans()

    def _trojan_names(self, port: int, transport: str) -> list[str]:
        if self.atlas is None:
            return []
        if self._trojans is not None:
            return self._trojans.get((port, transport), [])
        return self.atlas.trojans(port).get(transport, [])

    def port_facts(self, port: int, transport: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """(registered services, port flags) for one port/transport, cached. Sockets on the same
        port share the returned lists: treat them as read-only."""
        key = (port, transport)
        cached = self._ports.get(key)
        if cached is not None:
            return cached
        flags: list[tuple[str, str]] = []
        services: list[dict[str, Any]] = []
        dynamic = port >= DYNAMIC_START
        if self.atlas is not None:
            entries = self._entries.get(port)
            if entries is None:
                entries = self._entries[port] = self.atlas.entries(port)
            # a wide "Unassigned" range says nothing specific about one port in it
            specific = [e for e in entries if e.transport in (transport, None)
                        and not (e.status == UNASSIGNED and e.port_lo != e.port_hi and e.port_lo != port)]
            status = overall_status(specific) if specific else UNASSIGNED
            for e in specific:
                if e.status == ASSIGNED:
                    services.append({"service": e.service, "description": e.description,
                                     "ports": e.ports})
            if status == UNASSIGNED and not dynamic:
                flags.append(("unassigned", f"{port}/{transport} is unassigned in the IANA "
                                            "registry: nothing is registered to listen here"))
            elif status == RESERVED:
                flags.append(("reserved", f"{port}/{transport} is reserved by IANA: no service "
                                          "should use it"))
            elif status == DEASSIGNED:
                gone = next((e for e in specific if e.status == DEASSIGNED), None)
                was = f" (was {gone.previously})" if gone is not None and gone.previously else ""
                flags.append(("deassigned", f"{port}/{transport} was de-assigned by IANA{was}: "
                                            "no service is registered here any more"))
            for e in specific:
                if e.unauthorized:
                    text = " ".join(e.unauthorized.split())
                    flags.append(("unauthorized-use",
                                  f"IANA records unauthorized use of {port}/{transport}: {text}"))
                    break
        if dynamic:
            flags.append(("dynamic", f"{port} is in the dynamic range 49152-65535, never "
                                     "assigned and used for temporary ports: a lasting listener "
                                     "here is unusual, or deliberately out of the way"))
        names = self._trojan_names(port, transport)
        if names:
            shown = ", ".join(names[:_TROJAN_NAMES_SHOWN])
            more = f" and {len(names) - _TROJAN_NAMES_SHOWN} more" if len(names) > _TROJAN_NAMES_SHOWN else ""
            flags.append(("trojan", f"{port}/{transport} is on a historic list of ports once used "
                                    f"by malware ({shown}{more}); that alone says nothing about "
                                    "this listener"))
        result = (services, flags)
        self._ports[key] = result
        return result

    # per socket ----------------------------------------------------------------------
    def unprivileged_start(self) -> int:
        """net.ipv4.ip_unprivileged_port_start of this network namespace (1024 by default)."""
        if self._threshold is None:
            try:
                with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
                    self._threshold = int(f.read().strip())
            except (OSError, ValueError):
                self._threshold = PRIVILEGED_BELOW
        return self._threshold

    def classify(self, snapshot: Snapshot) -> Snapshot:
        listening = [s for s in snapshot.sockets if s.listening]
        ports = {s.port for s in listening}
        if len(ports) > 4:
            self._prefetch(ports)
        facts = self.port_facts
        labels: dict[int, set[str]] = {}
        for sock in listening:
            services, flags = facts(sock.port, sock.transport)
            sock.services = services
            sock.flags = flags
            if sock.port < PRIVILEGED_BELOW:
                holder = _non_root_holder(sock, snapshot)
                if holder is not None:
                    sock.flags = flags + [("privileged-non-root", self._privileged_text(sock, holder))]
            if services and sock.holders:
                sock.expected_program = expected_program(sock, snapshot, labels)
                if sock.expected_program:
                    # sshd on 22 is what 22 is for: an old trojan that once used 22 is not news
                    sock.flags = [f for f in sock.flags if f[0] != "trojan"]
        snapshot.classified = True
        return snapshot

    def _privileged_text(self, sock: Socket, holder: str) -> str:
        threshold = self.unprivileged_start() if os.name == "posix" else PRIVILEGED_BELOW
        why = ("the program was given CAP_NET_BIND_SERVICE (or runs in a user namespace)"
               if threshold >= PRIVILEGED_BELOW else
               f"net.ipv4.ip_unprivileged_port_start is lowered to {threshold} here, so any "
               "user may bind it")
        return (f"{sock.port} is a privileged port (below {PRIVILEGED_BELOW}, normally root's) "
                f"yet held by non-root {holder}: {why}")


def _non_root_holder(sock: Socket, snapshot: Snapshot) -> str | None:
    """Who holds a privileged port without root: None when root is involved or nobody is known.
    A socket root opened and handed to a less privileged worker (nginx, systemd socket
    activation) is fine: the privilege was root's."""
    if sock.uid == 0:
        return None
    procs = [snapshot.processes.get(h.pid) for h in sock.holders]
    known = [p for p in procs if p is not None and p.uid is not None]
    if any(p.uid == 0 for p in known):
        return None
    if known:
        p = known[0]
        return f"{p.user or p.uid} (pid {p.pid} {p.name})"
    if sock.uid is not None:
        return f"{user_name(sock.uid)} (uid {sock.uid})"
    return None


def expected_program(sock: Socket, snapshot: Snapshot,
                     labels: dict[int, set[str]] | None = None) -> bool | None:
    """True when a holder looks like a program serving the registered service (a known program,
    or one named after the service: sshd for ssh); False when the service is one whose usual
    programs are known (KNOWN_PROGRAMS) and no holder is one of them; None otherwise."""
    names = [s["service"].lower() for s in sock.services if s.get("service")]
    if not names:
        return None
    cache = {} if labels is None else labels
    seen = False
    for holder in sock.holders:
        mine = cache.get(holder.pid)
        if mine is None:
            mine = cache[holder.pid] = _labels(snapshot.processes.get(holder.pid))
        if not mine:
            continue
        seen = True
        for service in names:
            known = _KNOWN_LOWER.get(service, ())
            for label in mine:
                if label in known or (len(service) >= 3 and label.startswith(service)):
                    return True
    if seen and any(service in _KNOWN_LOWER for service in names):
        return False
    return None


def _labels(proc) -> set[str]:
    """The names a process goes by: its name, its executable's file name, its systemd unit."""
    if proc is None:
        return set()
    found = {(proc.name or "").lower()}
    if proc.exe:
        found.add(proc.exe.rsplit("/", 1)[-1].removesuffix(" (deleted)").lower())
    if proc.unit:
        found.add(proc.unit.rsplit(".", 1)[0].lower())
    found.discard("")
    return found


def open_classifier(db: str | None, warnings: list) -> Classifier:
    """A Classifier on the user's database; without a usable one, a registry-less Classifier and
    a notice saying so (listing sockets must never fail for want of the registry)."""
    import sqlite3  # lazy: sqlite3 and atlas load only when listing, not for `local --help`


    try:
        from portatlas.atlas import Atlas  # lazy: see above (the registry opens only when listing)

        return Classifier(Atlas(db, notify=_to_stderr))
    except (PortatlasError, OSError, sqlite3.Error) as exc:
        warnings.append(Notice("no-registry", f"the port registry is not available ({exc}); "
                                             "listeners are shown without registered services "
                                             "and registry flags"))
        return Classifier(None)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
