"""MongoDB module on bytes. MongoDB is not packaged in Debian, so every reply here is
constructed from the MongoDB wire protocol and BSON specifications, with the fields a
MongoDB 7.0 server returns for isMaster and buildInfo.
"""

from __future__ import annotations

import struct

import pytest

from portatlas.identify.base import NoMatch, Send, Verdict, Wait
from portatlas.identify.protocols import mongodb
from portatlas.identify.protocols._wire import Bad, Reader
from support.probe_talk import feed_chunks, make


class ObjectId(bytes):
    pass


class Date(int):
    pass


def bson(doc: dict) -> bytes:
    """A BSON encoder written for these tests (independent of the module's)."""
    out = bytearray()
    for key, value in doc.items():
        name = key.encode() + b"\x00"
        if isinstance(value, bool):
            out += b"\x08" + name + (b"\x01" if value else b"\x00")
        elif isinstance(value, Date):
            out += b"\x09" + name + struct.pack("<q", value)
        elif isinstance(value, int):
            out += (b"\x10" + name + struct.pack("<i", value)) if -2**31 <= value < 2**31 \
                else (b"\x12" + name + struct.pack("<q", value))
        elif isinstance(value, float):
            out += b"\x01" + name + struct.pack("<d", value)
        elif isinstance(value, ObjectId):
            out += b"\x07" + name + bytes(value)
        elif isinstance(value, str):
            raw = value.encode() + b"\x00"
            out += b"\x02" + name + struct.pack("<i", len(raw)) + raw
        elif isinstance(value, list):
            out += b"\x04" + name + bson({str(i): v for i, v in enumerate(value)})
        elif isinstance(value, dict):
            out += b"\x03" + name + bson(value)
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\x00"


IS_MASTER = {
    "ismaster": True, "topologyVersion": {"processId": ObjectId(b"\x65" * 12), "counter": 0},
    "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
    "localTime": Date(1700000000000), "logicalSessionTimeoutMinutes": 30, "connectionId": 5,
    "minWireVersion": 0, "maxWireVersion": 21, "readOnly": False, "ok": 1.0,
}
BUILD_INFO = {
    "version": "7.0.2", "gitVersion": "02b3c655e1302209ef046da6ba3ef6749dd0b62a",
    "modules": [], "allocator": "tcmalloc", "versionArray": [7, 0, 2, 0], "bits": 64,
    "maxBsonObjectSize": 16777216, "storageEngines": ["devnull", "wiredTiger"], "ok": 1.0,
}


def op_reply(response_to: int, doc: dict) -> bytes:
    body = struct.pack("<iqii", 0, 0, 0, 1) + bson(doc)
    return struct.pack("<iiii", 16 + len(body), 77, response_to, 1) + body


def op_msg(response_to: int, doc: dict) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + bson(doc)
    return struct.pack("<iiii", 16 + len(body), 78, response_to, 2013) + body


def probe() -> mongodb.MongodbProbe:
    p = make(mongodb.MongodbProbe, 27017)
    p.request_id = 1000
    return p


def test_is_master_request_is_op_query_on_admin_cmd():
    step = probe().start()
    length, rid, response_to, opcode = struct.unpack("<iiii", step.data[:16])
    assert (length, rid, response_to, opcode) == (len(step.data), 1000, 0, 2004)
    assert b"admin.$cmd\x00" in step.data and b"isMaster" in step.data


def test_modern_server_gets_build_info_over_op_msg():
    p = probe()
    p.start()
    step = feed_chunks(p, op_reply(1000, IS_MASTER), [10, 50, 1000])
    assert isinstance(step, Send)
    assert struct.unpack("<i", step.data[12:16])[0] == 2013 and b"buildInfo" in step.data
    verdict = p.feed(op_msg(1001, BUILD_INFO))
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product, verdict.version) == ("mongodb", "MongoDB", "7.0.2")
    assert verdict.extra["maxWireVersion"] == 21 and verdict.extra["release_at_least"] == "7.0"
    assert verdict.extra["git_version"].startswith("02b3c6")


def test_old_server_gets_build_info_over_op_query():
    p = probe()
    step = p.feed(op_reply(1000, {**IS_MASTER, "maxWireVersion": 5}))
    assert struct.unpack("<i", step.data[12:16])[0] == 2004


def test_build_info_refused_still_mongodb():
    p = probe()
    p.feed(op_reply(1000, IS_MASTER))
    verdict = p.feed(op_msg(1001, {"ok": 0.0, "errmsg": "command buildInfo requires authentication",
                                   "code": 13}))
    assert verdict.version is None and verdict.extra["build_info_error"].endswith("authentication")


def test_build_info_unanswered():
    p = probe()
    p.feed(op_reply(1000, IS_MASTER))
    verdict = p.finish(b"")
    assert isinstance(verdict, Verdict) and verdict.product == "MongoDB"


def test_not_mongodb():
    assert isinstance(probe().feed(op_reply(999, IS_MASTER)), NoMatch)       # other request
    assert isinstance(probe().feed(op_reply(1000, {"ok": 1.0})), NoMatch)    # not isMaster
    assert isinstance(probe().feed(b"HTTP/1.0 400 Bad Request\r\n\r\n"), NoMatch)
    assert isinstance(probe().feed(struct.pack("<iiii", 2**30, 1, 1000, 1)), NoMatch)
    assert isinstance(probe().feed(op_reply(1000, IS_MASTER)[:20]), Wait)


def test_bson_depth_and_lengths_are_bounded():
    deep: dict = {"x": 1}
    for _ in range(10):
        deep = {"d": deep}
    with pytest.raises(Bad):
        mongodb.bson_decode(Reader(bson(deep)))
    lying = bson({"s": "abc"})
    lying = lying[:7] + struct.pack("<i", 2**31 - 1) + lying[11:]  # the string length
    with pytest.raises(Exception) as info:
        mongodb.bson_decode(Reader(lying))
    assert info.type.__name__ in ("Short", "Bad")
