"""Addresses and ports as integers, and sets of them as sorted tuples of inclusive intervals.

The evaluator keeps the source address, the source port and the destination address of a
packet symbolic (a set of possible values) so that one walk over the ruleset answers for every
source at once; these helpers are the set algebra it needs. An interval set is a tuple of
(lo, hi) pairs, sorted, disjoint and not adjacent; () is the empty set.
"""

from __future__ import annotations

import _socket
from bisect import bisect_right
from functools import lru_cache

IntervalSet = tuple  # tuple[tuple[int, int], ...]

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1
PORT_ALL: IntervalSet = ((0, 65535),)


def full(family: str) -> IntervalSet:
    return ((0, V4_MAX),) if family == "ipv4" else ((0, V6_MAX),)


def family_of(text: str) -> str:
    return "ipv6" if ":" in text else "ipv4"


# ipaddress is imported only when needed (it costs a few million instructions to import, and
# the common forms are read and written by the C library's inet_pton / inet_ntop instead)
def _ipaddress():
    import ipaddress  # here: a big import, needed only for the rare forms (see above)
    return ipaddress


@lru_cache(maxsize=8192)
def to_int(text: str) -> int:
    head = text.split("%", 1)[0]
    try:
        # what ipaddress.ip_address accepts, for every form inet_pton accepts (both take
        # dotted quads without leading zeros, and RFC 4291 IPv6 text; tests compare them)
        return int.from_bytes(_socket.inet_pton(
            _socket.AF_INET6 if ":" in head else _socket.AF_INET, head), "big")
    except (OSError, ValueError):
        # anything else: ipaddress decides (and raises ValueError for what is no address)
        return int(_ipaddress().ip_address(head))


def to_text(value: int, family: str) -> str:
    if family == "ipv4" and 0 <= value <= V4_MAX:
        return _socket.inet_ntop(_socket.AF_INET, value.to_bytes(4, "big"))
    # IPv6 text (zero compression, IPv4-mapped forms) is ipaddress's, as it always was
    ipaddress = _ipaddress()
    return str(ipaddress.IPv4Address(value) if family == "ipv4" else ipaddress.IPv6Address(value))


@lru_cache(maxsize=8192)
def parse_net(text: str) -> tuple[str, IntervalSet]:
    """'198.18.0.0/15', '2001:db8::1', '198.18.0.1-198.18.0.9', '10.0.0.0/255.0.0.0'
    -> (family, interval set). Raises ValueError for anything else."""
    text = text.strip()
    head, sep, plen = text.partition("/")
    if plen.isdigit() and "-" not in text:
        # the common case, without ipaddress's objects (rulesets hold thousands of prefixes)
        fam = "ipv6" if ":" in head else "ipv4"
        bits = 128 if fam == "ipv6" else 32
        n = int(plen)
        if n <= bits:
            try:
                value = int.from_bytes(_socket.inet_pton(
                    _socket.AF_INET6 if fam == "ipv6" else _socket.AF_INET, head), "big")
            except OSError:
                raise ValueError(f"bad address {text!r}") from None
            span = (1 << (bits - n)) - 1
            lo = value & ~span
            return fam, ((lo, lo | span),)
    if "-" in text and "/" not in text:
        lo, hi = (part.strip() for part in text.split("-", 1))
        fam = family_of(lo)
        a, b = to_int(lo), to_int(hi)
        if family_of(hi) != fam or a > b:
            raise ValueError(f"bad address range {text!r}")
        return fam, ((a, b),)
    net = _ipaddress().ip_network(text, strict=False)
    fam = "ipv4" if net.version == 4 else "ipv6"
    return fam, ((int(net.network_address), int(net.broadcast_address)),)


@lru_cache(maxsize=8192)
def prefix(text: str, plen: int) -> IntervalSet:
    """parse_net(f"{text}/{plen}")[1], for an address and a prefix length given apart (as nft's
    JSON gives them), without building and splitting the text in the common case."""
    v6 = ":" in text
    bits = 128 if v6 else 32
    if 0 <= plen <= bits:
        try:
            value = int.from_bytes(_socket.inet_pton(
                _socket.AF_INET6 if v6 else _socket.AF_INET, text), "big")
        except (OSError, ValueError):
            pass   # parse_net says what it is (or raises ValueError)
        else:
            span = (1 << (bits - plen)) - 1
            lo = value & ~span
            return ((lo, lo | span),)
    return parse_net(f"{text}/{plen}")[1]


def normalise(pairs) -> IntervalSet:
    """Sort and merge (lo, hi) pairs into an interval set."""
    items = sorted(p for p in pairs if p[0] <= p[1])
    out: list[tuple[int, int]] = []
    for lo, hi in items:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _window(a: IntervalSet, lo: int, hi: int) -> tuple[int, int]:
    """Indexes [i, j) of the intervals of a that overlap lo-hi (a is sorted and disjoint)."""
    i = bisect_right(a, (lo, V6_MAX + 1)) - 1
    if i < 0 or a[i][1] < lo:
        i += 1
    j = bisect_right(a, (hi, V6_MAX + 1))
    return i, j


def intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    if not a or not b:
        return ()
    if len(b) == 1 and len(a) == 1:
        lo, hi = max(a[0][0], b[0][0]), min(a[0][1], b[0][1])
        return ((lo, hi),) if lo <= hi else ()
    if len(b) == 1 and len(a) > 8:
        # a big set (a box cut by many rules) against one range: only the overlap is looked at
        lo, hi = b[0]
        i, j = _window(a, lo, hi)
        if i >= j:
            return ()
        mid = list(a[i:j])
        mid[0] = (max(mid[0][0], lo), mid[0][1])
        mid[-1] = (mid[-1][0], min(mid[-1][1], hi))
        return tuple(mid)
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def subtract(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    if not a or not b:
        return a
    if len(b) == 1 and len(a) > 8:
        lo, hi = b[0]
        i, j = _window(a, lo, hi)
        if i >= j:
            return a
        keep = []
        if a[i][0] < lo:
            keep.append((a[i][0], lo - 1))
        if a[j - 1][1] > hi:
            keep.append((hi + 1, a[j - 1][1]))
        return a[:i] + tuple(keep) + a[j:]
    out = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def contains(a: IntervalSet, value: int) -> bool:
    for lo, hi in a:
        if lo <= value <= hi:
            return True
        if lo > value:
            return False
    return False


def size(a: IntervalSet) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


def _first_prefixes(lo: int, hi: int, bits: int, most: int) -> list[tuple[int, int]]:
    """The first `most` CIDR blocks (start, prefix length) that cover lo-hi exactly, in order
    (what ipaddress.summarize_address_range yields, in integer arithmetic)."""
    out = []
    while lo <= hi and len(out) < most:
        # the biggest aligned block starting at lo that does not pass hi
        size = (lo & -lo) if lo else 1 << bits
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, bits - size.bit_length() + 1))
        lo += size
    return out


@lru_cache(maxsize=4096)
def describe(a: IntervalSet, family: str | None, limit: int = 6) -> list[str]:
    """An interval set as text: CIDR prefixes and ranges for addresses, 'lo-hi' for ports
    (cached: the same source sets come back for every listener; do not modify the result)."""
    out: list[str] = []
    bits = 32 if family == "ipv4" else 128
    for lo, hi in a:
        if family is None:
            out.append(str(lo) if lo == hi else f"{lo}-{hi}")
        else:
            nets = _first_prefixes(lo, hi, bits, 3)
            if len(nets) <= 2:
                out.extend(to_text(start, family) + (f"/{plen}" if plen < bits else "")
                           for start, plen in nets)
            else:
                out.append(f"{to_text(lo, family)}-{to_text(hi, family)}")
        if len(out) >= limit:
            out = out[:limit] + ["..."]
            break
    return out
