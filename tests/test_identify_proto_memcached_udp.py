"""memcached over UDP on bytes.

Captured: memcached 1.6.18 (Debian 12) in a network namespace with UDP on, answering our
'version' request with request id 0x4d43. Constructed from memcached's protocol.txt: the rest.
"""

from __future__ import annotations

from portatlas.identify.base import NoMatch, Verdict
from portatlas.identify.protocols import memcached_udp
from support.probe_talk import converse, make

MEMCACHED_REPLY = bytes.fromhex("4d4300000001000056455253494f4e20312e362e31380d0a")


def probe() -> memcached_udp.MemcachedUdpProbe:
    p = make(memcached_udp.MemcachedUdpProbe, 11211)
    p.request_id = 0x4D43
    return p


def test_request_has_the_frame_header():
    assert memcached_udp.build_request(0x4D43) == b"\x4d\x43\x00\x00\x00\x01\x00\x00version\r\n"


def test_capture():
    talk = converse(probe(), [MEMCACHED_REPLY])
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("memcached", "memcached")
    assert verdict.version == "1.6.18"
    assert verdict.extra["transport"] == "udp" and verdict.confidence == 1.0


def test_error_reply_is_memcached_without_version():
    verdict = probe().feed(b"\x4d\x43\x00\x00\x00\x01\x00\x00ERROR\r\n")
    assert isinstance(verdict, Verdict) and verdict.version is None and verdict.confidence < 1.0


def test_not_memcached():
    assert isinstance(probe().feed(MEMCACHED_REPLY[:7]), NoMatch)
    assert isinstance(probe().feed(b"\x00\x01" + MEMCACHED_REPLY[2:]), NoMatch)  # other id
    assert isinstance(probe().feed(b"\x4d\x43\x00\x05\x00\x01\x00\x00VERSION 1\r\n"), NoMatch)
    assert isinstance(probe().feed(b"\x4d\x43\x00\x00\x00\x01\x00\x00hello\r\n"), NoMatch)
    assert isinstance(probe().finish(b""), NoMatch)
