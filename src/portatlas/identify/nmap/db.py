"""Parse nmap's service-probe database (nmap-service-probes) into plain records. Pure.

The grammar is nmap's (https://nmap.org/book/vscan-fileformat.html); this parser reads the
whole file and keeps every directive:

    Exclude T:9100-9107            ports never sent probes (T:/U: prefixes, or both)
    Probe TCP NAME q|payload|      a probe: transport, name, C-escaped payload
    ports 21,23,80,8000-8010       ports where the probe is likely to work (tried first,
    sslports 443                   whatever its rarity); sslports: the same inside TLS
    rarity 1..9                    how seldom the probe elicits an answer (intensity filter)
    totalwaitms N / tcpwrappedms N how long nmap waits for the reply / a quick close
    fallback A,B                   other probes whose match lines also apply to its reply
    match SVC m|re|is TEMPLATES    a hard match: names the service
    softmatch SVC m|re|is ...      a soft match: names the service family, probing goes on

A line the parser does not understand is an error (DataError with its line number), never
silently dropped: the whole installed file must load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from portatlas.errors import DataError
from portatlas.identify.nmap.pcre import (WEAK_WEIGHT, first_literal, literal_prefix, literal_weight,
                                          required_literal)

DEFAULT_TOTALWAITMS = 5000   # nmap's default when a probe gives no totalwaitms
DEFAULT_TCPWRAPPEDMS = 2000
DEFAULT_RARITY = 5           # nmap's default for a probe without a rarity line

# version-info fields of a match line: letter -> our name
FIELD_NAMES = {"p": "product", "v": "version", "i": "info", "h": "hostname", "o": "os",
               "d": "device"}


@dataclass
class MatchLine:
    """One match/softmatch line. `line` is its 1-based line number in the file."""

    line: int
    probe: str          # the Probe's name ("NULL", "GetRequest", ...)
    transport: str      # "tcp" | "udp" (of the probe it belongs to)
    service: str
    pattern: bytes
    flags: int          # re.I / re.S
    soft: bool
    tail: str = ""      # the version fields as written (parsed on first use: see templates)
    _regex: Any = None
    _templates: dict[str, str] | None = None
    _cpes: list[str] | None = None
    _prefix: bytes | None = None
    _weak: bool | None = None
    _needle: bytes | None = None
    _nocase: bool | None = None
    _first: int | None = None

    def regex(self) -> "re.Pattern[bytes]":
        """The compiled expression (compiled on first use; see pcre.py for the audit)."""
        if self._regex is None:
            self._regex = re.compile(self.pattern, self.flags)
        return self._regex

    @property
    def templates(self) -> dict[str, str]:
        """p/v/i/h/o/d -> template (the version fields are parsed when first needed: most
        lines never match; ServiceProbes.validate() parses them all)."""
        if self._templates is None:
            self._parse_tail()
        return self._templates

    @property
    def cpes(self) -> list[str]:
        """The CPE templates ("cpe:/a:vendor:product:$1")."""
        if self._cpes is None:
            self._parse_tail()
        return self._cpes

    def _parse_tail(self) -> None:
        try:
            self._templates, self._cpes = parse_fields(self.tail)
        except ValueError as exc:
            raise DataError(f"line {self.line} of nmap's service probes: {exc}") from None

    @property
    def weak(self) -> bool:
        """True when the pattern demands (almost) no literal bytes ('^(?!HTTP).{264}$'):
        such a match proves too little to name a service (pcre.literal_weight)."""
        if self._weak is None:
            self._weak = literal_weight(self.pattern) < WEAK_WEIGHT
        return self._weak

    @property
    def first(self) -> int:
        """The first byte of a match (lower case when case-insensitive), -1 when unsure."""
        if self._first is None:
            byte = first_literal(self.pattern)
            self._first = bytes([byte]).lower()[0] if byte >= 0 and self.nocase else byte
        return self._first

    @property
    def nocase(self) -> bool:
        if self._nocase is None:
            self._nocase = bool(self.flags & re.I) or b"(?i" in self.pattern
        return self._nocase

    @property
    def prefix(self) -> bytes:
        """Literal bytes a reply must start with for this line to match (b"": any); lower
        case when the line is case-insensitive."""
        if self._prefix is None:
            prefix = literal_prefix(self.pattern, self.flags)
            self._prefix = prefix.lower() if self.nocase else prefix
        return self._prefix

    @property
    def needle(self) -> bytes:
        """The longest literal run a match must contain (computed only for lines whose
        prefix passed: it costs more)."""
        if self._needle is None:
            needle = required_literal(self.pattern)
            self._needle = needle.lower() if self.nocase else needle
        return self._needle

    def search(self, data: bytes, lowered: bytes | None = None) -> "re.Match[bytes] | None":
        """regex().search(data), skipped when a literal the pattern demands (its prefix, its
        longest required run) is missing: most lines are never compiled. `lowered` is
        data.lower(), given by callers that test many lines on the same reply."""
        prefix = self.prefix
        if self.nocase:
            if lowered is None:
                lowered = data.lower()
            if not lowered.startswith(prefix) or self.needle not in lowered:
                return None
        elif not data.startswith(prefix) or self.needle not in data:
            return None
        return self.regex().search(data)


@dataclass
class NmapProbe:
    transport: str      # "tcp" | "udp"
    name: str
    payload: bytes
    line: int
    order: int          # position in the file (nmap's own order)
    ports: frozenset[int] = frozenset()
    sslports: frozenset[int] = frozenset()
    rarity: int = DEFAULT_RARITY
    totalwaitms: int = DEFAULT_TOTALWAITMS
    tcpwrappedms: int = DEFAULT_TCPWRAPPEDMS
    fallback: tuple[str, ...] = ()
    no_payload: bool = False
    matches: list[MatchLine] = field(default_factory=list)
    _by_first: dict[int, list[MatchLine]] = field(default_factory=dict, repr=False)

    def candidates(self, data: bytes) -> list[MatchLine]:
        """The lines that can match a reply starting like `data`, in file order: those
        without a literal prefix, and those whose prefix starts with the reply's first byte
        (either case for case-insensitive lines). Cached per first byte: one dictionary
        look-up replaces thousands of per-line checks."""
        first = data[0] if data else -1
        found = self._by_first.get(first)
        if found is None:
            lower = bytes([first]).lower()[0] if first >= 0 else -1
            found = [m for m in self.matches
                     if m.first < 0 or m.first == (lower if m.nocase else first)]
            self._by_first[first] = found
        return found

    @property
    def key(self) -> str:
        return f"{self.transport}/{self.name}"

    def services(self) -> frozenset[str]:
        """Services its own match lines can name (hard or soft)."""
        return frozenset(m.service for m in self.matches)


@dataclass
class ServiceProbes:
    path: str
    probes: list[NmapProbe] = field(default_factory=list)
    exclude: dict[str, frozenset[int]] = field(default_factory=dict)  # transport -> ports
    by_key: dict[str, NmapProbe] = field(default_factory=dict)

    def probe(self, transport: str, name: str) -> NmapProbe | None:
        return self.by_key.get(f"{transport}/{name}")

    def fallback_probe(self, probe: NmapProbe, name: str) -> NmapProbe | None:
        """The probe a `fallback` name means: of the same transport when there is one, else
        of the other (the installed file has DNSVersionBindReqTCP fall back to the UDP
        DNSVersionBindReq: its lines then judge the TCP reply without its length prefix)."""
        other = "udp" if probe.transport == "tcp" else "tcp"
        return self.probe(probe.transport, name) or self.probe(other, name)

    @property
    def match_lines(self) -> list[MatchLine]:
        return [m for p in self.probes for m in p.matches]

    def validate(self) -> None:
        """Parse every line's version fields now (load() leaves them for first use); raises
        DataError naming the first malformed line."""
        for line in self.match_lines:
            line.templates

    def counts(self) -> dict[str, int]:
        lines = self.match_lines
        soft = sum(1 for m in lines if m.soft)
        return {"probes": len(self.probes), "match": len(lines) - soft, "softmatch": soft,
                "tcp_probes": sum(1 for p in self.probes if p.transport == "tcp"),
                "udp_probes": sum(1 for p in self.probes if p.transport == "udp")}


# --- pieces ---------------------------------------------------------------------------------
_ESCAPES = {"\\": 0x5C, "0": 0, "a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}


def unescape_payload(text: str) -> bytes:
    """A probe string's C-style escapes (\\\\ \\0 \\a \\b \\f \\n \\r \\t \\v \\xHH) to bytes;
    any other escaped character stands for itself (nmap's cstring_unescape)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out.append(ord(ch) & 0xFF)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2:i + 4]):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ord(nxt) & 0xFF)
            i += 2
    return bytes(out)


def parse_ports(text: str) -> frozenset[int]:
    """'21,23,80,8000-8010' -> the set of ports."""
    ports: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        a, b = int(low), int(high or low)
        if not (0 <= a <= b <= 65535):
            raise ValueError(f"bad port range {part!r}")
        ports.update(range(a, b + 1))
    return frozenset(ports)


def parse_exclude(text: str) -> dict[str, frozenset[int]]:
    """'T:9100-9107,U:53' ('T:'/'U:' switch the transport; none = both)."""
    out: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    current = ("tcp", "udp")
    for part in text.replace(" ", "").split(","):
        if part[:2].upper() in ("T:", "U:"):
            current = ("tcp",) if part[0].upper() == "T" else ("udp",)
            part = part[2:]
        if not part:
            continue
        for transport in current:
            out[transport].update(parse_ports(part))
    return {t: frozenset(p) for t, p in out.items()}


def _delimited(text: str, pos: int) -> tuple[str, int]:
    """text[pos] is the delimiter: (the content up to the next delimiter, the index after)."""
    if pos >= len(text):
        raise ValueError("delimiter missing")
    delim = text[pos]
    end = text.find(delim, pos + 1)
    if end < 0:
        raise ValueError(f"no closing {delim!r}")
    return text[pos + 1:end], end + 1


def parse_match(raw: str, number: int, probe: NmapProbe) -> MatchLine:
    """A 'match' or 'softmatch' line of `probe` (ValueError when malformed)."""
    kind, _, rest = raw.partition(" ")
    rest = rest.lstrip(" ")
    service, _, rest = rest.partition(" ")
    rest = rest.lstrip(" ")
    if not service or not rest.startswith("m"):
        raise ValueError("expected 'SERVICE m<delim>regex<delim>'")
    pattern, pos = _delimited(rest, 1)
    flags = 0
    while pos < len(rest) and rest[pos] in "is":
        flags |= re.I if rest[pos] == "i" else re.S
        pos += 1
    return MatchLine(number, probe.name, probe.transport, service, pattern.encode("latin-1"),
                     flags, kind == "softmatch", tail=rest[pos:])


def parse_fields(rest: str) -> tuple[dict[str, str], list[str]]:
    """The version fields after a match line's pattern: ({letter: template}, [cpe, ...])."""
    templates: dict[str, str] = {}
    cpes: list[str] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        if pos >= len(rest):
            break
        if rest.startswith("cpe:", pos):
            value, pos = _delimited(rest, pos + 4)
            if pos < len(rest) and rest[pos] == "a":  # 'a': the CPE is auto-generated
                pos += 1
            cpes.append("cpe:/" + value if not value.startswith("/") else "cpe:" + value)
            continue
        letter = rest[pos]
        if letter not in FIELD_NAMES:
            raise ValueError(f"unknown version field {rest[pos:pos + 8]!r}")
        value, pos = _delimited(rest, pos + 1)
        templates[letter] = value
    return templates, cpes


# --- the whole file ----------------------------------------------------------------------------
def parse(text: str, path: str = "nmap-service-probes") -> ServiceProbes:
    """The whole database. Raises DataError(with the line number) on any malformed line."""
    db = ServiceProbes(path)
    probe: NmapProbe | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, arg = line.partition(" ")
        try:
            if word == "Probe":
                probe = _parse_probe(arg, number, len(db.probes))
                if probe.key in db.by_key:
                    raise ValueError(f"probe {probe.key} defined twice")
                db.probes.append(probe)
                db.by_key[probe.key] = probe
                continue
            if word == "Exclude":
                for transport, ports in parse_exclude(arg).items():
                    db.exclude[transport] = db.exclude.get(transport, frozenset()) | ports
                continue
            if probe is None:
                raise ValueError(f"{word!r} before the first Probe")
            if word in ("match", "softmatch"):
                probe.matches.append(parse_match(line, number, probe))
            elif word == "ports":
                probe.ports = parse_ports(arg)
            elif word == "sslports":
                probe.sslports = parse_ports(arg)
            elif word == "rarity":
                probe.rarity = int(arg)
            elif word == "totalwaitms":
                probe.totalwaitms = int(arg)
            elif word == "tcpwrappedms":
                probe.tcpwrappedms = int(arg)
            elif word == "fallback":
                probe.fallback = tuple(n for n in arg.replace(" ", "").split(",") if n)
            else:
                raise ValueError(f"unknown directive {word!r}")
        except ValueError as exc:
            raise DataError(f"{path}:{number}: cannot parse nmap service probes: {exc}") from None
    if not db.probes:
        raise DataError(f"{path} holds no nmap probes")
    for p in db.probes:  # a fallback must name a known probe (see fallback_probe)
        for name in p.fallback:
            if db.fallback_probe(p, name) is None:
                raise DataError(f"{path}:{p.line}: probe {p.name} falls back to unknown {name!r}")
    return db


def _parse_probe(arg: str, number: int, order: int) -> NmapProbe:
    transport, _, rest = arg.partition(" ")
    name, _, rest = rest.strip().partition(" ")
    transport = transport.lower()
    rest = rest.strip()
    if transport not in ("tcp", "udp") or not name or not rest.startswith("q"):
        raise ValueError("expected 'Probe TCP|UDP NAME q<delim>payload<delim>'")
    payload, pos = _delimited(rest, 1)
    options = rest[pos:].split()
    return NmapProbe(transport, name, unescape_payload(payload), number, order,
                     no_payload="no-payload" in options)
