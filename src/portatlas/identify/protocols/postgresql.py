"""PostgreSQL: an SSLRequest first (the server answers one byte, 'S' or 'N'), then a protocol
3.0 StartupMessage (in TLS after 'S'). The server answers the startup with an ErrorResponse
(typically 'role "portatlas" does not exist' or a pg_hba refusal) or an authentication request
— structured messages that identify it for sure.

The version is only told after a successful login (ParameterStatus server_version). We never
try a real role: the startup names the role 'portatlas', so the version is reported only by a
server that lets anyone in (trust) with such a role.
"""

from __future__ import annotations

import struct

from ..base import (NoMatch, Probe, ProbeContext, Send, StartTLS, Step, Verdict, Wait,
                    escape_evidence, register)
from ._wire import Bad, Reader, Short, leading_version, text

SSL_REQUEST = struct.pack(">II", 8, 80877103)
PROTOCOL_3_0 = 196608
STARTUP_USER = "portatlas"
MAX_MESSAGE = 8192  # startup replies are small; longer length fields are not PostgreSQL
AUTH_METHODS = {0: "ok", 2: "kerberos-v5", 3: "cleartext-password", 5: "md5", 7: "gss",
                9: "sspi", 10: "sasl"}
ERROR_FIELDS = {"S": "severity", "V": "severity", "C": "sqlstate", "M": "message",
                "R": "routine", "F": "file", "L": "line"}


def build_startup(user: str = STARTUP_USER, database: str = STARTUP_USER) -> bytes:
    params = (b"user\x00" + user.encode() + b"\x00database\x00" + database.encode()
              + b"\x00application_name\x00portatlas\x00\x00")
    return struct.pack(">II", 8 + len(params), PROTOCOL_3_0) + params


def parse_messages(data: bytes, limit: int = 32) -> list[tuple[str, bytes]]:
    """Complete backend messages at the start of `data` (type letter, body).

    Raises Short when the first message is incomplete, Bad when framing is impossible."""
    reader = Reader(data)
    messages: list[tuple[str, bytes]] = []
    while reader.left and len(messages) < limit:
        start = reader.pos
        try:
            kind = reader.u8()
            if not 0x41 <= kind <= 0x7A:
                raise Bad("message type is not a letter")
            size = reader.u32()
            if not 4 <= size <= MAX_MESSAGE:
                raise Bad("impossible message length")
            body = reader.take(size - 4)
        except Short:
            if not messages:
                raise
            reader.pos = start
            break
        messages.append((chr(kind), body))
    return messages


def parse_error_fields(body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in body.split(b"\x00")[:32]:
        if part and chr(part[0]) in ERROR_FIELDS:
            fields[ERROR_FIELDS[chr(part[0])]] = text(part[1:], 200)
    return fields


@register
class PostgresqlProbe(Probe):
    name = "postgresql"
    transport = "tcp"
    ports = frozenset({5432, 5433, 5434, 6432})
    services = frozenset({"postgresql", "postgres", "pgbouncer"})
    rarity = 18  # common on odd ports; ahead of probes whose short payloads leave it waiting
    read_budget = 8192

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.ssl_answer: str | None = None   # 'S', 'N' or None (not asked / error)
        self.started = False
        self.tls: dict | None = None

    def start(self) -> Step:
        if self.ctx.in_tls:
            self.started = True
            return Send(build_startup())
        return Send(SSL_REQUEST)

    def feed(self, data: bytes) -> Step:
        if not self.started:
            head = data[:1]
            if head == b"N" and len(data) == 1:
                self.ssl_answer, self.started = "N", True
                return Send(build_startup())
            if head == b"S" and len(data) == 1:
                self.ssl_answer = "S"
                return StartTLS(server_name=self.ctx.server_name)
            if head == b"E":
                # servers older than 7.2 answer the SSLRequest with an error
                return self._from_messages(data, final=False)
            return NoMatch("no answer to the SSLRequest")
        return self._from_messages(data, final=False)

    def tls_ready(self, info: dict) -> Step:
        self.tls = info
        self.started = True
        return Send(build_startup())

    def finish(self, data: bytes) -> Step:
        if data:
            step = self._from_messages(data, final=True) if self.started else self.feed(data)
            if not isinstance(step, (Wait, Send, StartTLS)):
                return step
        if self.ssl_answer:
            # a one-byte S/N and nothing after: plausible, not proven
            return Verdict("postgresql", None, None, self._extra(), 0.5,
                           escape_evidence(self.ssl_answer.encode()))
        return NoMatch("no answer")

    def _extra(self) -> dict:
        extra: dict = {}
        if self.ssl_answer:
            extra["ssl"] = self.ssl_answer == "S"
        return extra

    def _from_messages(self, data: bytes, final: bool) -> Step:
        if data[:1] not in (b"E", b"R", b"v"):
            return NoMatch("not an error, authentication or negotiation message")
        try:
            messages = parse_messages(data)
        except Short:
            return NoMatch("reply cut short") if final else Wait()
        except Bad as exc:
            return NoMatch(str(exc))
        kinds = [kind for kind, _ in messages]
        if kinds[0] not in ("E", "R", "v"):
            return NoMatch(f"unexpected message {kinds[0]!r}")
        extra = self._extra()
        version = None
        server_made = False  # the PostgreSQL server itself, not a pooler speaking its protocol
        for kind, body in messages:
            if kind == "E":
                fields = parse_error_fields(body)
                # only the server's own errors name its source file and routine (PgBouncer,
                # pgpool and other poolers send severity, code and message alone)
                server_made = server_made or bool(fields.get("routine") or fields.get("file"))
                if not fields.get("sqlstate") and not fields.get("severity"):
                    return NoMatch("error without PostgreSQL fields")
                extra["error"] = {k: v for k, v in fields.items()
                                  if k in ("severity", "sqlstate", "message", "routine")}
            elif kind == "R" and len(body) >= 4 and "auth" not in extra:
                method = struct.unpack(">I", body[:4])[0]
                extra["auth"] = AUTH_METHODS.get(method, str(method))
                if method == 10:
                    extra["sasl_mechanisms"] = [text(m, 64) for m in body[4:].split(b"\x00")
                                                if m][:8]
            elif kind == "S":
                name, _, value = body.partition(b"\x00")
                if name == b"server_version":
                    extra["server_version"] = text(value.rstrip(b"\x00"), 100)
                    version = leading_version(extra["server_version"])
            elif kind == "v":
                extra["negotiate_protocol"] = True
        if extra.get("auth") == "ok" and not final and not {"E", "Z"} & set(kinds):
            return Wait()  # let in: parameters (with the version) come until ReadyForQuery
        confidence = 1.0 if kinds[0] in ("E", "R") else 0.8
        product = "PostgreSQL" if server_made or version else None
        return Verdict("postgresql", product, version, extra, confidence,
                       escape_evidence(data, 160))
