"""AMQP module on bytes.

Captured: RabbitMQ 3.10.8 (Debian 12 rabbitmq-server) in a network namespace, answering our
AMQP 0-9-1 protocol header with Connection.Start. Constructed from the AMQP 0-9-1 and 1.0
specifications: the 1.0 header answer and hostile frames.
"""

from __future__ import annotations

import struct

from portatlas.identify.base import NoMatch, Verdict, Wait
from portatlas.identify.protocols import amqp
from support.probe_talk import converse, feed_chunks, make

RABBITMQ_START = bytes.fromhex(
    "010000000001f0000a000a0009000001cb0c6361706162696c697469657346000000c7127075626c6973"
    "6865725f636f6e6669726d7374011a65786368616e67655f65786368616e67655f62696e64696e677374"
    "010a62617369632e6e61636b740116636f6e73756d65725f63616e63656c5f6e6f7469667974011263"
    "6f6e6e656374696f6e2e626c6f636b6564740113636f6e73756d65725f7072696f72697469657374011c"
    "61757468656e7469636174696f6e5f6661696c7572655f636c6f73657401107065725f636f6e73756d65"
    "725f716f7374010f6469726563745f7265706c795f746f74010c636c75737465725f6e616d6553000000"
    "0972616262697440766d09636f707972696768745300000037436f707972696768742028632920323030"
    "372d3230323220564d776172652c20496e632e206f722069747320616666696c69617465732e0b696e66"
    "6f726d6174696f6e53000000394c6963656e73656420756e64657220746865204d504c20322e302e2057"
    "6562736974653a2068747470733a2f2f7261626269746d712e636f6d08706c6174666f726d5300000011"
    "45726c616e672f4f54502032352e322e330770726f6475637453000000085261626269744d510776657273"
    "696f6e5300000006332e31302e380000000e504c41494e20414d51504c41494e00000005656e5f5553ce")


def probe() -> amqp.AmqpProbe:
    return make(amqp.AmqpProbe, 5672)


def test_rabbitmq_capture():
    talk = converse(probe(), [RABBITMQ_START])
    assert talk.sent == [b"AMQP\x00\x00\x09\x01"]
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product, verdict.version) == ("amqp", "RabbitMQ", "3.10.8")
    assert verdict.extra["amqp_version"] == "0-9"
    assert verdict.extra["platform"] == "Erlang/OTP 25.2.3"
    assert verdict.extra["mechanisms"] == ["PLAIN", "AMQPLAIN"]
    assert "publisher_confirms" in verdict.extra["capabilities"]


def test_capture_in_pieces():
    verdict = feed_chunks(probe(), RABBITMQ_START, [3, 7, 100, 400])
    assert isinstance(verdict, Verdict) and verdict.product == "RabbitMQ"
    assert isinstance(probe().finish(RABBITMQ_START[:100]), NoMatch)


def test_amqp_1_0_broker_answers_its_own_header():
    p = probe()
    assert isinstance(p.feed(b"AMQP"), Wait)
    verdict = p.feed(b"AMQP\x03\x01\x00\x00")
    assert isinstance(verdict, Verdict) and verdict.extra["amqp_version"] == "1.0.0"


def test_hostile_frames():
    assert isinstance(probe().feed(b"\x01\x00\x00\xff\xff\xff\xff"), NoMatch)  # 4 GiB frame
    assert isinstance(probe().feed(b"\x01\x00\x05" + RABBITMQ_START[3:]), NoMatch)  # channel 5
    no_end = RABBITMQ_START[:-1] + b"\x00"
    assert isinstance(probe().feed(no_end), NoMatch)
    inner_lie = bytearray(RABBITMQ_START)
    inner_lie[13:17] = struct.pack(">I", 0x7FFFFFFF)  # server-properties table length
    assert isinstance(probe().feed(bytes(inner_lie)), NoMatch)
    assert isinstance(probe().feed(b"HTTP/1.1 400"), NoMatch)
