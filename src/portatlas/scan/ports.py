"""Which ports to scan: `-p` specs and `--top N`.

A spec is a comma-separated list of items: a port (22), a range (1-1024), an open range
(-1024 means 1-1024, 60000- means 60000-65535), `-` alone for all of 1-65535, or a service
name from the registry (http, ssh). Port 0 is refused: connect() cannot reach it.

Items may name their transport, as nmap's -p does and as portatlas writes ports:
`U:53,161,T:22,80` (a T:/U: qualifier applies to the items after it until the next one) and
`53/udp`, `1-1024/tcp`, `domain/udp` (one item). Unqualified items are for the transports the
scan was asked for (--tcp/--udp; TCP when neither). parse_transport_spec returns the ports of
each transport, so one run can scan TCP and UDP ports with their own engines.
"""

from __future__ import annotations

from typing import Callable

from portatlas.errors import UsageError
from portatlas.scan.common_ports import COMMON_TCP, COMMON_UDP

MAX_PORT = 65535


def parse_port_spec(spec: str, *, service_ports: Callable[[str], list[int]] | None = None,
                    whole: str | None = None) -> list[int]:
    """The ports a spec names, sorted and without duplicates; one-line UsageError otherwise.

    `whole`: the full spec this is part of, for error messages."""
    text = spec.strip()
    spec = whole if whole is not None else spec
    if not text:
        raise UsageError("empty port spec: give ports like 22,80,8000-8100 or '-' for all")
    ports: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"bad port spec {spec!r}: empty item between commas")
        if item == "-":
            ports.update(range(1, MAX_PORT + 1))
        elif item[0].isdigit() or item[0] == "-":
            lo, hi = _range(item, spec)
            ports.update(range(lo, hi + 1))
        else:
            if service_ports is None:
                raise UsageError(f"bad port spec {spec!r}: {item!r} is not a port or range")
            found = service_ports(item)
            if not found:
                raise UsageError(f"bad port spec {spec!r}: no registered port for service {item!r}")
            ports.update(found)
    return sorted(ports)


_QUALIFIERS = {"T": "tcp", "U": "udp"}
_SUFFIXES = ("tcp", "udp")


def has_transports(spec: str) -> bool:
    """True when a spec names transports itself (U:53, T:22, 53/udp)."""
    for item in spec.split(","):
        item = item.strip()
        if (len(item) >= 2 and item[1] == ":" and item[0].isalpha()) or "/" in item:
            return True
    return False


def parse_transport_spec(spec: str, default: list[str], *,
                         service_ports: Callable[[str, str], list[int]] | None = None
                         ) -> dict[str, list[int]]:
    """{transport: sorted ports} for a spec that may name transports (see the module doc).

    `default`: the transports of unqualified items. `service_ports(name, transport)` looks
    up service names. Transports that end up with no port are left out.
    """
    text = spec.strip()
    if not text:
        raise UsageError("empty port spec: give ports like 22,80,U:53 or '-' for all")
    wanted: dict[str, set[int]] = {}
    current: list[str] = list(default)
    qualified = False  # a T:/U: qualifier is in force
    for raw in text.split(","):
        item = raw.strip()
        if len(item) >= 2 and item[1] == ":" and item[0].isalpha():
            letter = item[0].upper()
            if letter in ("S", "P"):
                raise UsageError(f"bad port spec {spec!r}: {item[:2]} (SCTP or IP protocol) is "
                                 "not supported; scan speaks tcp (T:) and udp (U:)")
            if letter not in _QUALIFIERS:
                raise UsageError(f"bad port spec {spec!r}: unknown qualifier {item[:2]!r} "
                                 "(use T: or U:)")
            current, qualified = [_QUALIFIERS[letter]], True
            item = item[2:].strip()
            if not item:
                raise UsageError(f"bad port spec {spec!r}: {raw.strip()!r} names no port")
        transports = current
        if "/" in item:
            item, _, suffix = item.rpartition("/")
            suffix = suffix.strip().lower()
            if suffix not in _SUFFIXES:
                raise UsageError(f"bad port spec {spec!r}: {raw.strip()!r}: transport "
                                 f"{suffix!r} is not supported (tcp or udp)")
            if qualified and current != [suffix]:
                raise UsageError(f"bad port spec {spec!r}: {raw.strip()!r} names two transports")
            transports = [suffix]
            item = item.strip()
        if not item:
            raise UsageError(f"bad port spec {spec!r}: empty item between commas")
        for transport in transports:
            lookup = ((lambda name, t=transport: service_ports(name, t))
                      if service_ports is not None else None)
            wanted.setdefault(transport, set()).update(
                parse_port_spec(item, service_ports=lookup, whole=spec))
    return {t: sorted(ports) for t, ports in wanted.items() if ports}


def _number(text: str, spec: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise UsageError(f"bad port spec {spec!r}: {text!r} is not a port number")
    value = int(text)
    if value > MAX_PORT:
        raise UsageError(f"bad port spec {spec!r}: port {value} is out of range (1-65535)")
    if value == 0:
        raise UsageError(f"bad port spec {spec!r}: port 0 cannot be scanned (use 1-65535)")
    return value


def _range(item: str, spec: str) -> tuple[int, int]:
    if "-" not in item:
        n = _number(item, spec)
        return n, n
    lo_text, _, hi_text = item.partition("-")
    if "-" in hi_text:
        raise UsageError(f"bad port spec {spec!r}: {item!r} has more than one '-'")
    lo = _number(lo_text, spec) if lo_text else 1
    hi = _number(hi_text, spec) if hi_text else MAX_PORT
    if lo > hi:
        raise UsageError(f"bad port spec {spec!r}: range {item} runs backwards")
    return lo, hi


def compact(ports: list[int]) -> str:
    """[1,2,3,5,7,8] -> '1-3,5,7-8' (the inverse of parse_port_spec for numbers)."""
    out = []
    ports = sorted(ports)
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1] == ports[j] + 1:
            j += 1
        out.append(str(ports[i]) if i == j else f"{ports[i]}-{ports[j]}")
        i = j + 1
    return ",".join(out)


def top_ports(count: int, transport: str, nmap_top: Callable[[str, int], list[int]] | None) -> tuple[list[int], str]:
    """The `count` most often open ports: from nmap-services frequencies when the database has
    them, else from the built-in list. Returns (ports, source label)."""
    if count < 1:
        raise UsageError("--top needs a positive number of ports")
    if count > MAX_PORT:
        raise UsageError(f"--top {count}: there are only {MAX_PORT} ports")
    if nmap_top is not None:
        found = [p for p in nmap_top(transport, count) if 1 <= p <= MAX_PORT]
        if found:
            return sorted(found), "nmap-services"
    builtin = COMMON_UDP if transport == "udp" else COMMON_TCP
    return sorted(builtin[:count]), "built-in list"
