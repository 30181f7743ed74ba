"""What keeps a local web server from being used against its user.

- Host check: a server on 127.0.0.1 answers only to loopback names, so a web page that
  points its own DNS name at 127.0.0.1 (DNS rebinding) cannot read or drive it.
- CSRF: state-changing requests need a token that is an HMAC of a random cookie
  (SameSite=Strict, HttpOnly) under a secret kept in the feedback database; a cross-site
  page can neither read the token nor send the cookie. Origin/Sec-Fetch-Site are checked
  as well when the browser sends them.
- Headers: a strict Content-Security-Policy (no inline script or style, nothing from other
  origins), nosniff, no framing.
- Bodies: read with a hard size cap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any, Awaitable, Callable

from portatlas.errors import PortatlasError

COOKIE = "pa_csrf"
HEADER = "x-csrf-token"
MAX_BODY = 4096

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class Forbidden(PortatlasError):
    """A request refused for safety (bad CSRF token, foreign origin, checks disabled)."""

    exit_code = 4


class TooLarge(PortatlasError):
    exit_code = 4


class WrongMediaType(PortatlasError):
    exit_code = 4


def new_cookie() -> str:
    return secrets.token_urlsafe(18)


def token_for(secret: bytes, cookie: str) -> str:
    mac = hmac.new(secret, b"csrf:" + cookie.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def token_valid(secret: bytes, cookie: str | None, token: str | None) -> bool:
    if not cookie or not token or len(cookie) > 64 or len(token) > 64:
        return False
    return hmac.compare_digest(token_for(secret, cookie), token)


def cookie_header(value: str) -> str:
    return f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"


def check_origin(headers: Any, host: str | None) -> None:
    """Refuse a state-changing request that a browser says came from another site."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"cross-site request refused ({site})")
    origin = headers.get("origin")
    if origin is not None and host is not None:
        bare = origin.split("://", 1)[-1]
        if bare != host:
            raise Forbidden("request from another origin refused")


def check_csrf(secret: bytes, headers: Any, cookies: dict[str, str], token: str | None) -> None:
    check_origin(headers, headers.get("host"))
    if not token_valid(secret, cookies.get(COOKIE), token):
        raise Forbidden("missing or stale form token; reload the page and try again")


async def read_body(receive_request: Any, limit: int = MAX_BODY) -> bytes:
    """The request body, refusing more than `limit` bytes (whatever Content-Length says)."""
    declared = receive_request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body too large (the most is {limit} bytes)")
    body = bytearray()
    async for chunk in receive_request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"request body too large (the most is {limit} bytes)")
    return bytes(body)


ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                   Awaitable[None]]


TARGET_KEY = "portatlas.request_target"  # set by portatlas.web.protocol for absolute-form


def _host_problem(scope: dict, hosts: list[bytes]) -> bytes | None:
    """Why the request's Host is not one answer (RFC 9112 3.2), or None.

    Two Host headers, or none in HTTP/1.1, get 400: a front end and this server could pick
    different ones. An absolute-form request line (GET http://host/ HTTP/1.1) names the
    host the request is for; it must be the Host header's host, and the Host check then
    applies to it as usual."""
    if len(hosts) > 1:
        return b"more than one Host header\n"
    if not hosts and scope.get("http_version") not in ("1.0", "0.9"):
        return b"no Host header\n"
    target = (scope.get("extensions") or {}).get(TARGET_KEY)
    if target is not None:
        scheme, sep, rest = target.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            return b"the request target must be a path (or an http URL of this server)\n"
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].lower()
        if not hosts or authority != hosts[0]:
            return b"the request line names another host than the Host header\n"
    return None


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Host check and security headers, as plain ASGI (no per-request object churn)."""

    def __init__(self, app: ASGIApp, allowed_hosts: set[str] | None) -> None:
        self.app = app
        self.allowed = {h.lower().encode() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = [value.lower() for name, value in scope["headers"] if name == b"host"]
        problem = _host_problem(scope, hosts)
        if problem is not None:
            await _plain(send, 400, problem)
            return
        if self.allowed is not None and (hosts[0] if hosts else b"") not in self.allowed:
            await _plain(send, 421, b"unknown Host header; use the address portatlas serve "
                                    b"printed\n")
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", ())) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)
