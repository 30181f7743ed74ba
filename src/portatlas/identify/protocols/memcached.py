"""memcached text protocol over TCP: 'version' answered by 'VERSION 1.6.18'.
(memcached over UDP, with its frame header, is memcached_udp.py.)"""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import is_prefix

_VERSION = re.compile(rb"^VERSION (\S{1,64})\r?\n")


@register
class MemcachedProbe(Probe):
    name = "memcached"
    transport = "tcp"
    ports = frozenset({11211, 11212, 21201})
    services = frozenset({"memcache", "memcached"})
    rarity = 22
    read_budget = 4096

    def start(self) -> Step:
        return Send(b"version\r\n")

    def feed(self, data: bytes) -> Step:
        if not is_prefix(data, b"VERSION "):
            return NoMatch("not a memcached answer")
        found = _VERSION.match(data)
        if not found:
            return Wait() if len(data) < 128 else NoMatch("malformed VERSION line")
        version = found.group(1).decode("latin-1")
        extra = {}
        product = "memcached"
        if not re.match(r"^\d+\.\d+", version):
            extra["version_text"] = version
            product, version = None, None  # another server speaking the memcached protocol
        return Verdict("memcached", product, version, extra, 1.0,
                       escape_evidence(found.group(0).rstrip()))

    def finish(self, data: bytes) -> Step:
        step = self.feed(data)
        return step if isinstance(step, Verdict) else NoMatch("no memcached answer")
