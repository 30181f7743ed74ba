"""PostgreSQL module on bytes.

Captured: PostgreSQL 15.18 (Debian 12) with trust authentication in a network namespace:
the answer 'N' to our SSLRequest, the reply to our StartupMessage for the unknown role
'portatlas' (AuthenticationOk then a FATAL 28000 error), and, for the version path, the reply
to a startup as the existing role 'postgres' (AuthenticationOk, ParameterStatus...,
BackendKeyData, ReadyForQuery). Constructed from the protocol documentation: the rest.
"""

from __future__ import annotations

import struct

from portatlas.identify.base import NoMatch, Send, StartTLS, Verdict, Wait
from portatlas.identify.protocols import postgresql as pg
from support.probe_talk import converse, feed_chunks, make

ROLE_MISSING = bytes.fromhex(
    "520000000800000000450000006553464154414c0056464154414c00433238303030004d726f6c6520"
    "22706f727461746c61732220646f6573206e6f7420657869737400466d697363696e69742e63004c37"
    "36380052496e697469616c697a6553657373696f6e5573657249640000")
LOGGED_IN = bytes.fromhex(
    "520000000800000000530000001f6170706c69636174696f6e5f6e616d6500706f727461746c617300"
    "5300000019636c69656e745f656e636f64696e670055544638005300000017446174655374796c6500"
    "49534f2c204d445900530000002664656661756c745f7472616e73616374696f6e5f726561645f6f6e"
    "6c79006f6666005300000017696e5f686f745f7374616e646279006f6666005300000019696e746567"
    "65725f6461746574696d6573006f6e00530000001b496e74657276616c5374796c6500706f73746772"
    "657300530000001469735f737570657275736572006f6e0053000000197365727665725f656e636f64"
    "696e6700555446380053000000327365727665725f76657273696f6e0031352e3138202844656269616e"
    "2031352e31382d302b646562313275312900530000002373657373696f6e5f617574686f72697a6174"
    "696f6e00706f7374677265730053000000237374616e646172645f636f6e666f726d696e675f737472"
    "696e6773006f6e00530000001554696d655a6f6e65004574632f555443004b0000000c00004f973372"
    "a1215a0000000549")


def probe(**ctx) -> pg.PostgresqlProbe:
    return make(pg.PostgresqlProbe, 5432, **ctx)


def test_ssl_request_then_startup():
    p = probe()
    talk = converse(p, [b"N", ROLE_MISSING])
    assert talk.sent[0] == bytes.fromhex("0000000804d2162f")
    assert talk.sent[1] == pg.build_startup()
    assert b"user\x00portatlas\x00" in talk.sent[1]
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("postgresql", "PostgreSQL")
    assert verdict.version is None
    assert verdict.extra["ssl"] is False
    assert verdict.extra["error"]["sqlstate"] == "28000"
    assert verdict.extra["error"]["message"] == 'role "portatlas" does not exist'
    assert verdict.confidence == 1.0


def test_version_when_the_server_lets_us_in():
    p = probe()
    p.feed(b"N")
    assert isinstance(p.feed(LOGGED_IN[:9]), Wait)  # AuthenticationOk alone: wait for more
    verdict = feed_chunks(p, LOGGED_IN, [9, 100, 1000])
    assert verdict.version == "15.18"
    assert verdict.extra["server_version"] == "15.18 (Debian 15.18-0+deb12u1)"


def test_ssl_yes_goes_to_tls_and_continues_inside():
    p = probe()
    p.start()
    step = p.feed(b"S")
    assert isinstance(step, StartTLS)
    step = p.tls_ready({"version": "TLSv1.3"})
    assert isinstance(step, Send) and step.data == pg.build_startup()
    verdict = p.feed(ROLE_MISSING)
    assert verdict.extra["ssl"] is True and verdict.product == "PostgreSQL"


def test_already_in_tls_skips_the_ssl_request():
    p = probe(in_tls=True)
    step = p.start()
    assert isinstance(step, Send) and step.data == pg.build_startup()


def test_a_lone_n_then_silence_is_a_weak_guess():
    p = probe()
    p.feed(b"N")
    verdict = p.finish(b"")
    assert isinstance(verdict, Verdict) and verdict.confidence < 0.8


def test_scram_request_lists_mechanisms():
    body = struct.pack(">I", 10) + b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"
    p = probe()
    p.feed(b"N")
    verdict = p.feed(b"R" + struct.pack(">I", 4 + len(body)) + body)
    assert verdict.extra["auth"] == "sasl"
    assert verdict.extra["sasl_mechanisms"] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]


def test_not_postgresql():
    assert isinstance(probe().feed(b"HTTP/1.1 400 Bad Request\r\n"), NoMatch)
    assert isinstance(probe().feed(b"NO"), NoMatch)
    p = probe()
    p.feed(b"N")
    assert isinstance(p.feed(b"E\x7f\xff\xff\xff"), NoMatch)   # 2 GiB message
    assert isinstance(p.feed(b"\x00\x00\x00\x00\x10"), NoMatch)
    assert isinstance(p.feed(b"E\x00\x00\x00\x08abcd"), NoMatch)  # no error fields
