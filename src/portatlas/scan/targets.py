"""What to scan: the hosts the user named, and nothing else.

A target is an IPv4 or IPv6 literal (IPv6 may carry a %zone), a host name (every A and AAAA
address it resolves to), a CIDR block (every address in it, network and broadcast included,
as nmap does), an address range A-B, or `@FILE` / `--targets-file FILE` with more of those.
Anything malformed is refused with one line before a single packet is sent.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, NamedTuple

from portatlas.errors import PortatlasError, UsageError
from portatlas.io_limits import read_limited

# Upper bound on the addresses one scan may cover unless the user raises it (--max-hosts):
# a typo like /8 instead of /28 should not start a sixteen-million-host sweep.
DEFAULT_MAX_HOSTS = 65536


class ResolveError(PortatlasError):
    """A host name could not be resolved (exit code 4: the name service failed us)."""


class Host:
    """One address to scan and how the user named it."""

    __slots__ = ("target", "address", "family", "scope_id")

    def __init__(self, target: str, address: str, family: int, scope_id: int = 0) -> None:
        self.target = target      # what the user typed (name, CIDR, literal)
        self.address = address    # the literal address connected to
        self.family = family      # socket.AF_INET or socket.AF_INET6
        self.scope_id = scope_id  # IPv6 zone index for link-local addresses

    @property
    def family_name(self) -> str:
        return "ipv6" if self.family == socket.AF_INET6 else "ipv4"

    def sockaddr(self, port: int) -> tuple:
        if self.family == socket.AF_INET6:
            return (self.address, port, 0, self.scope_id)
        return (self.address, port)

    def key(self) -> tuple[str, int]:
        return (self.address, self.scope_id)

    def to_dict(self) -> dict:
        return {"target": self.target, "address": self.address, "family": self.family_name}

    def __repr__(self) -> str:
        return f"Host({self.target!r}, {self.address!r})"


def parse_targets(specs: Iterable[str], *, files: Iterable[str] = (), family: int | None = None,
                  max_hosts: int = DEFAULT_MAX_HOSTS, resolve: bool = True) -> list[Host]:
    """Expand every target into hosts, in the order given, without duplicates.

    `family` restricts host names (and refuses literals) to AF_INET or AF_INET6.
    """
    items: list[str] = []
    for spec in specs:
        if spec.startswith("@") and len(spec) > 1:
            items.extend(read_target_file(spec[1:]))
        else:
            items.append(spec)
    for path in files:
        items.extend(read_target_file(path))
    if not items:
        raise UsageError("no targets: name at least one host, address, CIDR block or @FILE")
    hosts: list[Host] = []
    seen: set[tuple[str, int]] = set()
    for item in items:
        for host in expand_target(item, family=family, max_hosts=max_hosts, resolve=resolve):
            if host.key() not in seen:
                seen.add(host.key())
                hosts.append(host)
                if len(hosts) > max_hosts:
                    raise UsageError(f"the targets cover more than {max_hosts} addresses; narrow "
                                     "them or raise --max-hosts")
    return hosts


# a list of targets is text; even 100,000 names fit in a few megabytes
MAX_TARGETS_FILE_BYTES = 8 << 20


def read_target_file(path: str) -> list[str]:
    """Targets from a file (or '-' for standard input): whitespace or comma separated, '#'
    starts a comment."""
    data = read_limited(path, limit=MAX_TARGETS_FILE_BYTES, what="a targets file",
                        error=UsageError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"targets file {path} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None
    if "\x00" in text:
        raise UsageError(f"targets file {path} contains NUL bytes (not a text file)")
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        out.extend(t for t in line.replace(",", " ").split() if t)
    if not out:
        raise UsageError(f"targets file {path} names no targets")
    return out


def expand_target(text: str, *, family: int | None = None, max_hosts: int = DEFAULT_MAX_HOSTS,
                  resolve: bool = True) -> list[Host]:
    raw = text
    text = text.strip()
    if not text:
        raise UsageError("empty target")
    if "/" in text:
        return _cidr(raw, text, family, max_hosts)
    literal = _literal(text)
    if literal is not None:
        _check_family(raw, literal.family, family)
        return [Host(raw, literal.address, literal.family, literal.scope_id)]
    if "-" in text and _looks_like_range(text):
        return _address_range(raw, text, family, max_hosts)
    _check_hostname(text)
    if not resolve:
        return [Host(raw, text, family or socket.AF_INET)]
    return resolve_name(text, family)


class _Literal(NamedTuple):
    address: str
    family: int
    scope_id: int


def _literal(text: str) -> _Literal | None:
    """The address when `text` is an IP literal (IPv6 may have [] and %zone)."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    zone = ""
    if "%" in inner:
        inner, _, zone = inner.partition("%")
    try:
        addr = ipaddress.ip_address(inner)
    except ValueError:
        if zone or inner != text:
            raise UsageError(f"{text!r} is not a valid IP address") from None
        return None
    if addr.version == 4:
        if zone:
            raise UsageError(f"{text!r}: only IPv6 addresses take a %zone")
        return _Literal(str(addr), socket.AF_INET, 0)
    scope = 0
    if zone:
        scope = _zone_index(text, zone)
    return _Literal(str(addr), socket.AF_INET6, scope)


def _zone_index(text: str, zone: str) -> int:
    if zone.isdigit():
        return int(zone)
    try:
        return socket.if_nametoindex(zone)
    except OSError:
        raise UsageError(f"{text!r}: no network interface named {zone!r}") from None


def _check_family(raw: str, fam: int, wanted: int | None) -> None:
    if wanted is not None and fam != wanted:
        want = "IPv6" if wanted == socket.AF_INET6 else "IPv4"
        raise UsageError(f"{raw!r} is not an {want} address (you asked for {want} only)")


def _cidr(raw: str, text: str, family: int | None, max_hosts: int) -> list[Host]:
    addr_text, _, bits = text.partition("/")
    if not bits.isdigit() or not bits.isascii():
        raise UsageError(f"bad CIDR block {raw!r}: the prefix length must be a number")
    try:
        base = ipaddress.ip_address(addr_text)
    except ValueError:
        raise UsageError(f"bad CIDR block {raw!r}: {addr_text!r} is not an IP address") from None
    limit = 32 if base.version == 4 else 128
    if int(bits) > limit:
        raise UsageError(f"bad CIDR block {raw!r}: an IPv{base.version} prefix is 0-{limit} bits")
    # Host bits may be set (198.18.0.7/24 means the whole /24), as in nmap.
    net = ipaddress.ip_network(f"{base}/{bits}", strict=False)
    fam = socket.AF_INET if net.version == 4 else socket.AF_INET6
    _check_family(raw, fam, family)
    if net.num_addresses > max_hosts:
        raise UsageError(f"{raw} covers {net.num_addresses} addresses; the most is {max_hosts} "
                         "(narrow it or raise --max-hosts)")
    return [Host(raw, str(a), fam) for a in (net if net.num_addresses == 1 else _all(net))]


def _all(net) -> Iterable:
    # every address, network and broadcast addresses included: the user named the block
    first, last = int(net.network_address), int(net.broadcast_address)
    cls = type(net.network_address)
    return (cls(n) for n in range(first, last + 1))


def _looks_like_range(text: str) -> bool:
    left, _, right = text.partition("-")
    return _literal_or_none(left) is not None


def _literal_or_none(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _address_range(raw: str, text: str, family: int | None, max_hosts: int) -> list[Host]:
    """198.18.0.1-198.18.0.9 or 198.18.0.1-9 (last octet/group shorthand)."""
    left, _, right = text.partition("-")
    lo = ipaddress.ip_address(left)
    hi = _literal_or_none(right)
    if hi is None:
        sep = "." if lo.version == 4 else ":"
        head = left.rsplit(sep, 1)[0]
        hi = _literal_or_none(f"{head}{sep}{right}")
    if hi is None or hi.version != lo.version:
        raise UsageError(f"bad address range {raw!r}: write FIRST-LAST, e.g. 198.18.0.1-198.18.0.9")
    if int(hi) < int(lo):
        raise UsageError(f"address range {raw!r} runs backwards")
    count = int(hi) - int(lo) + 1
    if count > max_hosts:
        raise UsageError(f"{raw} covers {count} addresses; the most is {max_hosts}")
    fam = socket.AF_INET if lo.version == 4 else socket.AF_INET6
    _check_family(raw, fam, family)
    cls = type(lo)
    return [Host(raw, str(cls(n)), fam) for n in range(int(lo), int(hi) + 1)]


def _check_hostname(text: str) -> None:
    if len(text) > 253 or text.startswith(".") or ".." in text:
        raise UsageError(f"{text!r} is not a valid host name")
    for label in text.rstrip(".").split("."):
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            raise UsageError(f"{text!r} is not a valid host name")
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            raise UsageError(f"{text!r} is not a valid host name or address")
    if text.replace(".", "").isdigit():
        raise UsageError(f"{text!r} is not a valid IPv4 address")


def resolve_name(name: str, family: int | None = None) -> list[Host]:
    """Every A and AAAA address of `name` (IPv4 first), or one line saying why not."""
    try:
        infos = socket.getaddrinfo(name, None, family or socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise UsageError(f"cannot resolve host name {name!r}: no such name") from None
        raise ResolveError(f"cannot resolve host name {name!r}: {exc.strerror}") from None
    except UnicodeError:
        raise UsageError(f"{name!r} is not a valid host name") from None
    hosts: list[Host] = []
    seen = set()
    for fam, _, _, _, sockaddr in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
        if fam not in (socket.AF_INET, socket.AF_INET6):
            continue
        scope = sockaddr[3] if fam == socket.AF_INET6 else 0
        key = (sockaddr[0], scope)
        if key not in seen:
            seen.add(key)
            hosts.append(Host(name, sockaddr[0], fam, scope))
    if not hosts:
        raise UsageError(f"cannot resolve host name {name!r}: it has no usable address")
    return hosts
