"""A minimal BER encoder/decoder for the ASN.1 that SNMP and LDAP put on the wire.

Only definite lengths and single-byte tags are supported: both protocols forbid the
indefinite form, and every tag they use fits one byte. Decoding is bounded by the bytes at
hand (see _wire.Reader), so a hostile length field costs nothing.
"""

from __future__ import annotations

from ._wire import Bad, Reader

# universal tags
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
ENUMERATED = 0x0A
SEQUENCE = 0x30
SET = 0x31
BOOLEAN = 0x01

MAX_INT_BYTES = 16  # integers longer than this are refused rather than turned into huge ints


# ---- encoding -------------------------------------------------------------------------------

def encode_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def integer(value: int, tag: int = INTEGER) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def octets(value: bytes | str, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, value.encode() if isinstance(value, str) else value)


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def null() -> bytes:
    return tlv(NULL, b"")


def oid(dotted: str) -> bytes:
    arcs = [int(part) for part in dotted.split(".")]
    body = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def sequence(*parts: bytes, tag: int = SEQUENCE) -> bytes:
    return tlv(tag, b"".join(parts))


# ---- decoding -------------------------------------------------------------------------------

def read_tlv(reader: Reader, max_size: int | None = None) -> tuple[int, Reader]:
    """Read one element; returns its tag byte and a reader over its content.

    Raises Short when the element is not complete yet, Bad when it cannot be BER (or declares
    more than `max_size` content bytes: a stream we would wait for in vain)."""
    tag = reader.u8()
    if tag & 0x1F == 0x1F:
        raise Bad("multi-byte tag")
    first = reader.u8()
    if first < 0x80:
        size = first
    elif first == 0x80:
        raise Bad("indefinite length")
    else:
        count = first & 0x7F
        if count > 4:
            raise Bad("length of length too big")
        size = int.from_bytes(reader.take(count), "big")
    if max_size is not None and size > max_size:
        raise Bad("element larger than allowed")
    return tag, reader.sub(size)


def expect(reader: Reader, tag: int) -> Reader:
    got, content = read_tlv(reader)
    if got != tag:
        raise Bad(f"expected tag 0x{tag:02x}, got 0x{got:02x}")
    return content


def decode_integer(content: Reader) -> int:
    raw = content.take(content.left)
    if not raw or len(raw) > MAX_INT_BYTES:
        raise Bad("bad integer size")
    return int.from_bytes(raw, "big", signed=True)


def read_integer(reader: Reader, tag: int = INTEGER) -> int:
    return decode_integer(expect(reader, tag))


def read_octets(reader: Reader, tag: int = OCTET_STRING) -> bytes:
    content = expect(reader, tag)
    return content.take(content.left)


def decode_oid(raw: bytes) -> str:
    if not raw or len(raw) > 128:
        raise Bad("bad OID size")
    arcs: list[int] = []
    value = 0
    for index, byte in enumerate(raw):
        value = (value << 7) | (byte & 0x7F)
        if byte & 0x80:
            if value > 1 << 64:
                raise Bad("OID arc too big")
            continue
        if not arcs:
            first = min(value // 40, 2)
            arcs.extend((first, value - first * 40))
        else:
            arcs.append(value)
        value = 0
        if index == len(raw) - 1:
            break
    if raw[-1] & 0x80:
        raise Bad("unterminated OID arc")
    return ".".join(str(arc) for arc in arcs)
