"""MQTT: a v3.1.1 CONNECT with a random client id; any broker answers CONNACK (accepted, or
refused with a reason code — both identify MQTT). When the broker accepts us, a SUBSCRIBE to
'$SYS/broker/version' asks Mosquitto-style brokers for their product and version (retained
and sent at once); we never publish anything.
"""

from __future__ import annotations

import re
import secrets
import struct

from ..base import (NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence,
                    register)
from ._wire import Bad, Reader, Short, leading_version, text

CONNACK_CODES = {0: "accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
                 3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}
VERSION_TOPIC = b"$SYS/broker/version"
_PRODUCTS = [(re.compile(r"^mosquitto", re.I), "Mosquitto"), (re.compile(r"emqx", re.I), "EMQX"),
             (re.compile(r"vernemq", re.I), "VerneMQ"), (re.compile(r"hivemq", re.I), "HiveMQ")]


def remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        byte, size = size % 128, size // 128
        out.append(byte | (0x80 if size else 0))
        if not size:
            return bytes(out)


def utf8_field(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def build_connect(client_id: bytes, keepalive: int = 30) -> bytes:
    variable = utf8_field(b"MQTT") + bytes([4, 0x02]) + struct.pack(">H", keepalive)
    payload = utf8_field(client_id)
    return b"\x10" + remaining_length(len(variable) + len(payload)) + variable + payload


def build_subscribe(packet_id: int, topic: bytes = VERSION_TOPIC) -> bytes:
    body = struct.pack(">H", packet_id) + utf8_field(topic) + b"\x00"
    return b"\x82" + remaining_length(len(body)) + body


def read_packet(reader: Reader) -> tuple[int, bytes]:
    """One control packet: (first byte, body). Short when incomplete."""
    first = reader.u8()
    size = 0
    for shift in range(4):
        byte = reader.u8()
        size |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            break
    else:
        raise Bad("remaining length longer than four bytes")
    return first, reader.take(size)


def product_from_version_text(value: str) -> tuple[str | None, str | None]:
    for pattern, product in _PRODUCTS:
        if pattern.search(value):
            return product, leading_version(value)
    return None, None


@register
class MqttProbe(Probe):
    name = "mqtt"
    transport = "tcp"
    ports = frozenset({1883, 8883, 1884})
    services = frozenset({"mqtt", "secure-mqtt", "mqtt-ssl"})
    rarity = 40
    read_budget = 4096

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.client_id = b"portatlas-" + secrets.token_hex(6).encode()
        self.packet_id = 1 + secrets.randbelow(0xFFFE)
        self.connack: dict | None = None
        self.evidence = b""

    def start(self) -> Step:
        return Send(build_connect(self.client_id))

    def feed(self, data: bytes) -> Step:
        if self.connack is None:
            if data[:1] != b"\x20":
                return NoMatch("not a CONNACK")
            if len(data) < 4:
                return Wait()
            if data[1] != 2 or data[2] & 0xFE:
                return NoMatch("malformed CONNACK")
            code = data[3]
            if code not in CONNACK_CODES:
                return NoMatch("unknown CONNACK code")
            self.connack = {"connect_result": CONNACK_CODES[code],
                            "session_present": bool(data[2] & 1)}
            self.evidence = data[:4]
            if code != 0:
                return self._verdict(None)
            return Send(build_subscribe(self.packet_id))
        return self._after_subscribe(data, final=False)

    def finish(self, data: bytes) -> Step:
        if self.connack is None:
            step = self.feed(data) if data else NoMatch("no answer")
            return NoMatch("CONNACK cut short") if isinstance(step, Wait) else step
        return self._after_subscribe(data, final=True)

    def _after_subscribe(self, data: bytes, final: bool) -> Step:
        reader = Reader(data)
        for _ in range(16):
            try:
                first, body = read_packet(reader)
            except (Short, Bad):
                break
            if first >> 4 == 3:  # PUBLISH: topic, (packet id if QoS>0), payload
                topic_reader = Reader(body)
                try:
                    topic = topic_reader.take(topic_reader.u16())
                    if first & 0x06:
                        topic_reader.skip(2)
                except (Short, Bad):
                    break
                if topic == VERSION_TOPIC:
                    payload = body[topic_reader.pos:]
                    self.evidence += data[:reader.pos]
                    return self._verdict(text(payload, 128))
        if final:
            return self._verdict(None)
        return Wait()

    def _verdict(self, version_text: str | None) -> Verdict:
        extra = dict(self.connack or {})
        product = version = None
        if version_text:
            extra["version_text"] = version_text
            product, version = product_from_version_text(version_text)
        return Verdict("mqtt", product, version, extra, 1.0, escape_evidence(self.evidence))
