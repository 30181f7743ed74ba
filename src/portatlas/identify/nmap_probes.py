"""Optional refinement with nmap's service fingerprints (`--nmap-probes`).

When Debian's nmap-common is installed, /usr/share/nmap/nmap-service-probes holds about
12,000 'match' lines: a regular expression over a server's reply and the product, version
and extra information it reveals. We read that file at run time (it is never copied into
portatlas: it is under the Nmap Public Source License) and apply its match lines to the bytes
our own probes already received. Nothing is sent for it.

 - identified ports: the match lines of the same service fill in what our module left
   empty (product, version, info), recorded under extra['nmap'];
 - unidentified ports: every hard match line is tried on what was seen; a hit identifies the
   port with confidence 0.75 (a fingerprint, not a protocol exchange).

nmap's expressions are Perl-compatible; the few that Python's `re` cannot compile are
skipped (counted in `NmapProbes.skipped`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portatlas.identify.base import IDENTIFIED, UNIDENTIFIED, Verdict

DEFAULT_PATH = Path("/usr/share/nmap/nmap-service-probes")
SEARCH_BUDGET = 3.0  # seconds spent matching an unidentified port at most

# our protocol name -> nmap service names
NMAP_NAMES: dict[str, tuple[str, ...]] = {
    "http": ("http", "http-proxy", "https"), "tls": ("ssl",), "ssh": ("ssh",),
    "smtp": ("smtp",), "ftp": ("ftp",), "imap": ("imap", "imaps"), "pop3": ("pop3", "pop3s"),
    "redis": ("redis",), "memcached": ("memcached",), "rsync": ("rsync",),
    "telnet": ("telnet",), "irc": ("irc",), "xmpp": ("jabber", "xmpp"), "rtsp": ("rtsp",),
    "sip": ("sip",), "mysql": ("mysql",), "postgresql": ("postgresql",),
    "mongodb": ("mongodb", "mongod"), "mqtt": ("mqtt",), "amqp": ("amqp",),
    "ldap": ("ldap",), "rdp": ("ms-wbt-server",), "smb": ("microsoft-ds", "netbios-ssn"),
    "vnc": ("vnc",), "dns": ("domain",), "ntp": ("ntp",), "snmp": ("snmp",),
}
# nmap service name -> our protocol name (for ports only nmap recognised)
OUR_NAMES = {n: ours for ours, names in NMAP_NAMES.items() for n in names}

_FIELD = re.compile(r"\s*(p|v|i|h|o|d|cpe:)(.)")


@dataclass
class MatchLine:
    line: int
    probe: str
    service: str
    pattern: bytes
    flags: int
    soft: bool
    fields: dict[str, str]
    _compiled: Any = None
    _failed: bool = False

    def regex(self) -> re.Pattern[bytes] | None:
        if self._compiled is None and not self._failed:
            try:
                self._compiled = re.compile(self.pattern, self.flags)
            except (re.error, OverflowError, RecursionError):
                self._failed = True
        return self._compiled


@dataclass
class NmapProbes:
    path: Path
    matches: list[MatchLine] = field(default_factory=list)
    by_service: dict[str, list[MatchLine]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(1 for m in self.matches if m._failed)


_CACHE: dict[str, NmapProbes] = {}
# Debian's file is about 2.5 MB; anything far bigger is not nmap's probes file
MAX_PROBES_BYTES = 32 << 20


def load(path: str | Path | None = None) -> NmapProbes:
    """Parse nmap-service-probes (cached per path). Raises DataError when unreadable."""
    from portatlas.errors import DataError

    where = Path(path) if path else DEFAULT_PATH
    key = str(where)
    if key in _CACHE:
        return _CACHE[key]
    from portatlas.io_limits import read_limited

    try:
        text = read_limited(key, limit=MAX_PROBES_BYTES, what="nmap's service probes file",
                            allow_stdin=False).decode("latin-1")
    except DataError as exc:
        raise DataError(f"cannot read nmap service probes: {exc} (install Debian's "
                        "nmap-common, or give --nmap-probes PATH)") from None
    db = NmapProbes(where)
    probe = "?"
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("Probe "):
            parts = raw.split()
            probe = f"{parts[1]}/{parts[2]}" if len(parts) > 2 else "?"
        elif raw.startswith("match ") or raw.startswith("softmatch "):
            parsed = _parse_match(raw, number, probe)
            if parsed:
                db.matches.append(parsed)
                db.by_service.setdefault(parsed.service, []).append(parsed)
    if not db.matches:
        raise DataError(f"{where} holds no nmap match lines")
    _CACHE[key] = db
    return db


def _parse_match(raw: str, number: int, probe: str) -> MatchLine | None:
    kind, _, rest = raw.partition(" ")
    service, _, rest = rest.partition(" ")
    if not rest.startswith("m") or len(rest) < 3:
        return None
    delim = rest[1]
    end = rest.find(delim, 2)
    if end < 0:
        return None
    pattern = rest[2:end]
    pos = end + 1
    flags = 0
    while pos < len(rest) and rest[pos] in "is":
        flags |= re.I if rest[pos] == "i" else re.S
        pos += 1
    fields: dict[str, str] = {}
    tail = rest[pos:]
    while True:
        found = _FIELD.match(tail)
        if not found:
            break
        name, fdelim = found.groups()
        close = tail.find(fdelim, found.end())
        if close < 0:
            break
        if name != "cpe:":
            fields[name] = tail[found.end():close]
        tail = tail[close + 1:]
        if tail.startswith("a"):
            tail = tail[1:]
    return MatchLine(number, probe, service, pattern.encode("latin-1"), flags,
                     kind == "softmatch", fields)


def _substitute(template: str, match: re.Match[bytes]) -> str:
    def group(n: int) -> bytes:
        try:
            return match.group(n) or b""
        except (IndexError, re.error):
            return b""

    def printable(data: bytes) -> str:
        return "".join(chr(b) for b in data if 0x20 <= b < 0x7F)

    def subst(m: re.Match[str]) -> str:
        if m.group("plain"):
            return printable(group(int(m.group("plain"))))
        if m.group("p"):
            return printable(group(int(m.group("p"))))
        if m.group("s"):
            return printable(group(int(m.group("s")))).replace(m.group("a"), m.group("b"))
        if m.group("i"):
            data = group(int(m.group("i")))
            return str(int.from_bytes(data, "big" if m.group("e") == ">" else "little")) \
                if data else ""
        return ""

    pattern = (r'\$(?:(?P<plain>\d)|P\((?P<p>\d)\)|SUBST\((?P<s>\d),"(?P<a>[^"]*)","(?P<b>[^"]*)"\)'
               r'|I\((?P<i>\d),"(?P<e>[<>])"\))')
    return re.sub(pattern, subst, template).strip()


def _apply(line: MatchLine, data: bytes) -> dict[str, str] | None:
    regex = line.regex()
    if regex is None:
        return None
    try:
        found = regex.search(data)
    except (RecursionError, re.error):
        return None
    if not found:
        return None
    out = {"service": line.service, "line": str(line.line), "probe": line.probe}
    names = {"p": "product", "v": "version", "i": "info", "h": "hostname", "o": "os",
             "d": "device"}
    for key, value in line.fields.items():
        text = _substitute(value, found)
        if text:
            out[names[key]] = text
    return out


def refine(verdict: Verdict, samples: list[tuple[str, bytes]], setting: bool | str) -> None:
    """Fill in product/version from nmap's fingerprints (in place); see the module text."""
    db = load(setting if isinstance(setting, str) else None)
    datas = [data for _, data in samples if data]
    if not datas:
        return
    if verdict.outcome == IDENTIFIED and verdict.protocol:
        names = NMAP_NAMES.get(verdict.protocol, (verdict.protocol,))
        lines = [m for n in names for m in db.by_service.get(n, [])]
        lines.sort(key=lambda m: m.soft)
        for line in lines:
            for data in datas:
                hit = _apply(line, data)
                if hit and not line.soft:
                    verdict.extra["nmap"] = hit
                    verdict.product = verdict.product or hit.get("product")
                    verdict.version = verdict.version or hit.get("version")
                    return
        return
    if verdict.outcome != UNIDENTIFIED:
        return
    end = time.monotonic() + SEARCH_BUDGET
    for line in db.matches:
        if line.soft:
            continue
        if time.monotonic() > end:
            verdict.extra["nmap"] = {"note": "search budget exhausted"}
            return
        for data in datas:
            hit = _apply(line, data)
            if hit:
                verdict.outcome = IDENTIFIED
                verdict.protocol = OUR_NAMES.get(hit["service"], hit["service"])
                verdict.product = hit.get("product")
                verdict.version = hit.get("version")
                verdict.confidence = 0.75
                verdict.extra["nmap"] = hit
                verdict.reason = f"matched nmap-service-probes line {hit['line']}"
                return
