"""The JSON API: the same data as the pages (and as the CLI's --json), schema in openapi.py."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from portatlas.errors import UsageError
from portatlas.model import distinct_entries
from portatlas.parsing import parse_port, parse_query
from portatlas.web import views, live
from portatlas.web.portspace import BLOCK
from portatlas.web.pages import client_address, strict_transport
from portatlas.web.responses import json_response
from portatlas.web.security import HEADER, Forbidden, WrongMediaType, check_csrf, read_body
from portatlas.web.openapi import schema
from portatlas.sections import collect
from portatlas.atlas import RangeAnswer

if TYPE_CHECKING:
    from portatlas.web.app import Web


def _web(request: Request) -> "Web":
    return request.app.state.web


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(data, status, headers)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise UsageError(f"{name} must be a whole number from {lo} to {hi}")
    return int(raw)


async def healthz(request: Request) -> Response:
    web = _web(request)
    web.state.current()
    return _json({"status": "ok", "build": web.state.build, "source": web.state.atlas.source_label})


async def openapi(request: Request) -> Response:
    return _json(schema(checks_enabled=_web(request).checker is not None))


async def port(request: Request) -> Response:
    """`portatlas N --json`, with the live 'here' section filled in per request."""
    web = _web(request)
    number = parse_port(request.path_params["port"])
    transport = strict_transport(request)
    web.state.current()

    def make() -> bytes:
        answer = web.state.atlas.port(number, transport)
        collect(answer, skip=("here",))
        # kept encoded, without its closing brace: the live part is appended per request
        return _encode(answer.to_dict())[:-1]

    head = web.state.cached(("api-port", number, transport), make)
    here = await live_here_data(web, number, transport)
    body = head + (b',"here":' + here + b"}" if here is not None else b"}")
    return Response(body, media_type="application/json")


def _encode(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


async def live_here_data(web: "Web", number: int, transport: str | None) -> bytes | None:
    """The 'here' section of a port, JSON-encoded, at most a few seconds old."""
    key = ("data", number, transport, web.state.build)
    hit = web.here.get(key, number)
    if hit is not None:
        return hit[2]
    section = await run_in_threadpool(views.here_section, web, number, transport)
    data = _encode(section["data"]) if section else None
    web.here.put(key, data)
    return data


async def service(request: Request) -> Response:
    web = _web(request)
    name = request.path_params["name"]
    transport = strict_transport(request)
    web.state.current()
    body = web.state.cached(("api-service", name.lower(), transport),
                            lambda: _encode(web.state.atlas.service(name, transport).to_dict()))
    return Response(body, media_type="application/json")


async def search(request: Request) -> Response:
    web = _web(request)
    q = request.query_params.get("q")
    if q is None or not q.strip():
        raise UsageError("give the search text as ?q=")
    if len(q) > 200:
        raise UsageError(f"search text too long ({len(q)} characters; the most is 200)")
    limit = _int_param(request, "limit", 20, 1, 100)
    web.state.current()
    return _json(views.search_results(web, q, limit))


async def ranges(request: Request) -> Response:
    web = _web(request)
    web.state.current()

    def make() -> dict[str, Any]:
        space = web.state.space
        named = [e.to_dict() for e in distinct_entries(web.state.atlas.all_entries()) if e.is_range]
        return {"schema": "portatlas.web.ranges/1", "source": web.state.atlas.source_label,
                "classes": space.classes(), "block_size": BLOCK, "blocks": space.blocks,
                "ranges": named}

    body = web.state.cached("api-ranges", lambda: _encode(make()))
    return Response(body, media_type="application/json")


# One page of a range's entries: a range can hold thousands (0-16383 has over 10,000), and
# an answer that size, cached per distinct range, was how a client could fill the server's
# memory. Wider ranges are read page by page (?offset=&limit=, "page" says where you are).
RANGE_PAGE_DEFAULT = 500
RANGE_PAGE_MAX = 1000


async def range_detail(request: Request) -> Response:
    web = _web(request)
    spec = request.path_params["spec"]
    query = parse_query(spec)
    if query.kind != "range":
        raise UsageError(f"{spec!r} is not a port range (write it as 6000-6063)")
    offset = _int_param(request, "offset", 0, 0, 1 << 20)
    limit = _int_param(request, "limit", RANGE_PAGE_DEFAULT, 1, RANGE_PAGE_MAX)
    web.state.current()

    def make() -> bytes:
        atlas, space = web.state.atlas, web.state.space
        entries = atlas.range(query.lo, query.hi, query.transport)
        total = len(entries)
        if offset and offset >= total:
            raise UsageError(f"offset {offset} is past the last of the {total} entries")
        answer = RangeAnswer(query.lo, query.hi, query.transport, entries[offset:offset + limit])
        more = offset + limit < total
        page = {"offset": offset, "limit": limit, "total": total,
                "next": (f"/api/ranges/{spec}?offset={offset + limit}&limit={limit}"
                         if more else None)}
        return _encode({**answer.to_dict(), "source": atlas.source_label, "page": page,
                        "tally": space.tally(query.lo, query.hi),
                        "statuses": [space.status(p) for p in range(query.lo, query.hi + 1)]})

    body = web.state.cached(("api-range", query.lo, query.hi, query.transport, offset, limit),
                            make)
    return Response(body, media_type="application/json")


async def local(request: Request) -> Response:
    web = _web(request)
    data = await run_in_threadpool(live.local_data, web, request.query_params, True)
    return _json(data["json"])


async def changes(request: Request) -> Response:
    web = _web(request)
    params = request.query_params
    kind = params.get("kind", "local")
    if kind not in ("local", "scan"):
        raise UsageError("kind is local or scan")
    name = params.get("name") or None
    if name is not None and len(name) > 200:
        raise UsageError("name is too long")
    text = params.get("limit", str(views.LATEST_INTERVALS))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 100:
        raise UsageError("limit is a number from 1 to 100")
    data = await run_in_threadpool(views.latest_changes, web, kind, name, int(text))
    return _json(data)


async def about(request: Request) -> Response:
    web = _web(request)
    web.state.current()
    state = web.state
    return _json({"schema": "portatlas.web.about/1", "source": state.atlas.source_label,
                  "database": str(state.db_path), "built_at": state.meta.get("built_at"),
                  "build": state.build, "provenance": state.provenance})


async def _json_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise WrongMediaType("send the body as application/json")
    body = await read_body(request)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise UsageError("the body must be a JSON object")
    return data


async def feedback(request: Request) -> Response:
    web = _web(request)
    if request.method == "GET":
        return _json(await run_in_threadpool(web.feedback.summary))
    # Checked before the body is even parsed: a cross-site form cannot get this far.
    check_csrf(web.feedback.secret, request.headers, request.cookies, request.headers.get(HEADER))
    data = await _json_body(request)
    unknown = set(data) - {"port", "helpful", "comment"}
    if unknown:
        raise UsageError(f"unknown field {sorted(unknown)[0]!r}")
    number = data.get("port")
    if isinstance(number, float) and number.is_integer():
        number = int(number)  # JSON does not tell 22 from 22.0
    helpful = data.get("helpful")
    comment = data.get("comment")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 65535:
        raise UsageError("port must be a number from 0 to 65535")
    if not isinstance(helpful, bool):
        raise UsageError("helpful must be true or false")
    if comment is not None and not isinstance(comment, str):
        raise UsageError("comment must be text")
    row = await run_in_threadpool(web.feedback.add, number, helpful, comment,
                                  client_address(request))
    return _json({"ok": True, "id": row}, 201)


async def check(request: Request) -> Response:
    web = _web(request)
    if web.checker is None:
        raise Forbidden("remote checks are off; start the server with --allow-check TARGETS")
    check_csrf(web.feedback.secret, request.headers, request.cookies, request.headers.get(HEADER))
    data = await _json_body(request)
    web.state.current()
    result = await web.checker.run_json(data, client_address(request), web.state.atlas)
    return _json(result)
