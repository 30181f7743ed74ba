"""SSH (RFC 4253): the server speaks first with 'SSH-protoversion-softwareversion comments'.

After our own identification line the server sends its SSH_MSG_KEXINIT in the clear: the
host-key types, key exchanges, ciphers and MACs it offers. We read that one packet and stop
(no key exchange, no authentication).
"""

from __future__ import annotations

import re
import struct

from ..base import NoMatch, Probe, Send, Step, Verdict, Wait, escape_evidence, register
from ._text import clean, is_prefix

CLIENT_ID = b"SSH-2.0-portatlas_identify\r\n"
MAX_PRE_LINES = 20          # RFC 4253 4.2: servers may send other lines before the version
MAX_PACKET = 35000          # RFC 4253 6.1: implementations must handle 35000-byte packets
KEXINIT = 20
_VERSION = re.compile(r"^SSH-(\d+\.\d+)-(\S+)(?: (.*))?$")

# software name prefix (lower case) -> product name as people know it
_PRODUCTS = {
    "openssh": "OpenSSH", "dropbear": "Dropbear sshd", "libssh": "libssh",
    "libssh2": "libssh2", "paramiko": "Paramiko", "asyncssh": "AsyncSSH",
    "cisco": "Cisco SSH", "rosssh": "MikroTik RouterOS sshd", "go": "Go x/crypto/ssh",
    "wingftpserver": "Wing FTP Server", "mod_sftp": "ProFTPD mod_sftp",
    "sshd": "sshd", "tectia": "Tectia SSH", "bitvise": "Bitvise WinSSHD",
    "openssh_for_windows": "OpenSSH for Windows", "erlang": "Erlang sshd",
    "twisted": "Twisted Conch", "russh": "russh", "thrussh": "thrussh",
}


def parse_version_line(line: str) -> dict | None:
    found = _VERSION.match(line)
    if not found:
        return None
    proto, software, comments = found.groups()
    name, _, version = software.partition("_")
    if not version:
        name, _, version = software.partition("-")
    product = _PRODUCTS.get(name.lower()) or _PRODUCTS.get(software.lower()) or clean(name, 40)
    facts = {"protocol_version": proto, "software": clean(software, 80)}
    if comments:
        facts["comments"] = clean(comments, 120)
    return {"product": product or None, "version": clean(version, 40) or None, "facts": facts}


def _name_list(data: bytes, pos: int) -> tuple[list[str], int]:
    if pos + 4 > len(data):
        raise ValueError("short")
    (size,) = struct.unpack(">I", data[pos:pos + 4])
    pos += 4
    if size > 8192 or pos + size > len(data):
        raise ValueError("bad name-list")
    raw = data[pos:pos + size].decode("ascii", "replace")
    return [clean(n, 64) for n in raw.split(",") if n][:64], pos + size


def parse_kexinit(data: bytes) -> tuple[str, dict | None]:
    """('wait'|'bad'|'ok', facts) for the binary packet at the start of `data`."""
    if len(data) < 6:
        return "wait", None
    length, padding = struct.unpack(">IB", data[:5])
    if length < 12 or length > MAX_PACKET or padding >= length:
        return "bad", None
    if len(data) < 4 + length:
        return "wait", None
    payload = data[5:4 + length - padding]
    if not payload or payload[0] != KEXINIT:
        return "bad", None
    names = ["kex", "host_key_types", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c",
             "compression_c2s", "compression_s2c"]
    facts: dict = {}
    pos = 17  # message number + 16-byte cookie
    try:
        for key in names:
            facts[key], pos = _name_list(payload, pos)
    except ValueError:
        return "bad", None
    return "ok", facts


@register
class SSHProbe(Probe):
    name = "ssh"
    transport = "tcp"
    ports = frozenset({22, 2222, 22222, 830})
    services = frozenset({"ssh", "sftp", "netconf-ssh", "x11-ssh"})
    server_first = True
    rarity = 5
    read_budget = 65536

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.ident: dict | None = None
        self.banner = b""
        self.leftover = b""

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return banner.startswith(b"SSH-")

    def feed(self, data: bytes) -> Step:
        if self.ident is None:
            return self._read_ident(data)
        return self._read_kexinit(self.leftover + data)

    def _read_ident(self, data: bytes) -> Step:
        if not data.startswith(b"SSH-") and b"\nSSH-" not in data[:8192]:
            # other lines may precede the version line (RFC 4253 4.2); we accept them only
            # once the version line is in sight, or every text banner would look like SSH
            return Wait() if is_prefix(data, b"SSH-") else NoMatch("not an SSH version line")
        pos = 0
        for _ in range(MAX_PRE_LINES + 1):
            nl = data.find(b"\n", pos)
            if nl < 0:
                return Wait() if len(data) < 8192 else NoMatch("SSH version line too long")
            line = data[pos:nl].rstrip(b"\r")
            if line.startswith(b"SSH-"):
                parsed = parse_version_line(line.decode("utf-8", "replace"))
                if parsed is None:
                    return NoMatch("malformed SSH version line")
                self.ident = parsed
                self.banner = line
                self.leftover = data[nl + 1:]
                if self.leftover:
                    step = self._read_kexinit(self.leftover)
                    if isinstance(step, Verdict):
                        return step
                return Send(CLIENT_ID)
            if b"\x00" in line:
                return NoMatch("binary data before the SSH version line")
            pos = nl + 1
        return NoMatch("too many lines before an SSH version line")

    def _read_kexinit(self, data: bytes) -> Step:
        state, facts = parse_kexinit(data)
        if state == "wait":
            return Wait()
        if state == "bad":
            return self._verdict(None, 0.9, data)
        return self._verdict(facts, 1.0, data)

    def _verdict(self, kex: dict | None, confidence: float, tail: bytes) -> Verdict:
        assert self.ident is not None
        extra = dict(self.ident["facts"])
        if kex:
            extra["host_key_types"] = kex["host_key_types"]
            extra["kex"] = kex["kex"]
            extra["ciphers"] = kex["ciphers_s2c"]
            extra["macs"] = kex["macs_s2c"]
            extra["compression"] = kex["compression_s2c"]
        comments = extra.get("comments", "")
        for system in ("Debian", "Ubuntu", "FreeBSD", "Raspbian", "Fedora", "Red Hat"):
            if system.lower() in comments.lower():
                extra["os"] = system
        return Verdict("ssh", self.ident["product"], self.ident["version"], extra, confidence,
                       escape_evidence(self.banner))

    def finish(self, data: bytes) -> Step:
        if self.ident is not None:
            return self._verdict(None, 0.95, b"")
        if data.startswith(b"SSH-") and b"\n" not in data:
            parsed = parse_version_line(data[:255].decode("utf-8", "replace").rstrip("\r"))
            if parsed is not None:  # a version line cut short (slow or closing server)
                self.ident, self.banner = parsed, data[:255]
                return self._verdict(None, 0.8, b"")
        return NoMatch("no SSH version line")
