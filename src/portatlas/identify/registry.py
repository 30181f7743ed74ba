"""The one list of protocol modules, and the order in which the driver tries them.

Every module in PROTOCOL_MODULES (a file in portatlas/identify/protocols/) registers its
Probe classes with @register when imported; nothing else decides which protocols exist.
"""

from __future__ import annotations

import importlib
from typing import Iterable

from portatlas.identify.base import REGISTRY, Probe

PROTOCOL_MODULES: tuple[str, ...] = (
    # text and TLS protocols
    "tls", "http", "ssh", "smtp", "mtp", "ftp", "pop3", "imap", "telnet", "irc", "xmpp",
    "rtsp", "sip", "rsync", "redis", "memcached",
    # binary protocols
    "dns", "ntp", "snmp", "memcached_udp", "mysql", "postgresql", "mongodb", "mqtt", "amqp",
    "ldap", "rdp", "smb", "vnc", "ssdp", "netbios_ns", "stun", "time_rfc868",
)

_loaded = False


def load() -> dict[str, type[Probe]]:
    """Import every protocol module once; returns the registry ('name/transport' -> class)."""
    global _loaded
    if not _loaded:
        for name in PROTOCOL_MODULES:
            importlib.import_module(f"portatlas.identify.protocols.{name}")
        _loaded = True
    return REGISTRY


def probes(transport: str) -> list[type[Probe]]:
    return [cls for cls in load().values() if cls.transport == transport]


def hint_tier(cls: type[Probe], port: int, registered: Iterable[str]) -> int:
    """0: the registry names this protocol for the port; 1: a port the protocol favours;
    2: no hint."""
    names = {n.lower() for n in registered}
    if names & cls.services:
        return 0
    if port in cls.ports:
        return 1
    return 2


def ordered(transport: str, port: int, registered: Iterable[str] = (),
            only: Iterable[str] | None = None) -> list[type[Probe]]:
    """Probes for `transport`, most likely first: registry hint, favoured port, rarity."""
    registered = tuple(registered)
    chosen = probes(transport)
    if only is not None:
        wanted = set(only)
        chosen = [c for c in chosen if c.name in wanted]
    return sorted(chosen, key=lambda c: (hint_tier(c, port, registered), c.rarity, c.name))
