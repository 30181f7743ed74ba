"""memcached over UDP: every datagram starts with an 8-byte frame header (request id, sequence
number, datagram count, reserved), then the text protocol. We ask 'version'; the server answers
'VERSION 1.6.18' under our request id. (memcached over TCP is the text probe 'memcached/tcp'.)
"""

from __future__ import annotations

import re
import secrets
import struct

from ..base import NoMatch, Probe, ProbeContext, Send, Step, Verdict, escape_evidence, register

_VERSION = re.compile(rb"^VERSION ([\x21-\x7e]{1,64})\r\n")


def build_request(request_id: int, command: bytes = b"version\r\n") -> bytes:
    return struct.pack(">HHHH", request_id, 0, 1, 0) + command


def parse_reply(data: bytes, request_id: int) -> tuple[str | None, dict] | None:
    """(version, facts) for a reply to our request, None when it is not one."""
    if len(data) < 8:
        return None
    rid, sequence, count, reserved = struct.unpack(">HHHH", data[:8])
    if rid != request_id or reserved != 0 or count == 0 or sequence >= count:
        return None
    body = data[8:]
    found = _VERSION.match(body)
    if found:
        return found.group(1).decode("ascii"), {"datagrams": count}
    # a server that knows the framing but refuses the command still speaks memcached
    if body.startswith((b"ERROR", b"SERVER_ERROR", b"CLIENT_ERROR")):
        return None, {"datagrams": count, "error": body[:64].decode("ascii", "replace").strip()}
    return None


@register
class MemcachedUdpProbe(Probe):
    name = "memcached"
    transport = "udp"
    ports = frozenset({11211})
    services = frozenset({"memcache", "memcached"})
    rarity = 40
    read_budget = 2048

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.request_id = secrets.randbelow(0x10000)

    def start(self) -> Step:
        return Send(build_request(self.request_id))

    def feed(self, data: bytes) -> Step:
        parsed = parse_reply(data, self.request_id)
        if parsed is None:
            return NoMatch("not a memcached UDP reply")
        version, extra = parsed
        extra["transport"] = "udp"
        confidence = 1.0 if version else 0.8
        return Verdict("memcached", "memcached", version, extra, confidence,
                       escape_evidence(data, 64))

    def finish(self, data: bytes) -> Step:
        return self.feed(data) if data else NoMatch("no answer")
