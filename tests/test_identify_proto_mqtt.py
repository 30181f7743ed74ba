"""MQTT module on bytes.

Captured: Mosquitto 2.0.11 (Debian 12, anonymous allowed) in a network namespace: the CONNACK
to our CONNECT, then SUBACK and the retained $SYS/broker/version PUBLISH after our SUBSCRIBE
(packet id 0x1234). Constructed from the MQTT 3.1.1 standard: refusals and junk.
"""

from __future__ import annotations

from portatlas.identify.base import NoMatch, Verdict, Wait
from portatlas.identify.protocols import mqtt
from support.probe_talk import converse, make

CONNACK = bytes.fromhex("20020000")
SUBACK_AND_VERSION = bytes.fromhex(
    "9003123400312d0013245359532f62726f6b65722f76657273696f6e6d6f7371756974746f2076657273"
    "696f6e20322e302e3131")


def probe() -> mqtt.MqttProbe:
    p = make(mqtt.MqttProbe, 1883)
    p.packet_id = 0x1234
    return p


def test_connect_packet():
    data = mqtt.build_connect(b"portatlas-cap")
    assert data == bytes.fromhex("101900044d5154540402001e000d") + b"portatlas-cap"
    assert mqtt.build_subscribe(0x1234) == (bytes.fromhex("8218123400")
                                            + b"\x13$SYS/broker/version\x00")


def test_client_id_is_random():
    assert probe().client_id != probe().client_id


def test_mosquitto_capture():
    talk = converse(probe(), [CONNACK, SUBACK_AND_VERSION])
    assert talk.sent[1] == mqtt.build_subscribe(0x1234)
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product, verdict.version) == ("mqtt", "Mosquitto", "2.0.11")
    assert verdict.extra["connect_result"] == "accepted"
    assert "mosquitto version" in verdict.evidence


def test_suback_alone_waits_then_broker_without_version_topic():
    p = probe()
    converse(p, [CONNACK])
    assert isinstance(p.feed(SUBACK_AND_VERSION[:5]), Wait)
    verdict = p.finish(SUBACK_AND_VERSION[:5])
    assert isinstance(verdict, Verdict) and verdict.product is None


def test_refused_connection_is_still_mqtt():
    verdict = converse(probe(), [b"\x20\x02\x00\x05"]).last
    assert isinstance(verdict, Verdict) and verdict.extra["connect_result"] == "not authorized"


def test_not_mqtt():
    assert isinstance(probe().feed(b"\x20\x03\x00\x00\x00"), NoMatch)
    assert isinstance(probe().feed(b"\x20\x02\x00\x09"), NoMatch)
    assert isinstance(probe().feed(b"HTTP/1.1 400"), NoMatch)
    assert isinstance(probe().feed(b"\x20"), Wait)
    assert isinstance(probe().finish(b"\x20"), NoMatch)


def test_product_texts():
    assert mqtt.product_from_version_text("mosquitto version 2.0.18") == ("Mosquitto", "2.0.18")
    assert mqtt.product_from_version_text("5.3.0") == (None, None)
