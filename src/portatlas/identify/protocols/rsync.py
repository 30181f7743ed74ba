"""rsync daemon protocol: the server greets with '@RSYNCD: <protocol version> [digests]'.
We answer with our version and '#list', which asks for the public modules (what an rsync
client prints for 'rsync host::'), and read until '@RSYNCD: EXIT'."""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, complete_lines, is_prefix

_GREETING = re.compile(r"^@RSYNCD: (\d+)(?:\.(\d+))?(.*)$")
MAX_MODULES = 50


@register
class RsyncProbe(Probe):
    name = "rsync"
    transport = "tcp"
    ports = frozenset({873})
    services = frozenset({"rsync"})
    server_first = True
    rarity = 20
    read_budget = 32768

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.extra: dict = {}
        self.evidence = b""

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return banner.startswith(b"@RSYNCD:")

    def feed(self, data: bytes) -> Step:
        if not self.extra:
            if not is_prefix(data, b"@RSYNCD: "):
                return NoMatch("not an rsync greeting")
            lines = complete_lines(data, 1)
            if not lines:
                return Wait() if len(data) < 512 else NoMatch("greeting too long")
            found = _GREETING.match(lines[0])
            if not found:
                return NoMatch("malformed rsync greeting")
            major, minor, rest = found.groups()
            self.extra["protocol_version"] = f"{major}.{minor or 0}"
            digests = rest.split()
            if digests:
                self.extra["digests"] = [clean(d, 20) for d in digests[:10]]
            self.evidence = data[:data.find(b"\n")]
            # protocol 32 clients must list digests; 31 needs nothing more and lists modules
            ours = min(int(major), 31)
            return Send(f"@RSYNCD: {ours}.0\n#list\n".encode())
        lines = complete_lines(data, MAX_MODULES + 5)
        if any(ln.startswith("@RSYNCD: EXIT") for ln in lines) or \
                any(ln.startswith("@ERROR") for ln in lines) or len(lines) > MAX_MODULES:
            return self._verdict(lines, 1.0)
        return Wait()

    def finish(self, data: bytes) -> Step:
        if self.extra:
            return self._verdict(complete_lines(data, MAX_MODULES + 5), 0.95)
        return NoMatch("no rsync greeting")

    def _verdict(self, lines: list[str], confidence: float) -> Verdict:
        modules = []
        for line in lines:
            if line.startswith("@RSYNCD:"):
                continue
            if line.startswith("@ERROR"):
                self.extra["error"] = clean(line, 200)
                continue
            name, _, comment = line.partition("\t")
            if name.strip():
                modules.append({"module": clean(name, 60), "comment": clean(comment, 120)})
        if modules:
            self.extra["modules"] = modules[:MAX_MODULES]
        return Verdict("rsync", None, None, dict(self.extra), confidence,
                       escape_evidence(self.evidence))
