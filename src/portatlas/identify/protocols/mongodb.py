"""MongoDB: a legacy OP_QUERY 'isMaster' on admin.$cmd (every server version answers it, even
6.0+ which kept OP_QUERY for the handshake), then 'buildInfo' (over OP_MSG when the server's
maxWireVersion says it speaks it) for the version. Replies are BSON, parsed minimally.

buildInfo needs no authentication on stock servers; when it is refused the verdict still
stands on the isMaster reply.
"""

from __future__ import annotations

import secrets
import struct

from ..base import (NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence,
                    register)
from ._wire import Bad, Reader, Short, text

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
MAX_MESSAGE = 64 * 1024  # isMaster/buildInfo replies are a few hundred bytes to a few KiB
MAX_DEPTH = 4
MAX_FIELDS = 200
OP_MSG_WIRE_VERSION = 6  # MongoDB 3.6
# maxWireVersion -> the release that introduced it (facts from the MongoDB wire spec)
WIRE_RELEASES = {6: "3.6", 7: "4.0", 8: "4.2", 9: "4.4", 13: "5.0", 17: "6.0", 21: "7.0",
                 25: "8.0"}


# ---- BSON -----------------------------------------------------------------------------------

def bson_encode(fields: dict[str, object]) -> bytes:
    """Just what the requests need: ints, strings."""
    body = bytearray()
    for key, value in fields.items():
        name = key.encode() + b"\x00"
        if isinstance(value, int):
            body += b"\x10" + name + struct.pack("<i", value)
        else:
            raw = str(value).encode() + b"\x00"
            body += b"\x02" + name + struct.pack("<i", len(raw)) + raw
    return struct.pack("<i", len(body) + 5) + bytes(body) + b"\x00"


_FIXED = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x11: 8, 0x12: 8, 0x13: 16,
          0x7F: 0, 0xFF: 0}


def bson_decode(reader: Reader, depth: int = 0) -> dict[str, object]:
    """One document; values we have no use for are skipped but their framing is checked."""
    if depth > MAX_DEPTH:
        raise Bad("documents nested too deep")
    size = reader.u32le()
    if size < 5:
        raise Bad("document too small")
    doc_reader = reader.sub(size - 4)
    out: dict[str, object] = {}
    for _ in range(MAX_FIELDS):
        kind = doc_reader.u8()
        if kind == 0:
            return out
        key = text(doc_reader.cstring(limit=256), 256)
        if kind == 0x02:  # string
            length = doc_reader.u32le()
            out[key] = text(doc_reader.take(length)[:-1], 512)
        elif kind in (0x03, 0x04):  # document, array
            out[key] = bson_decode(doc_reader, depth + 1)
        elif kind == 0x10:
            out[key] = struct.unpack("<i", doc_reader.take(4))[0]
        elif kind == 0x12:
            out[key] = struct.unpack("<q", doc_reader.take(8))[0]
        elif kind == 0x01:
            out[key] = struct.unpack("<d", doc_reader.take(8))[0]
        elif kind == 0x08:
            out[key] = doc_reader.u8() != 0
        elif kind == 0x05:  # binary: length, subtype, bytes
            doc_reader.skip(doc_reader.u32le() + 1)
        elif kind in _FIXED:
            doc_reader.skip(_FIXED[kind])
        else:
            raise Bad(f"BSON type 0x{kind:02x} not handled")
    raise Bad("too many fields")


# ---- wire messages --------------------------------------------------------------------------

def build_op_query(request_id: int, command: dict[str, object]) -> bytes:
    body = (struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1)
            + bson_encode(command))
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_QUERY) + body


def build_op_msg(request_id: int, command: dict[str, object]) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + bson_encode({**command, "$db": "admin"})
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_MSG) + body


def parse_reply(data: bytes, request_id: int) -> dict[str, object]:
    """The first document of a reply to `request_id`. Short: more to come; Bad: not ours."""
    reader = Reader(data)
    length, _rid, response_to, opcode = struct.unpack("<iiii", reader.take(16))
    if not 16 < length <= MAX_MESSAGE:
        raise Bad("impossible message length")
    if response_to != request_id or opcode not in (OP_REPLY, OP_MSG):
        raise Bad("not a reply to our request")
    body = reader.sub(length - 16)
    try:
        if opcode == OP_REPLY:
            body.skip(4 + 8 + 4)   # flags, cursor id, starting from
            if body.u32le() < 1:
                raise Bad("no document returned")
        else:
            body.skip(4)           # flag bits
            if body.u8() != 0:
                raise Bad("first section is not a body")
        return bson_decode(body)
    except Short as exc:
        raise Bad(f"document overruns its message: {exc}") from None


@register
class MongodbProbe(Probe):
    name = "mongodb"
    transport = "tcp"
    ports = frozenset({27017, 27018, 27019})
    services = frozenset({"mongodb", "mongod"})
    rarity = 40
    read_budget = MAX_MESSAGE

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.request_id = 1 + secrets.randbelow(0x7FFFFFFE)
        self.hello: dict | None = None
        self.evidence = b""

    def start(self) -> Step:
        return Send(build_op_query(self.request_id, {"isMaster": 1}))

    def feed(self, data: bytes) -> Step:
        try:
            document = parse_reply(data, self.request_id)
        except Short:
            return Wait()
        except Bad as exc:
            if self.hello is not None:
                return self._verdict(None)
            return NoMatch(str(exc))
        if self.hello is None:
            if "maxWireVersion" not in document and "ismaster" not in document \
                    and "isWritablePrimary" not in document:
                return NoMatch("reply is not an isMaster document")
            self.hello, self.evidence = document, data
            self.request_id += 1
            wire = document.get("maxWireVersion")
            if isinstance(wire, int) and wire >= OP_MSG_WIRE_VERSION:
                return Send(build_op_msg(self.request_id, {"buildInfo": 1}))
            return Send(build_op_query(self.request_id, {"buildInfo": 1}))
        return self._verdict(document)

    def finish(self, data: bytes) -> Step:
        if data:
            step = self.feed(data)
            if not isinstance(step, (Wait, Send)):
                return step
        if self.hello is not None:
            return self._verdict(None)
        return NoMatch("no isMaster reply")

    def _verdict(self, build: dict | None) -> Verdict:
        hello = self.hello or {}
        extra: dict = {}
        for key in ("maxWireVersion", "minWireVersion", "setName", "msg", "isWritablePrimary",
                    "ismaster", "readOnly", "maxBsonObjectSize"):
            if key in hello and not isinstance(hello[key], dict):
                extra[key] = hello[key]
        wire = hello.get("maxWireVersion")
        if isinstance(wire, int):
            known = [release for w, release in WIRE_RELEASES.items() if w <= wire]
            if known:
                extra["release_at_least"] = known[-1]
        version = None
        if build:
            if isinstance(build.get("version"), str):
                version = build["version"]
                if isinstance(build.get("gitVersion"), str):
                    extra["git_version"] = build["gitVersion"]
            elif build.get("errmsg"):
                extra["build_info_error"] = build["errmsg"]
        product = "MongoDB"
        if hello.get("msg") == "isdbgrid":
            extra["router"] = "mongos"
        return Verdict("mongodb", product, version, extra, 1.0, escape_evidence(self.evidence, 120))
