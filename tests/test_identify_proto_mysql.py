"""MySQL/MariaDB module on bytes.

Captured: MariaDB 10.11.19 (Debian 12 mariadb-server) greeting, in a network namespace.
Constructed from the MySQL client/server protocol documentation: a MySQL 8.0 greeting (MySQL
itself is not packaged in Debian 12), an error packet sent instead of a greeting, and junk.
"""

from __future__ import annotations

import struct

import pytest

from portatlas.identify.base import NoMatch, Verdict, Wait
from portatlas.identify.protocols import mysql
from support.probe_talk import feed_chunks, make

MARIADB_GREETING = bytes.fromhex(
    "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000300000062"
    "357c363440294a00fef7080200ff81150000000000001d000000773d676f79332f33517e492f006d7973"
    "716c5f6e61746976655f70617373776f726400")


def mysql8_greeting() -> bytes:
    caps = 0x0200 | 0x0800 | 0x8000 | 0x00080000 | 0x00200000
    payload = (b"\x0a8.0.36\x00" + struct.pack("<I", 42) + b"abcdefgh\x00"
               + struct.pack("<HBHH", caps & 0xFFFF, 255, 2, caps >> 16) + bytes([21])
               + bytes(10) + b"ijklmnopqrst\x00" + b"caching_sha2_password\x00")
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def error_packet(code: int, message: bytes) -> bytes:
    payload = b"\xff" + struct.pack("<H", code) + message
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def probe() -> mysql.MysqlProbe:
    return make(mysql.MysqlProbe, 3306)


def test_mariadb_capture():
    assert mysql.MysqlProbe.claims_banner(MARIADB_GREETING)
    p = probe()
    assert isinstance(p.start(), Wait)
    verdict = p.feed(MARIADB_GREETING)
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product, verdict.version) == ("mysql", "MariaDB", "10.11.19")
    assert verdict.extra["server_version"] == "5.5.5-10.11.19-MariaDB-0+deb12u1"
    assert verdict.extra["auth_plugin"] == "mysql_native_password"
    assert verdict.extra["connection_id"] == 3
    assert "PROTOCOL_41" in verdict.extra["capabilities"] and verdict.confidence == 1.0


def test_mysql8_constructed_in_pieces():
    data = mysql8_greeting()
    verdict = feed_chunks(probe(), data, [2, 3, 10, 200])
    assert (verdict.product, verdict.version) == ("MySQL", "8.0.36")
    assert verdict.extra["auth_plugin"] == "caching_sha2_password" and verdict.extra["tls"]


def test_cut_short_greeting_still_named_on_close():
    verdict = probe().finish(MARIADB_GREETING[:40])
    assert isinstance(verdict, Verdict) and verdict.product == "MariaDB"
    assert verdict.confidence < 1.0


def test_error_instead_of_greeting():
    data = error_packet(1130, b"Host '198.18.0.1' is not allowed to connect to this MariaDB server")
    verdict = probe().feed(data)
    assert isinstance(verdict, Verdict) and verdict.product == "MariaDB"
    assert verdict.extra["error_code"] == 1130


@pytest.mark.parametrize("banner", [
    b"SSH-2.0-OpenSSH_9.2p1\r\n",
    b"220 mail.example ESMTP\r\n",
    b"\x05\x00\x00\x00\x0b\x00\x00\x00\x00",          # right shape, wrong protocol byte
    b"\x0a\x00\x00\x00\x0a\xff\xfe\x00\x00\x00\x00",  # unprintable version string
    b"\xff\xff\xff\x00\x0a",                          # 16 MiB declared
])
def test_not_mysql(banner):
    assert not mysql.MysqlProbe.claims_banner(banner) or banner[4] == 0x0A
    assert isinstance(probe().finish(banner), NoMatch)
