"""SMB: an SMB2 NEGOTIATE (dialects 2.0.2 to 3.1.1, with the pre-authentication integrity and
encryption contexts 3.1.1 requires) in a NetBIOS session message. An SMB2 server answers with a
NEGOTIATE response: the dialect it chose, its GUID, signing requirements, capabilities and
clock. An SMB1-only server that answers at all does so with an SMB1 header (0xFF 'SMB').

SMB2 does not name the product before authentication. Samba gives itself away by its server
GUID, which it fills with its NetBIOS name in lower case padded with zero bytes (seen on
Samba 4.17); Windows' GUIDs are random.
"""

from __future__ import annotations

import secrets
import struct
from datetime import datetime, timedelta, timezone

from ..base import (NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence,
                    register)

SMB2_MAGIC, SMB1_MAGIC = b"\xfeSMB", b"\xffSMB"
DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)
DIALECT_NAMES = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2",
                 0x0311: "3.1.1", 0x02FF: "2.x (wildcard)"}
CAPABILITIES = {0x01: "DFS", 0x02: "LEASING", 0x04: "LARGE_MTU", 0x08: "MULTI_CHANNEL",
                0x10: "PERSISTENT_HANDLES", 0x20: "DIRECTORY_LEASING", 0x40: "ENCRYPTION"}
MECHANISMS = {  # DER-encoded OIDs in the SPNEGO hint -> name
    bytes.fromhex("2b0601040182370202 0a".replace(" ", "")): "NTLMSSP",
    bytes.fromhex("2a864886f712010202"): "Kerberos",
    bytes.fromhex("2a864882f712010202"): "MS Kerberos",
    bytes.fromhex("2b06010401823702021e"): "NEGOEX",
}
MAX_MESSAGE = 64 * 1024
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)


def _context(kind: int, data: bytes) -> bytes:
    return struct.pack("<HHI", kind, len(data), 0) + data


def build_negotiate(client_guid: bytes, salt: bytes, message_id: int = 0) -> bytes:
    header = (SMB2_MAGIC + struct.pack("<HHIHHIIQIIQ", 64, 0, 0, 0, 31, 0, 0, message_id, 0, 0, 0)
              + bytes(16))
    dialects = b"".join(struct.pack("<H", d) for d in DIALECTS)
    fixed_size = 36
    offset = 64 + fixed_size + len(dialects)
    padding = (8 - offset % 8) % 8
    contexts_offset = offset + padding
    preauth = _context(1, struct.pack("<HHH", 1, len(salt), 0x0001) + salt)  # SHA-512
    preauth += bytes((8 - len(preauth) % 8) % 8)
    encryption = _context(2, struct.pack("<HHH", 2, 0x0002, 0x0001))  # AES-128-GCM, -CCM
    body = struct.pack("<HHHHI", 36, len(DIALECTS), 0x0001, 0, 0x7F) + client_guid
    body += struct.pack("<IHH", contexts_offset, 2, 0)
    message = header + body + dialects + bytes(padding) + preauth + encryption
    return struct.pack(">I", len(message)) + message


def filetime(value: int) -> str | None:
    if value <= 0 or value > 0x7FFFFFFFFFFFFFFF:
        return None
    try:
        return (FILETIME_EPOCH + timedelta(microseconds=value // 10)).isoformat(timespec="seconds")
    except OverflowError:
        return None


def parse_smb2_negotiate(message: bytes) -> dict | None:
    if len(message) < 64 + 8 or message[:4] != SMB2_MAGIC:
        return None
    header_size, _credit_charge, status, command = struct.unpack("<HHIH", message[4:14])
    flags = struct.unpack("<I", message[16:20])[0]
    if header_size != 64 or command != 0 or not flags & 0x1:  # response to NEGOTIATE
        return None
    facts: dict = {"smb_version": 2}
    if status != 0:
        facts["status"] = f"0x{status:08x}"
        return facts
    body = message[64:]
    if len(body) < 64:
        return None
    (size, security_mode, dialect, _contexts, guid, capabilities, max_transact, max_read,
     max_write, system_time, start_time, blob_offset, blob_length) = struct.unpack(
        "<HHHH16sIIIIQQHH", body[:60])
    if size != 65:
        return None
    facts.update({
        "dialect": DIALECT_NAMES.get(dialect, f"0x{dialect:04x}"),
        "server_guid": _guid(guid),
        "_samba_name": samba_name(guid),
        "signing": "required" if security_mode & 0x2 else (
            "enabled" if security_mode & 0x1 else "disabled"),
        "capabilities": [name for bit, name in CAPABILITIES.items() if capabilities & bit],
        "max_read": max_read, "max_write": max_write, "max_transact": max_transact,
    })
    if filetime(system_time):
        facts["system_time"] = filetime(system_time)
    if filetime(start_time):
        facts["server_start_time"] = filetime(start_time)
    blob = message[blob_offset:blob_offset + min(blob_length, 4096)] if blob_offset >= 64 else b""
    mechanisms = [name for oid, name in MECHANISMS.items() if oid in blob]
    if mechanisms:
        facts["auth_mechanisms"] = mechanisms
    return facts


def parse_smb1(message: bytes) -> dict | None:
    if len(message) < 32 or message[:4] != SMB1_MAGIC:
        return None
    command, status = message[4], struct.unpack("<I", message[5:9])[0]
    facts: dict = {"smb_version": 1, "command": f"0x{command:02x}"}
    if status:
        facts["status"] = f"0x{status:08x}"
    return facts


def samba_name(guid: bytes) -> str | None:
    """The NetBIOS name Samba puts in its GUID, or None when the GUID looks random."""
    name = guid.rstrip(b"\x00")
    if 1 <= len(name) <= 15 and all(0x21 <= b < 0x7F and not 0x41 <= b <= 0x5A for b in name) \
            and b"\x00" not in name:
        return name.decode("ascii")
    return None


def _guid(raw: bytes) -> str:
    a, b, c = struct.unpack("<IHH", raw[:8])
    return f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


@register
class SmbProbe(Probe):
    name = "smb"
    transport = "tcp"
    ports = frozenset({445, 139})
    services = frozenset({"microsoft-ds", "netbios-ssn", "smb"})
    rarity = 40
    read_budget = MAX_MESSAGE

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.client_guid = secrets.token_bytes(16)
        self.salt = secrets.token_bytes(32)

    def start(self) -> Step:
        return Send(build_negotiate(self.client_guid, self.salt))

    def feed(self, data: bytes) -> Step:
        if data[:1] not in (b"\x00", b""):
            return NoMatch("not a NetBIOS session message")
        if len(data) < 8:
            head = data[4:]
            if SMB2_MAGIC.startswith(head) or SMB1_MAGIC.startswith(head):
                return Wait()
            return NoMatch("no SMB header")
        size = struct.unpack(">I", data[:4])[0]
        magic = data[4:8]
        if magic not in (SMB2_MAGIC, SMB1_MAGIC) or size > MAX_MESSAGE:
            return NoMatch("no SMB header")
        if len(data) < 4 + size:
            return Wait()
        message = data[4:4 + size]
        facts = parse_smb2_negotiate(message) if magic == SMB2_MAGIC else parse_smb1(message)
        if facts is None:
            return NoMatch("not an SMB negotiate response")
        product = None
        name = facts.pop("_samba_name", None)
        if name:
            product, facts["netbios_name"] = "Samba", name
        return Verdict("smb", product, None, facts, 1.0, escape_evidence(data, 96))

    def finish(self, data: bytes) -> Step:
        step = self.feed(data) if data else NoMatch("no answer")
        return NoMatch("reply cut short") if isinstance(step, Wait) else step
