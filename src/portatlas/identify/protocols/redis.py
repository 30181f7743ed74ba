"""Redis (RESP): PING and INFO server, pipelined. +PONG then a bulk string with
'redis_version:...'; a server with a password answers -NOAUTH, one in protected mode
-DENIED (both still Redis). Valkey, KeyDB and Dragonfly answer the same way and name
themselves in INFO."""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean

REQUEST = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
_BULK = re.compile(rb"\$(\d{1,7})\r\n")
_REDISH_ERRORS = (b"-NOAUTH", b"-DENIED", b"-ERR operation not permitted", b"-WRONGPASS",
                  b"-LOADING", b"-MASTERDOWN", b"-MISCONF", b"-BUSY")
INFO_KEYS = ("redis_version", "valkey_version", "dragonfly_version", "redis_mode", "os",
             "arch_bits", "tcp_port", "server_name", "uptime_in_days", "role")


def parse_info(text: bytes) -> dict[str, str]:
    info: dict[str, str] = {}
    for raw in text.split(b"\n")[:200]:
        key, sep, value = raw.strip().partition(b":")
        if sep and key and not key.startswith(b"#"):
            info[key.decode("latin-1")] = clean(value.decode("latin-1"), 120)
    return info


@register
class RedisProbe(Probe):
    name = "redis"
    transport = "tcp"
    ports = frozenset({6379, 6380, 16379, 26379})
    services = frozenset({"redis"})
    rarity = 20
    read_budget = 65536

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        # protected mode greets a non-local client with -DENIED before it says anything
        return banner.startswith((b"-DENIED", b"-NOAUTH", b"-ERR max number of clients"))

    def start(self) -> Step:
        return Send(REQUEST)

    def feed(self, data: bytes) -> Step:
        if data[:1] not in (b"+", b"-", b"$"):
            return NoMatch("not a RESP reply")
        if b"\r\n" not in data:
            return Wait() if len(data) < 1024 else NoMatch("no RESP line")
        first = data.split(b"\r\n", 1)[0]
        if first.startswith(_REDISH_ERRORS):
            return self._verdict({}, data, 0.95, first)
        if first == b"+PONG":
            rest = data[len(first) + 2:]
            if not rest:
                return Wait()
            bulk = _BULK.match(rest)
            if bulk:
                size = int(bulk.group(1))
                body = rest[bulk.end():bulk.end() + size]
                if len(body) < size and len(data) < self.read_budget:
                    return Wait()
                return self._verdict(parse_info(body), data, 1.0, first)
            if rest.startswith(b"-"):
                return self._verdict({}, data, 0.95, rest.split(b"\r\n", 1)[0])
            return self._verdict({}, data, 0.9, first)
        if first.startswith(b"-ERR"):
            # a generic RESP error: Redis-like, but other servers speak RESP too
            return self._verdict({}, data, 0.7, first)
        return NoMatch("unexpected RESP reply")

    def finish(self, data: bytes) -> Step:
        if data.startswith(b"+PONG") or data.startswith(_REDISH_ERRORS):
            return self._verdict({}, data, 0.9, data.split(b"\r\n", 1)[0])
        return NoMatch("no Redis answer")

    def _verdict(self, info: dict, data: bytes, confidence: float, first: bytes) -> Verdict:
        extra = {k: info[k] for k in INFO_KEYS if k in info}
        product, version = "Redis", info.get("redis_version")
        if "valkey_version" in info or info.get("server_name", "").lower() == "valkey":
            product, version = "Valkey", info.get("valkey_version", version)
        elif "dragonfly_version" in info:
            product, version = "Dragonfly", info["dragonfly_version"]
        if first.startswith(b"-"):
            extra["error"] = clean(first[1:].decode("latin-1"), 200)
            if first.startswith(b"-NOAUTH") or first.startswith(b"-WRONGPASS"):
                extra["auth"] = "required"
            if first.startswith(b"-DENIED"):
                extra["protected_mode"] = True
        if confidence < 0.8:
            product = None
        return Verdict("redis", product, version, extra, confidence,
                       escape_evidence(data[:120]))
