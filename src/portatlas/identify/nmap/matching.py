"""Which match lines apply to a reply, and what they say. Pure (bytes in, a Hit out).

The own-probe rule (nmap's): the reply to probe P is tested against P's own match lines, then
against the lines of each probe in P's `fallback` (left to right), then - TCP only - against
the NULL probe's lines (a greeting arrives before any reply, so it may open every reply).
No other line is ever tried: a UDP probe's lines never see a TCP greeting, a MongoDB probe's
lines never see another probe's reply.

In each probe's lines, in file order, the first hard match wins; a soft match is remembered
(the first one) and the search goes on for a hard one. A hard match of a weak line (one that
demands almost no literal bytes, db.MatchLine.weak) is only kept if nothing better comes:
the caller does not name a service from it.

A product is not a behaviour: a line whose product text is fixed (no `$n` from the reply),
whose product is not written anywhere in the reply, and which matched a reply that is almost
all a copy of the probe's own payload (fewer than MIN_OWN_BYTES bytes of the server's own,
e.g. a DNS version.bind question sent back with rcode REFUSED, which many servers do) names
a service but not a product: product, version and CPE are dropped and `unnamed_product` keeps
what the line would have said (docs/identify.md, "A behaviour is not a product").

A reflection is not an answer: a reply that repeats the probe's own payload (session.py's
rule, the same for portatlas's modules) is only judged by `echo` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from portatlas.identify.nmap.db import FIELD_NAMES, MatchLine, NmapProbe, ServiceProbes
from portatlas.identify.session import is_reflection

ECHO = "echo"


@dataclass
class Hit:
    """What a match line said about a reply."""

    service: str
    soft: bool
    probe: str             # the probe whose reply matched
    line: int              # the match line's number in the file
    line_probe: str        # the probe the line belongs to (differs for fallbacks/NULL)
    transport: str
    fields: dict[str, str] = field(default_factory=dict)  # product, version, info, ...
    cpe: list[str] = field(default_factory=list)
    tunnel: str | None = None  # "ssl" when the reply came through TLS
    weak: bool = False         # the line demands almost no literal bytes (db.MatchLine.weak)
    unnamed_product: str | None = None  # the line's fixed product, dropped (see the module text)

    @property
    def product(self) -> str | None:
        return self.fields.get("product")

    @property
    def version(self) -> str | None:
        return self.fields.get("version")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.service, "soft": self.soft,
                               "probe": self.probe, "line": self.line,
                               "line_probe": self.line_probe}
        out.update(self.fields)
        if self.cpe:
            out["cpe"] = list(self.cpe)
        if self.tunnel:
            out["tunnel"] = self.tunnel
        if self.weak:
            out["weak"] = True
        if self.unnamed_product:
            out["unnamed_product"] = self.unnamed_product
        return out


# --- version templates --------------------------------------------------------------------------
_TEMPLATE = re.compile(
    r'\$(?:(?P<plain>[1-9])'
    r'|P\((?P<p>[1-9])\)'
    r'|SUBST\((?P<s>[1-9]),"(?P<a>[^"]*)","(?P<b>[^"]*)"\)'
    r'|I\((?P<i>[1-9]),"(?P<e>[<>])"\))')


def _safe(data: bytes) -> str:
    """Bytes of a reply as text that is safe on a terminal: printable ASCII kept, the rest
    \\xNN-escaped (nmap copies `$1` verbatim; we never print raw control bytes)."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in data)


def _printable(data: bytes) -> str:
    """nmap's $P(): only the printable characters."""
    return "".join(chr(b) for b in data if 0x20 <= b < 0x7F)


def substitute(template: str, found: "re.Match[bytes]") -> str:
    """Expand $1..$9, $P(n), $SUBST(n,"from","to") and $I(n,"<"|">") with the groups of
    `found` (a group that did not take part counts as empty)."""

    def group(n: int) -> bytes:
        if n > (found.re.groups or 0):
            return b""
        return found.group(n) or b""

    def one(m: "re.Match[str]") -> str:
        if m.group("plain"):
            return _safe(group(int(m.group("plain"))))
        if m.group("p"):
            return _printable(group(int(m.group("p"))))
        if m.group("s"):
            text = group(int(m.group("s")))
            return _safe(text.replace(m.group("a").encode("latin-1"),
                                      m.group("b").encode("latin-1")))
        data = group(int(m.group("i")))
        if not data or len(data) > 8:  # nmap: an unsigned integer of at most 8 bytes
            return ""
        return str(int.from_bytes(data, "big" if m.group("e") == ">" else "little"))

    return _TEMPLATE.sub(one, template)


def expand(line: MatchLine, found: "re.Match[bytes]") -> tuple[dict[str, str], list[str]]:
    """The version fields and CPEs a matching line gives (empty values left out)."""
    fields = {}
    for letter, template in line.templates.items():
        text = substitute(template, found).strip()
        if text:
            fields[FIELD_NAMES[letter]] = text
    cpes = [c for c in (substitute(t, found).strip() for t in line.cpes) if c]
    return fields, cpes


# --- a behaviour is not a product -------------------------------------------------------------
MIN_OWN_BYTES = 8    # bytes of its own a reply needs before a fixed product may be believed
_OWN_WINDOW = 1024   # bytes of the reply compared with the payload (bounded work)


def own_bytes(reply: bytes, payload: bytes) -> int:
    """How many bytes of `reply` are the server's own: those that differ from the payload at
    the same offset (a question sent back with a few header bits changed, as DNS servers do,
    has only those bits of its own). Linear and bounded: it runs inside the event loop. A
    reply that moves the copied bytes elsewhere counts them as its own (the product is
    then kept, as nmap would)."""
    reply = reply[:_OWN_WINDOW]
    same = sum(1 for a, b in zip(reply, payload) if a == b)
    return len(reply) - same


def product_named(line: MatchLine, product: str, reply: bytes, payload: bytes) -> bool:
    """Does the reply name the line's product (see the module text)?"""
    if "$" in line.templates.get("p", ""):
        return True  # taken from the reply itself
    lowered = reply.lower()
    words = re.findall(r"[a-z][a-z0-9]{2,}", product.lower())
    if any(w.encode() in lowered for w in words):
        return True
    return own_bytes(reply, payload) >= MIN_OWN_BYTES


def _behaviour_only(fields: dict[str, str], cpes: list[str]) -> tuple[dict, list, str]:
    product = fields.get("product", "")
    kept = {k: v for k, v in fields.items() if k not in ("product", "version")}
    return kept, [], product


# --- the own-probe rule ---------------------------------------------------------------------------
def applicable(db: ServiceProbes, probe: NmapProbe) -> Iterator[NmapProbe]:
    """The probes whose lines may judge `probe`'s reply: itself, its fallbacks, then NULL
    (TCP only); each once."""
    seen = set()
    chain = [probe] + [db.fallback_probe(probe, n) for n in probe.fallback]
    if probe.transport == "tcp":
        chain.append(db.probe("tcp", "NULL"))
    for p in chain:
        if p is not None and p.key not in seen:
            seen.add(p.key)
            yield p


def match_reply(db: ServiceProbes, probe: NmapProbe, data: bytes, *,
                tunnel: str | None = None, stats: dict[str, int] | None = None,
                greeting_len: int = 0) -> Hit | None:
    r"""The verdict of the applicable match lines on the reply `data` to `probe`: the first
    hard match, else the first soft match, else None. `stats` (optional) counts lines tried.

    `greeting_len`: how many leading bytes of `data` are the server's greeting (sent before
    it read our probe). A line of a probe other than NULL must match into what came after:
    a greeting is the NULL probe's reply, not evidence that `probe` was answered (this is
    stricter than nmap, which concatenates both; it keeps e.g. the MongoDB probe's
    '^.*version.....([.\d]+)' off a text greeting that mentions a version)."""
    soft: Hit | None = None
    weak: Hit | None = None
    tried = 0
    reflected = is_reflection(data[greeting_len:], probe.payload)
    for owner in applicable(db, probe):
        subject, payload = data, probe.payload
        if owner.transport != probe.transport:
            subject = _unframed(data)
            if subject is None:
                continue
            payload = _unframed(payload) or payload  # compared at the same offsets
        lowered = subject.lower()
        for line in owner.candidates(subject):
            if soft is not None and line.soft:
                continue  # one soft match is enough; only a hard one can improve it
            if reflected and line.service != ECHO:
                continue  # our own bytes sent back: evidence of an echo, nothing else
            tried += 1
            found = line.search(subject, lowered)
            if not found:
                continue
            if greeting_len and owner.name != "NULL" and found.end() <= greeting_len:
                continue  # matched the greeting only: that is NULL's business
            fields, cpes = expand(line, found)
            unnamed = None
            if fields.get("product") and not product_named(line, fields["product"], subject,
                                                           payload):
                fields, cpes, unnamed = _behaviour_only(fields, cpes)
            hit = Hit(line.service, line.soft, probe.name, line.line, owner.name,
                      probe.transport, fields, cpes, tunnel, weak=line.weak,
                      unnamed_product=unnamed)
            if not line.soft and not line.weak:
                if stats is not None:
                    stats["lines"] = stats.get("lines", 0) + tried
                return hit
            if line.soft:
                soft = hit
            elif weak is None:
                weak = hit  # kept, but a line with real content may still name it
    if stats is not None:
        stats["lines"] = stats.get("lines", 0) + tried
    return soft or weak


def _unframed(data: bytes) -> bytes | None:
    """A TCP reply judged by a UDP probe's lines: without the 2-byte length prefix of
    DNS-style framing (None when the reply is not framed that way)."""
    if len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2:
        return data[2:]
    return None


def possible_services(db: ServiceProbes, probe: NmapProbe) -> frozenset[str]:
    """Services the lines applicable to `probe`'s reply can name (softmatch narrowing)."""
    out: set[str] = set()
    for p in applicable(db, probe):
        if p.name == "NULL" and probe.name != "NULL":
            continue  # NULL's lines were already tried on the greeting
        out |= p.services()
    return frozenset(out)


def lines_for(db: ServiceProbes, probes: Iterable[NmapProbe]) -> list[MatchLine]:
    return [m for p in probes for m in p.matches]
