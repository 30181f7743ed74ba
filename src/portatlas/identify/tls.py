"""TLS for the identification driver: a handshake we can watch byte by byte, and the facts
of the session and certificate.

The handshake runs through ssl.MemoryBIO/SSLObject instead of asyncio's start_tls: we see
every raw byte the server sends, so a failed handshake still tells us something ("answered
the ClientHello with 'HTTP/1.1 400'", "reset the connection"), raw bytes count against the
probe's read budget, and the same code upgrades a fresh connection (implicit TLS) or one
that just said STARTTLS.

Certificates are never verified (we want to see what is there, not to trust it); the DER
certificate is parsed with the `cryptography` package (the `tls` extra) when installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
import warnings
from datetime import datetime, timezone
from typing import Any, Protocol

from portatlas.parsing import is_ip_literal

HANDSHAKE_READ_LIMIT = 65536  # raw bytes accepted during a handshake (certificate chains)


class Transport(Protocol):
    """What the driver's connections offer (plain TCP or TLS on top of it)."""

    async def send(self, data: bytes) -> None: ...
    async def recv(self, limit: int, timeout: float) -> bytes: ...
    def close(self) -> None: ...


class TLSHandshakeError(Exception):
    """The handshake failed; `kind` is reset | closed | timeout | not-tls | alert, `raw` what
    the server sent meanwhile."""

    def __init__(self, kind: str, detail: str, raw: bytes = b"") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.raw = raw


def client_context() -> ssl.SSLContext:
    """A context that talks to anything: no verification, old versions and ciphers allowed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():  # old versions on purpose: we want to see old servers
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):  # a build without the old protocols: use its defaults
        pass
    return ctx


_CONTEXTS: dict[tuple[str, ...], ssl.SSLContext] = {}


def _context(alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = _CONTEXTS.get(alpn)
    if ctx is None:
        ctx = client_context()
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        _CONTEXTS[alpn] = ctx
    return ctx


class TLSConnection:
    """TLS over an existing Transport. Build it with `await TLSConnection.wrap(...)`."""

    def __init__(self, raw: Transport, obj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self.raw = raw
        self.obj = obj
        self.incoming = incoming
        self.outgoing = outgoing
        self.raw_received = 0

    @classmethod
    async def wrap(cls, raw: Transport, *, server_name: str | None, alpn: tuple[str, ...],
                   timeout: float) -> tuple["TLSConnection", dict[str, Any]]:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sni = server_name if server_name and not is_ip_literal(server_name) else None
        obj = _context(tuple(alpn)).wrap_bio(incoming, outgoing, server_side=False,
                                             server_hostname=sni)
        conn = cls(raw, obj, incoming, outgoing)
        seen = bytearray()
        end = time.monotonic() + timeout
        started = time.monotonic()
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                await conn._flush()
                raise TLSHandshakeError(_classify(bytes(seen)), _ssl_reason(exc), bytes(seen))
            await conn._flush()
            left = end - time.monotonic()
            if left <= 0:
                raise TLSHandshakeError("timeout", "no complete TLS answer in time", bytes(seen))
            try:
                chunk = await raw.recv(16384, left)
            except (asyncio.TimeoutError, TimeoutError):
                raise TLSHandshakeError("timeout", "no complete TLS answer in time", bytes(seen))
            except ConnectionResetError:
                raise TLSHandshakeError("reset", "connection reset during the handshake",
                                        bytes(seen))
            except OSError as exc:
                raise TLSHandshakeError("reset", f"connection error during the handshake: "
                                        f"{exc.strerror or exc}", bytes(seen))
            if not chunk:
                kind = _classify(bytes(seen)) if seen else "closed"
                raise TLSHandshakeError(kind, "connection closed during the handshake",
                                        bytes(seen))
            if len(seen) < 4096:
                seen += chunk[:4096 - len(seen)]
            conn.raw_received += len(chunk)
            if conn.raw_received > HANDSHAKE_READ_LIMIT:
                raise TLSHandshakeError(_classify(bytes(seen)), "handshake larger than "
                                        f"{HANDSHAKE_READ_LIMIT} bytes", bytes(seen))
            incoming.write(chunk)
        info = session_info(obj)
        info["handshake_ms"] = round((time.monotonic() - started) * 1000, 1)
        if sni:
            info["sni"] = sni
        return conn, info

    async def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            await self.raw.send(pending)

    async def send(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()

    async def recv(self, limit: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            try:
                return self.obj.read(limit)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError as exc:
                raise ConnectionResetError(f"TLS error: {_ssl_reason(exc)}") from None
            await self._flush()
            left = end - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            chunk = await self.raw.recv(16384, left)
            if not chunk:
                return b""
            self.raw_received += len(chunk)
            self.incoming.write(chunk)

    def close(self) -> None:
        self.raw.close()


def _ssl_reason(exc: ssl.SSLError) -> str:
    return (getattr(exc, "reason", None) or str(exc)).replace("_", " ").lower()


def _classify(raw: bytes) -> str:
    """What the server sent instead of a TLS handshake."""
    if not raw:
        return "alert"
    if raw[0] in (0x15, 0x16) and raw[1:2] == b"\x03":
        return "alert"  # a TLS record: the server speaks TLS but refused us
    return "not-tls"


# --- facts ------------------------------------------------------------------------------
def session_info(obj: ssl.SSLObject) -> dict[str, Any]:
    cipher = obj.cipher()
    info: dict[str, Any] = {
        "version": obj.version(),
        "cipher": cipher[0] if cipher else None,
        "bits": cipher[2] if cipher else None,
        "alpn": obj.selected_alpn_protocol(),
    }
    der = obj.getpeercert(binary_form=True)
    info["certificate"] = certificate_facts(der) if der else None
    return info


def certificate_facts(der: bytes, now: datetime | None = None) -> dict[str, Any]:
    """Subject, SANs, issuer, validity (expired / self-signed flagged) of a DER certificate."""
    now = now or datetime.now(timezone.utc)
    facts: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest()}
    try:
        # optional: cryptography (the tls extra) reads certificates; without it, fewer facts
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:
        facts["note"] = "install portatlas[tls] (cryptography) for certificate details"
        return facts
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        facts["error"] = f"unparsable certificate: {exc}"
        return facts

    def common_name(name: x509.Name) -> str | None:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else None

    not_before = _utc(cert, "not_valid_before")
    not_after = _utc(cert, "not_valid_after")
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(v) for v in ext.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        facts["san_error"] = "malformed subjectAltName"
    self_signed = cert.issuer == cert.subject and _signed_by_itself(cert)
    facts.update({
        "subject": cert.subject.rfc4514_string(),
        "subject_cn": common_name(cert.subject),
        "sans": sans,
        "issuer": cert.issuer.rfc4514_string(),
        "issuer_cn": common_name(cert.issuer),
        "serial": format(cert.serial_number, "x"),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "expired": now > not_after,
        "not_yet_valid": now < not_before,
        "self_signed": self_signed,
        "key": _key_description(cert),
        "signature_algorithm": getattr(cert.signature_algorithm_oid, "_name", None),
    })
    return facts


def _utc(cert: Any, attr: str) -> datetime:
    value = getattr(cert, attr + "_utc", None)  # cryptography >= 42
    if value is None:
        value = getattr(cert, attr).replace(tzinfo=timezone.utc)
    return value


def _signed_by_itself(cert: Any) -> bool:
    try:
        cert.verify_directly_issued_by(cert)
        return True
    except Exception:  # wrong signature, unsupported algorithm: not provably self-signed
        return False


def _key_description(cert: Any) -> str | None:
    try:
        key = cert.public_key()
    except Exception:
        return None
    name = type(key).__name__.lstrip("_").replace("PublicKey", "")
    size = getattr(key, "key_size", None)
    curve = getattr(getattr(key, "curve", None), "name", None)
    return " ".join(str(p) for p in (name.upper() if name else "key", curve or size) if p)


def summary(info: dict[str, Any] | None) -> str:
    """One line for the terminal: 'TLSv1.3 TLS_AES_256_GCM_SHA384, cert CN=x (self-signed)'."""
    if not info:
        return ""
    parts = [f"{info.get('version')} {info.get('cipher')}"]
    if info.get("alpn"):
        parts.append(f"ALPN {info['alpn']}")
    cert = info.get("certificate") or {}
    if cert.get("subject_cn") or cert.get("subject"):
        flags = [f for f, on in (("self-signed", cert.get("self_signed")),
                                 ("EXPIRED", cert.get("expired")),
                                 ("not yet valid", cert.get("not_yet_valid"))) if on]
        line = f"cert {cert.get('subject_cn') or cert.get('subject')}"
        if cert.get("sans"):
            line += " [" + ", ".join(cert["sans"][:4]) + ("…" if len(cert["sans"]) > 4 else "") + "]"
        if cert.get("not_after"):
            line += f" until {cert['not_after'][:10]}"
        if flags:
            line += " (" + ", ".join(flags) + ")"
        parts.append(line)
    if info.get("starttls"):
        parts.append("via STARTTLS")
    return ", ".join(parts)
