"""HTML pages. Each handler gathers data through the public API (Atlas, PortAnswer,
sections.collect, portatlas.local) and hands it to a template; nothing here decides what a
port means."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from portatlas.errors import UsageError
from portatlas.model import TRANSPORTS
from portatlas.parsing import parse_port, parse_query
from portatlas.web import views
from portatlas.web.security import WrongMediaType, check_csrf, read_body, Forbidden

if TYPE_CHECKING:
    from portatlas.web.app import Web


def _web(request: Request) -> "Web":
    return request.app.state.web


def strict_transport(request: Request) -> str | None:
    """?transport= must be exactly one of tcp, udp, sctp, dccp (or absent)."""
    value = request.query_params.get("transport")
    if value is None:
        return None
    if value not in TRANSPORTS:
        raise UsageError(f"unknown transport {value!r}; use one of {', '.join(TRANSPORTS)}")
    return value


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# the port space ---------------------------------------------------------------------------
async def home(request: Request) -> Response:
    web = _web(request)
    prepared = web.page("home", "home.html", lambda: views.home_context(web))
    return web.respond(request, prepared)


async def ranges_page(request: Request) -> Response:
    web = _web(request)
    prepared = web.page("ranges", "ranges.html", lambda: views.ranges_context(web))
    return web.respond(request, prepared)


async def range_page(request: Request) -> Response:
    web = _web(request)
    spec = request.path_params["spec"]
    query = parse_query(spec)
    if query.kind == "port":
        return RedirectResponse(f"/ports/{query.lo}", 303)
    if query.kind != "range":
        raise UsageError(f"{spec!r} is not a port range (write it as 6000-6063)")
    raw_page = request.query_params.get("page", "1")
    if not (raw_page.isascii() and raw_page.isdigit() and 1 <= int(raw_page) <= 100000):
        raise UsageError("page must be a whole number from 1")
    page = int(raw_page)
    key = ("range", query.lo, query.hi, query.transport, page)
    prepared = web.page(key, "range.html",
                        lambda: views.range_context(web, query.lo, query.hi, query.transport,
                                                    page))
    return web.respond(request, prepared)


# one port, one service --------------------------------------------------------------------
async def port_page(request: Request) -> Response:
    web = _web(request)
    port = parse_port(request.path_params["port"])
    transport = strict_transport(request)
    prepared = web.page(("port", port, transport), "port.html",
                        lambda: views.port_context(web, port, transport))
    here = await live_here_html(web, port, transport)
    notice = ""
    if request.query_params.get("feedback") == "thanks":
        notice = '<p class="notice" role="status">Thank you: your answer was recorded.</p>'
    return web.respond(request, prepared, {"here": here, "notice": notice})


async def live_here_html(web: "Web", port: int, transport: str | None) -> str:
    """The 'on this machine' part of a port page, at most live_ttl seconds old."""
    if not views.here_available():
        return web.static_here(port)
    key = ("html", port, transport, web.state.build)
    hit = web.here.get(key, port)
    if hit is not None:
        return hit[2]
    html = await run_in_threadpool(views.here_html, web, port, transport)
    web.here.put(key, html)
    return html


async def service_page(request: Request) -> Response:
    web = _web(request)
    name = request.path_params["name"]
    transport = strict_transport(request)
    prepared = web.page(("service", name.lower(), transport), "service.html",
                        lambda: views.service_context(web, name, transport))
    return web.respond(request, prepared)


# search -----------------------------------------------------------------------------------
async def search_page(request: Request) -> Response:
    web = _web(request)
    q = request.query_params.get("q", "")
    target = views.goto(q) if len(q) <= 200 else None
    if target is not None:
        # "57" or "6000-6010" typed in a search box (or the home page's "go to port") means
        # that page; the JSON search still offers both.
        return RedirectResponse(target, 303)
    web.state.current()
    context = views.search_context(web, q)
    return web.respond(request, web.render("search.html", 400 if context["error"] else 200,
                                           **context))


# this machine -----------------------------------------------------------------------------
async def local_page(request: Request) -> Response:
    web = _web(request)
    web.state.current()
    context = await run_in_threadpool(views.local_context, web, request.query_params)
    return web.respond(request, web.render("local.html", **context))


# data and feedback ------------------------------------------------------------------------
async def about_page(request: Request) -> Response:
    web = _web(request)
    prepared = web.page("about", "about.html", lambda: views.about_context(web))
    return web.respond(request, prepared)


async def about_redirect(request: Request) -> Response:
    return RedirectResponse("/about", 301)


async def form_fields(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (size-capped), one value per field."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise WrongMediaType("send the form as application/x-www-form-urlencoded")
    body = await read_body(request)
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                       strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise UsageError("the form could not be read") from None
    return {k: v for k, v in pairs}


async def feedback_page(request: Request) -> Response:
    web = _web(request)
    if request.method == "POST":
        fields = await form_fields(request)
        check_csrf(web.feedback.secret, request.headers, request.cookies, fields.get("csrf"))
        port = parse_port(fields.get("port", ""))
        helpful = fields.get("helpful")
        if helpful not in ("yes", "no"):
            raise UsageError("say yes or no")
        await run_in_threadpool(web.feedback.add, port, helpful == "yes",
                                fields.get("comment"), client_address(request))
        return RedirectResponse(f"/ports/{port}?feedback=thanks#feedback", 303)
    web.state.current()
    summary = await run_in_threadpool(web.feedback.summary)
    return web.respond(request, web.render("feedback.html", summary=summary, nav="feedback",
                                           title="Feedback"))


async def check_page(request: Request) -> Response:
    web = _web(request)
    web.state.current()
    result = None
    if request.method == "POST":
        if web.checker is None:
            raise Forbidden("remote checks are off; start the server with --allow-check TARGETS")
        fields = await form_fields(request)
        check_csrf(web.feedback.secret, request.headers, request.cookies, fields.get("csrf"))
        result = await web.checker.run_form(fields, client_address(request), web.state.atlas)
    return web.respond(request, web.render("check.html", **views.check_context(web, result)))


# assets -----------------------------------------------------------------------------------
async def static_file(request: Request) -> Response:
    web = _web(request)
    found = web.static.files.get(request.path_params["name"])
    if found is None:
        raise HTTPException(404)
    body, media_type, digest = found
    versioned = request.query_params.get("v") == digest
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return Response(body, headers={"cache-control": cache, "etag": f'"{digest}"'},
                    media_type=media_type)


async def favicon(request: Request) -> Response:
    return RedirectResponse(_web(request).static.url("icon.svg"), 301)


