"""MySQL and MariaDB: the server speaks first with a greeting packet (protocol 10, a NUL-ended
version string, a connection id, capability flags, the authentication plugin), or with an error
packet when it refuses the client outright ('Host ... is not allowed to connect').

MariaDB presents itself as '5.5.5-10.11.6-MariaDB-...' (the 5.5.5- prefix kept old clients
working); MySQL gives its version bare ('8.0.36').
"""

from __future__ import annotations

import re

from ..base import NoMatch, Probe, Step, Verdict, Wait, escape_evidence, register
from ._wire import Bad, Reader, Short, leading_version, text

MAX_GREETING = 1024  # a real greeting is about 100 bytes
CAPABILITIES = {
    0x00000008: "CONNECT_WITH_DB", 0x00000020: "COMPRESS", 0x00000200: "PROTOCOL_41",
    0x00000800: "SSL", 0x00008000: "SECURE_CONNECTION", 0x00080000: "PLUGIN_AUTH",
    0x00200000: "PLUGIN_AUTH_LENENC_DATA", 0x00400000: "CAN_HANDLE_EXPIRED_PASSWORDS",
    0x01000000: "SESSION_TRACK", 0x04000000: "QUERY_ATTRIBUTES",
    0x08000000: "MULTI_FACTOR_AUTH",
}
_MARIADB = re.compile(r"^(?:5\.5\.5-)?(\d+\.\d+\.\d+)-MariaDB", re.I)


def product_version(server_version: str) -> tuple[str, str | None]:
    found = _MARIADB.match(server_version)
    if found:
        return "MariaDB", found.group(1)
    if "tidb" in server_version.lower():
        found = re.search(r"TiDB-v?(\d+\.\d+\.\d+)", server_version, re.I)
        return "TiDB", found.group(1) if found else None
    if "mariadb" in server_version.lower():
        return "MariaDB", leading_version(server_version)
    return "MySQL", leading_version(server_version)


def parse_greeting(payload: bytes) -> dict:
    """Facts from a protocol 10 handshake payload (after the 4-byte packet header)."""
    reader = Reader(payload)
    if reader.u8() != 10:
        raise Bad("not protocol 10")
    raw_version = reader.cstring(limit=128)
    if not raw_version or not all(0x20 <= b < 0x7F for b in raw_version):
        raise Bad("version is not printable text")
    facts: dict = {"server_version": raw_version.decode("ascii")}
    try:
        facts["connection_id"] = reader.u32le()
        reader.skip(8)           # first part of the scramble
        reader.skip(1)           # filler
        caps = reader.u16le()
        if reader.left:
            facts["charset"] = reader.u8()
            facts["status"] = reader.u16le()
            caps |= reader.u16le() << 16
            auth_len = reader.u8()
            reader.skip(10)      # reserved (MariaDB puts extended capabilities in the last 4)
            if caps & 0x00008000:
                reader.skip(max(13, auth_len - 8))
            if caps & 0x00080000 and reader.left:
                plugin = reader.data[reader.pos:reader.end].split(b"\x00", 1)[0]
                facts["auth_plugin"] = text(plugin, 64)
        facts["capabilities"] = [name for bit, name in CAPABILITIES.items() if caps & bit]
        facts["tls"] = bool(caps & 0x00000800)
    except Short:
        facts["truncated"] = True  # the version string already tells us what this is
    return facts


def parse_error(payload: bytes) -> dict:
    """An error packet sent instead of a greeting: 0xff, a 2-byte code, a message."""
    reader = Reader(payload)
    reader.u8()
    code = reader.u16le()
    message = payload[3:]
    if message.startswith(b"#"):
        message = message[6:]  # '#' + SQLSTATE, present in protocol 4.1 errors only
    if not 1000 <= code < 20000:
        raise Bad("not a server error code")
    return {"error_code": code, "error": text(message, 200)}


@register
class MysqlProbe(Probe):
    name = "mysql"
    transport = "tcp"
    ports = frozenset({3306, 3307, 33060, 4000})
    services = frozenset({"mysql", "mysqlx", "mariadb"})
    server_first = True
    rarity = 20
    read_budget = 4096

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        if len(banner) < 5 or banner[3] != 0:
            return False
        size = int.from_bytes(banner[:3], "little")
        return 0 < size <= MAX_GREETING and banner[4] in (10, 0xFF)

    def feed(self, data: bytes) -> Step:
        if len(data) < 4:
            return Wait()
        size, sequence = int.from_bytes(data[:3], "little"), data[3]
        if sequence != 0 or size == 0 or size > MAX_GREETING:
            return NoMatch("not a MySQL packet header")
        if len(data) < 4 + min(size, 5):
            return Wait()
        kind = data[4]
        if kind not in (10, 0xFF):
            return NoMatch("neither a greeting nor an error packet")
        if len(data) < 4 + size:
            return Wait()
        return self._decide(data[4:4 + size], data, complete=True)

    def finish(self, data: bytes) -> Step:
        step = self.feed(data)
        if isinstance(step, Wait) and len(data) > 5 and data[3] == 0:
            return self._decide(data[4:], data, complete=False)  # cut short, parse what came
        return NoMatch("no greeting") if isinstance(step, Wait) else step

    def _decide(self, payload: bytes, data: bytes, complete: bool) -> Step:
        try:
            if payload[0] == 0xFF:
                facts = parse_error(payload)
                message = facts["error"].lower()
                product = "MariaDB" if "mariadb" in message else (
                    "MySQL" if "mysql" in message else None)
                return Verdict("mysql", product, None, facts, 0.9, escape_evidence(data, 120))
            facts = parse_greeting(payload)
        except (Short, Bad) as exc:
            return NoMatch(f"malformed greeting: {exc}")
        product, version = product_version(facts["server_version"])
        confidence = 1.0 if complete and not facts.get("truncated") else 0.8
        return Verdict("mysql", product, version, facts, confidence, escape_evidence(data, 120))
