"""Bounded readers for binary replies, shared by the binary protocol modules.

Every parser here treats its input as hostile: lengths are checked against what actually
arrived before anything is sliced, so a length field can never make us allocate or loop more
than the bytes in hand. Two outcomes are distinguished because TCP replies arrive in pieces:

- `Short`: the data stopped early; more bytes may complete it (the probe answers Wait()).
- `Bad`: the bytes cannot be this protocol, whatever follows (the probe answers NoMatch()).
"""

from __future__ import annotations

import re
import struct


class Short(Exception):
    """The structure continues past the bytes received so far."""


class Bad(Exception):
    """The bytes contradict the protocol."""


class Reader:
    """A cursor over a bytes object; every read is bounds-checked."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else min(end, len(data))

    @property
    def left(self) -> int:
        return self.end - self.pos

    def take(self, count: int) -> bytes:
        if count < 0:
            raise Bad("negative length")
        if count > self.left:
            raise Short(f"need {count} bytes, have {self.left}")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def skip(self, count: int) -> None:
        self.take(count)

    def sub(self, count: int) -> "Reader":
        """A reader over the next `count` bytes; this reader moves past them."""
        if count < 0:
            raise Bad("negative length")
        if count > self.left:
            raise Short(f"need {count} bytes, have {self.left}")
        inner = Reader(self.data, self.pos, self.pos + count)
        self.pos += count
        return inner

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u16le(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u32le(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def i32le(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def u64le(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def cstring(self, limit: int = 1024) -> bytes:
        """Bytes up to (not including) the next NUL, which is consumed."""
        stop = self.data.find(b"\x00", self.pos, min(self.end, self.pos + limit + 1))
        if stop < 0:
            if self.end - self.pos > limit:
                raise Bad("string too long")
            raise Short("unterminated string")
        value = self.data[self.pos:stop]
        self.pos = stop + 1
        return value


def text(raw: bytes, limit: int = 512) -> str:
    """Decode protocol text leniently and cut it to a sane size (no control characters)."""
    decoded = raw[:limit].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in decoded).strip()


_NUMERIC_VERSION = re.compile(r"\d+(?:\.\d+)+(?:[a-z]\d*|p\d+)?")


def leading_version(value: str) -> str | None:
    """The first dotted version number in `value` ('2.0.11' from 'mosquitto version 2.0.11')."""
    found = _NUMERIC_VERSION.search(value)
    return found.group(0) if found else None
