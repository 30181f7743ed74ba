"""SMB module on bytes.

Captured: Samba 4.17.12 smbd (Debian 12, standalone server, NetBIOS name PATEST) in a network
namespace, answering our SMB2 NEGOTIATE (dialects 2.0.2-3.1.1, client GUID 00..0f, salt
00..1f). Constructed from [MS-SMB2]/[MS-SMB]: a Windows-like response (random GUID), an SMB1
answer, an error status and hostile framing.
"""

from __future__ import annotations

import struct

from portatlas.identify.base import NoMatch, Verdict, Wait
from portatlas.identify.protocols import smb
from support.probe_talk import converse, feed_chunks, make

SAMBA_NEGOTIATE = bytes.fromhex(
    "0000010cfe534d4240000000000000000000010001000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000041000100110302007061746573740000"
    "00000000000000000f0000000000800000008000000080000ef91dda5f7bdd0100000000000000008000"
    "4a00d0000000604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a026"
    "1b246e6f745f646566696e65645f696e5f5246433431373840706c656173655f69676e6f726500000000"
    "00000100260000000000010020000100a44f165aee9221efcbecb62565e7060a9619f0dfaf80de73d883"
    "840cf5955ec10000020004000000000001000200")


def probe() -> smb.SmbProbe:
    p = make(smb.SmbProbe, 445)
    p.client_guid, p.salt = bytes(range(16)), bytes(range(32))
    return p


def windows_like(guid: bytes) -> bytes:
    message = bytearray(SAMBA_NEGOTIATE[4:])
    message[64 + 8:64 + 24] = guid
    message[64 + 2] = 0x03  # signing enabled and required, as on a domain controller
    return struct.pack(">I", len(message)) + bytes(message)


def test_negotiate_request():
    data = smb.build_negotiate(bytes(range(16)), bytes(range(32)))
    size = struct.unpack(">I", data[:4])[0]
    assert size == len(data) - 4 and data[4:8] == b"\xfeSMB"
    body = data[4 + 64:]
    assert struct.unpack("<HH", body[:4]) == (36, 5)  # structure size, dialect count
    dialects = struct.unpack("<5H", body[36:46])
    assert dialects == (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)
    offset, count = struct.unpack("<IH", body[28:34])
    assert offset % 8 == 0 and count == 2 and data[4 + offset:4 + offset + 2] == b"\x01\x00"


def test_samba_capture():
    talk = converse(probe(), [SAMBA_NEGOTIATE])
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("smb", "Samba")
    assert verdict.extra["netbios_name"] == "patest"
    assert verdict.extra["dialect"] == "3.1.1"
    assert verdict.extra["signing"] == "enabled"
    assert verdict.extra["auth_mechanisms"] == ["NTLMSSP"]
    assert verdict.extra["system_time"].startswith("20")
    assert "server_start_time" not in verdict.extra  # Samba sends 0


def test_capture_in_pieces():
    verdict = feed_chunks(probe(), SAMBA_NEGOTIATE, [2, 4, 60, 500])
    assert isinstance(verdict, Verdict) and verdict.extra["dialect"] == "3.1.1"


def test_random_guid_names_no_product():
    verdict = probe().feed(windows_like(bytes.fromhex("8f3c9a2b11d04e7f9a6b5c4d3e2f1a0b")))
    assert verdict.product is None and verdict.extra["signing"] == "required"
    assert verdict.extra["server_guid"] == "2b9a3c8f-d011-7f4e-9a6b-5c4d3e2f1a0b"


def test_error_status_and_smb1():
    header = bytearray(SAMBA_NEGOTIATE[4:4 + 64])
    header[8:12] = struct.pack("<I", 0xC0000022)  # STATUS_ACCESS_DENIED
    message = bytes(header) + bytes(8)
    verdict = probe().feed(struct.pack(">I", len(message)) + message)
    assert verdict.extra["status"] == "0xc0000022"
    smb1 = b"\xffSMB\x72" + bytes(4) + b"\x88" + bytes(26) + b"\x11\x00\x00"
    verdict = probe().feed(struct.pack(">I", len(smb1)) + smb1)
    assert verdict.extra == {"smb_version": 1, "command": "0x72"}


def test_not_smb():
    assert isinstance(probe().feed(b"\x00\x00"), Wait)
    assert isinstance(probe().feed(b"\x00\x00\x00\x10\xfeSM"), Wait)
    assert isinstance(probe().feed(b"\x00\x00\x00\x10HTTP"), NoMatch)
    assert isinstance(probe().feed(b"\x00\xff\xff\xff\xfeSMB"), NoMatch)  # 16 MiB message
    assert isinstance(probe().feed(b"HTTP/1.1 400"), NoMatch)
    assert isinstance(probe().finish(SAMBA_NEGOTIATE[:100]), NoMatch)
    short = struct.pack(">I", 70) + SAMBA_NEGOTIATE[4:74]
    assert isinstance(probe().feed(short), NoMatch)


def test_samba_name_heuristic():
    assert smb.samba_name(b"fileserver" + bytes(6)) == "fileserver"
    assert smb.samba_name(bytes(16)) is None
    assert smb.samba_name(bytes.fromhex("8f3c9a2b11d04e7f9a6b5c4d3e2f1a0b")) is None
    assert smb.samba_name(b"FILESERVER" + bytes(6)) is None
