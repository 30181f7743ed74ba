"""The Starlette application: routes, error handling, and the per-process Web object."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portatlas import __version__
from portatlas.errors import DataError, NotFound, PortatlasError, UsageError
from portatlas.web import api, pages
from portatlas.web.config import WebConfig
from portatlas.web.feedback import FeedbackStore, RateLimited
from portatlas.web.render import Prepared, make_env, render
from portatlas.web.responses import NotAvailable, json_response
from portatlas.web.security import (COOKIE, Forbidden, GuardMiddleware, TooLarge, WrongMediaType,
                                    cookie_header, new_cookie, token_for)
from portatlas.web.state import AtlasState, ByteLRU
from portatlas.web.checks import Checker
from portatlas.web.live import HereCache

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


class StaticFiles:
    """The few hand-written assets, read once; URLs carry a content hash for caching."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for path in sorted(STATIC.iterdir()):
            if path.suffix in STATIC_TYPES:
                body = path.read_bytes()
                digest = hashlib.sha256(body).hexdigest()[:10]
                self.files[path.name] = (body, STATIC_TYPES[path.suffix], digest)

    def url(self, name: str) -> str:
        return f"/static/{name}?v={self.files[name][2]}"


class Web:
    """Everything one server process shares between requests."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.state = AtlasState(config.db_path, cache_bytes=config.page_cache_bytes,
                                cache_item=config.page_cache_item,
                                live_ttl=config.live_ttl, reload_interval=config.reload_interval)
        self.feedback = FeedbackStore(config.feedback_db, per_minute=config.feedback_per_minute,
                                      per_day=config.feedback_per_day,
                                      comment_max=config.comment_max)
        self.env = make_env()
        self.static = StaticFiles()
        self.checker = None
        if config.allow_check:
            self.checker = Checker(config.allow_check, max_ports=config.check_ports_max,
                                   per_minute=config.checks_per_minute)
        self.started = time.time()

        self.here = HereCache(config.live_ttl)
        # one small card per port (the same for every port but the number in it)
        self._static_here = ByteLRU(4 << 20, 64 << 10)

    def static_here(self, port: int) -> str:
        """The 'on this machine' card when this installation cannot look (no portatlas.local)."""
        html = self._static_here.get(port)
        if html is None:
            html = self.env.get_template("_here.html").render(section=None, port=port,
                                                               available=False)
            self._static_here.put(port, html)
        return html

    # pages ------------------------------------------------------------------------------
    def context(self, **extra: Any) -> dict[str, Any]:
        state = self.state
        registry = state.registry
        return {
            "version": __version__,
            "source_label": state.atlas.source_label,
            "is_fallback": state.atlas.is_fallback,
            "registry": registry,
            "built_at": state.meta.get("built_at"),
            "css": self.static.url("app.css"),
            "js": self.static.url("app.js"),
            "icon": self.static.url("icon.svg"),
            "checks_enabled": self.checker is not None,
            "comment_max": self.config.comment_max,
            "nav": "",
            "title": "portatlas",
            **extra,
        }

    def render(self, template: str, http_status: int = 200, **extra: Any) -> Prepared:
        return Prepared(render(self.env, template, self.context(**extra)), http_status)

    def page(self, key: Any, template: str, make_context: Any) -> Prepared:
        """A page rendered once per database build (make_context is only called on a miss)."""
        self.state.current()
        return self.state.cached(("page", key),
                                 lambda: self.render(template, **make_context()))

    def respond(self, request: Request, prepared: Prepared,
                slots: dict[str, str] | None = None) -> Response:
        values = dict(slots or {})
        headers = {"cache-control": "no-cache"}
        if "csrf" in prepared.slots:
            cookie = request.cookies.get(COOKIE)
            if not cookie or len(cookie) > 64:
                cookie = new_cookie()
                headers["set-cookie"] = cookie_header(cookie)
            values["csrf"] = token_for(self.feedback.secret, cookie)
        body = None
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = prepared.gzipped()
            if body is not None:
                headers["content-encoding"] = "gzip"
                headers["vary"] = "Accept-Encoding"
        if body is None:
            body = prepared.fill(values)
        return Response(body, prepared.status, headers=headers,
                        media_type="text/html; charset=utf-8")


# errors -------------------------------------------------------------------------------------
_STATUS = [(UsageError, 400), (NotFound, 404), (Forbidden, 403), (TooLarge, 413),
           (RateLimited, 429), (WrongMediaType, 415), (NotAvailable, 501), (DataError, 503)]


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path in ("/healthz", "/openapi.json")


def _error_response(request: Request, status: int, message: str,
                    headers: dict[str, str] | None = None) -> Response:
    if _wants_json(request):
        return json_response({"error": message, "status": status}, status, headers)
    web: Web = request.app.state.web
    titles = {400: "That is not something portatlas understands", 403: "Refused",
              404: "Not found", 405: "Not allowed", 413: "Too large", 501: "Not available here", 415: "Wrong kind of request", 421: "Wrong address",
              429: "Slow down", 500: "Something broke", 503: "Data problem"}
    try:
        prepared = web.render("error.html", status, status_code=status, message=message,
                              title=titles.get(status, "Error"))
        body = prepared.fill({})
    except Exception:  # never let the error page itself fail
        body = f"<!doctype html><title>{status}</title><p>error {status}</p>".encode()
    return Response(body, status, headers=headers, media_type="text/html; charset=utf-8")


async def portatlas_error(request: Request, exc: Exception) -> Response:
    status = 500
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            status = code
            break
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"retry-after": str(exc.retry_after)}
    message = " ".join(str(exc).split())
    return _error_response(request, status, message, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such page", 405: "method not allowed"}
    message = exc.detail if exc.detail and exc.detail not in ("Not Found", "Method Not Allowed") \
        else messages.get(exc.status_code, "error")
    return _error_response(request, exc.status_code, message, dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    return _error_response(request, 500, "internal error; the server log has details")


# assembly -----------------------------------------------------------------------------------
def routes() -> list[Route]:
    return [
        Route("/", pages.home, methods=["GET"]),
        Route("/ports/{port}", pages.port_page, methods=["GET"]),
        Route("/services/{name}", pages.service_page, methods=["GET"]),
        Route("/search", pages.search_page, methods=["GET"]),
        Route("/ranges", pages.ranges_page, methods=["GET"]),
        Route("/ranges/{spec}", pages.range_page, methods=["GET"]),
        Route("/local", pages.local_page, methods=["GET"]),
        Route("/about", pages.about_page, methods=["GET"]),
        Route("/data", pages.about_redirect, methods=["GET"]),
        Route("/feedback", pages.feedback_page, methods=["GET", "POST"]),
        Route("/check", pages.check_page, methods=["GET", "POST"]),
        Route("/static/{name}", pages.static_file, methods=["GET"]),
        Route("/favicon.ico", pages.favicon, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/api/ports/{port}", api.port, methods=["GET"]),
        Route("/api/services/{name}", api.service, methods=["GET"]),
        Route("/api/search", api.search, methods=["GET"]),
        Route("/api/ranges", api.ranges, methods=["GET"]),
        Route("/api/ranges/{spec}", api.range_detail, methods=["GET"]),
        Route("/api/local", api.local, methods=["GET"]),
        Route("/api/changes", api.changes, methods=["GET"]),
        Route("/api/about", api.about, methods=["GET"]),
        Route("/api/feedback", api.feedback, methods=["GET", "POST"]),
        Route("/api/check", api.check, methods=["POST"]),
    ]


def create_app(config: WebConfig | None = None) -> Any:
    """The ASGI app. Opens (and, if there is none yet, builds) the registry database and the
    feedback database right away, so a bad path fails before the server starts listening."""
    config = config or WebConfig()
    web = Web(config)
    app = Starlette(
        routes=routes(),
        exception_handlers={PortatlasError: portatlas_error, HTTPException: http_error,
                            Exception: server_error},
    )
    app.state.web = web
    guarded = GuardMiddleware(app, config.allowed_hosts)
    guarded.web = web  # type: ignore[attr-defined]  # for tests and the server
    return guarded
