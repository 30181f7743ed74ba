"""AMQP: we send the AMQP 0-9-1 protocol header. A 0-9-1 broker (RabbitMQ...) answers with a
Connection.Start method frame whose server properties name the product and version; a broker
that speaks another AMQP version answers with its own protocol header (e.g.
'AMQP\\x00\\x01\\x00\\x00' for AMQP 1.0) and closes.
"""

from __future__ import annotations

import struct

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._wire import Bad, Reader, Short, text

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_END = 1, 0xCE
MAX_FRAME = 64 * 1024
MAX_TABLE_DEPTH = 3
PROPERTY_NAMES = ("product", "version", "platform", "cluster_name", "copyright", "information")
# sizes of fixed-width field values (AMQP 0-9-1 with RabbitMQ's errata type letters)
_FIXED = {"t": 1, "b": 1, "B": 1, "s": 2, "u": 2, "I": 4, "i": 4, "l": 8, "L": 8, "f": 4,
          "d": 8, "D": 5, "T": 8, "V": 0}


def parse_table(reader: Reader, depth: int = 0) -> dict[str, object]:
    """A field table: strings and booleans kept, nested tables parsed, the rest skipped."""
    if depth > MAX_TABLE_DEPTH:
        raise Bad("tables nested too deep")
    table = reader.sub(reader.u32())
    out: dict[str, object] = {}
    for _ in range(128):
        if not table.left:
            return out
        name = text(table.take(table.u8()), 128)
        kind = chr(table.u8())
        if kind == "S" or kind == "x":
            value = table.take(table.u32())
            out[name] = text(value, 256) if kind == "S" else value.hex()[:64]
        elif kind == "F":
            out[name] = parse_table(table, depth + 1)
        elif kind == "A":
            table.skip(table.u32())
        elif kind == "t":
            out[name] = table.u8() != 0
        elif kind in _FIXED:
            table.skip(_FIXED[kind])
        else:
            raise Bad(f"unknown field type {kind!r}")
    raise Bad("too many fields")


def parse_connection_start(data: bytes) -> dict:
    """Facts from a Connection.Start frame at the start of `data` (Short: incomplete)."""
    reader = Reader(data)
    kind, channel, size = struct.unpack(">BHI", reader.take(7))
    if kind != FRAME_METHOD or channel != 0 or size > MAX_FRAME:
        raise Bad("not a method frame on channel 0")
    payload = reader.sub(size)
    if reader.u8() != FRAME_END:
        raise Bad("frame end marker missing")
    try:
        class_id, method_id = payload.u16(), payload.u16()
        if (class_id, method_id) != (10, 10):
            raise Bad("not Connection.Start")
        facts: dict = {"amqp_version": f"{payload.u8()}-{payload.u8()}"}  # major-minor: 0-9
        properties = parse_table(payload)
        facts["mechanisms"] = text(payload.take(payload.u32()), 256).split()
        facts["locales"] = text(payload.take(payload.u32()), 256).split()
    except Short as exc:
        raise Bad(f"method overruns its frame: {exc}") from None
    facts["properties"] = properties
    return facts


@register
class AmqpProbe(Probe):
    name = "amqp"
    transport = "tcp"
    ports = frozenset({5672, 5671})
    services = frozenset({"amqp", "amqps"})
    rarity = 40
    read_budget = MAX_FRAME

    def start(self) -> Step:
        return Send(PROTOCOL_HEADER)

    def feed(self, data: bytes) -> Step:
        if b"AMQP".startswith(data[:4]) and len(data) < 8:
            return Wait()
        if data[:4] == b"AMQP":
            # a broker that does not speak 0-9-1 names the version it does speak
            major, minor, revision = data[5], data[6], data[7]
            version = (f"{major}.{minor}.{revision}" if major == 1 else
                       f"{major}-{minor}-{revision}")
            return Verdict("amqp", None, None, {"amqp_version": version, "header_id": data[4]},
                           0.95, escape_evidence(data[:8]))
        if data[:1] != b"\x01":
            return NoMatch("not an AMQP frame")
        try:
            facts = parse_connection_start(data)
        except Short:
            return Wait()
        except Bad as exc:
            return NoMatch(str(exc))
        props = facts.pop("properties")
        for key in PROPERTY_NAMES:
            if isinstance(props.get(key), str):
                facts[key] = props[key]
        capabilities = props.get("capabilities")
        if isinstance(capabilities, dict):
            facts["capabilities"] = sorted(k for k, v in capabilities.items() if v is True)
        product = facts.pop("product", None)
        version = facts.pop("version", None)
        return Verdict("amqp", product, version, facts, 1.0, escape_evidence(data, 160))

    def finish(self, data: bytes) -> Step:
        step = self.feed(data) if data else NoMatch("no answer")
        return NoMatch("reply cut short") if isinstance(step, Wait) else step

