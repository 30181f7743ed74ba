"""What each page shows, gathered from the public API into plain template context.

Functions here run once per database build for cached pages (port, service, ranges, home,
about) or per request for the rest; none of them holds knowledge of its own about ports.
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING, Any

from portatlas.atlas import trojan_caveat
from portatlas.errors import NotFound, PortatlasError, UsageError
from portatlas.model import DYNAMIC, SYSTEM, USER, Entry, distinct_entries, range_class
from portatlas.parsing import parse_query
from portatlas.render.history import describe, merge_transports, when
from portatlas.render.port import section_lines
from portatlas.render.terminal import Style
from portatlas.sections import SECTIONS, collect
from portatlas.stamps import host_name
from portatlas.web import live
from portatlas.web.openapi import endpoints
from portatlas.web.portspace import BLOCK, STATUSES, block_shade

if TYPE_CHECKING:
    from portatlas.web.app import Web

OS_LABELS = {"linux": "Linux", "macos": "macOS", "windows": "Windows"}
SECTION_TITLES = {"here": "On this machine", "history": "History and real-world use"}


def entry_link(e: Entry) -> str:
    if e.port_lo is None:
        return f"/services/{e.service}" if e.service else "/ranges"
    if e.is_range:
        return f"/ranges/{e.port_lo}-{e.port_hi}"
    return f"/ports/{e.port_lo}"


# port -------------------------------------------------------------------------------------
def port_context(web: "Web", port: int, transport: str | None) -> dict[str, Any]:
    atlas = web.state.atlas
    answer = atlas.port(port, transport)
    modules = collect(answer, skip=("here",))
    space = web.state.space
    named = [e for e in distinct_entries(answer.entries) if e.service]
    headline = named or distinct_entries(answer.entries)
    title = f"Port {port}" + (f"/{transport}" if transport else "")
    if named:
        title += " · " + ", ".join(dict.fromkeys(e.service for e in named))
    neighbours = [{"port": n, "entries": distinct_entries(es), "status": space.status(n)}
                  for n, es in answer.neighbours]
    return {
        "title": title,
        "answer": answer,
        "port": port,
        "transport": transport,
        "headline": headline,
        "status": answer.status,
        "by_transport": answer.by_transport,
        "range": answer.range_class,
        "nmap": answer.nmap,
        "trojans": answer.trojans,
        "trojan_caveat": trojan_caveat(),
        "neighbours": neighbours,
        "howto": [(OS_LABELS[os_name], os_name, kinds) for os_name, kinds in answer.howto.items()],
        "sections": [section_view(key, module, answer.extra[key]) for key, module in modules.items()],
        "prev_port": port - 1 if port > 0 else None,
        "next_port": port + 1 if port < 65535 else None,
        "entry_link": entry_link,
    }


def section_view(key: str, module: Any, data: dict) -> dict[str, Any]:
    """A section from another part of portatlas, shown the way the CLI renders it."""
    try:
        lines = section_lines(key, data, Style(enabled=False))
    except Exception:  # a section that cannot render must not take the page down
        lines = []
    view = {"key": key, "title": SECTION_TITLES.get(key, key.replace("_", " ").capitalize()),
            "data": data, "lines": lines}
    if key == "history":
        view["timeline"] = _timeline(data)
    return view


def _timeline(data: dict) -> list[dict[str, Any]] | None:
    """Registry events in the order and words of `portatlas history` (its own helpers)."""
    try:
        return [{"transports": transports, "when": when(event), "what": describe(event),
                 "kind": event.get("kind")}
                for transports, event in merge_transports(data.get("registry_timeline") or {})]
    except Exception:  # that part of portatlas changed shape: the text rendering still shows
        return None


def here_section(web: "Web", port: int, transport: str | None) -> dict[str, Any] | None:
    """The live 'here' section data for a port (what listens on it on this machine)."""
    atlas = web.state.atlas
    answer = atlas.port(port, transport)
    others = tuple(k for k in SECTIONS if k != "here")
    modules = collect(answer, skip=others)
    if "here" not in modules:
        return None
    return section_view("here", modules["here"], answer.extra["here"])


_HERE_AVAILABLE: bool | None = None


def here_available() -> bool:
    """Whether this installation has the 'here' section (portatlas.local); asked once."""
    global _HERE_AVAILABLE
    if _HERE_AVAILABLE is None:
        try:
            _HERE_AVAILABLE = importlib.util.find_spec(SECTIONS["here"]) is not None
        except ModuleNotFoundError:
            _HERE_AVAILABLE = False
    return _HERE_AVAILABLE


def here_html(web: "Web", port: int, transport: str | None) -> str:
    section = here_section(web, port, transport)
    return web.env.get_template("_here.html").render(
        section=section, port=port, available=here_available(), lt=local_text())


def local_text() -> Any:
    """The text helpers of `portatlas local` (endpoint, process name, ...), for the templates."""
    from portatlas.render import local as text  # it needs portatlas.local, which a build may lack

    return text


# service ----------------------------------------------------------------------------------
def service_context(web: "Web", name: str, transport: str | None) -> dict[str, Any]:
    atlas = web.state.atlas
    answer = atlas.service(name, transport)
    ports = []
    for e in distinct_entries(answer.entries):
        transports = sorted({x.transport or "any" for x in answer.entries
                             if (x.service, x.description, x.ports) == (e.service, e.description, e.ports)})
        ports.append({"entry": e, "transports": transports, "link": entry_link(e)})
    return {"title": f"Service {answer.name}", "answer": answer, "name": answer.name,
            "ports": ports, "entries": answer.entries, "entry_link": entry_link}


# search -----------------------------------------------------------------------------------
_SEARCHABLE = re.compile(r"[A-Za-z0-9_+]")


def search_results(web: "Web", q: str, limit: int) -> dict[str, Any]:
    """The CLI's search JSON plus a link per result and a direct 'go to' for a port query."""
    if not _SEARCHABLE.search(q):
        # The registry is ASCII; a query without an ASCII letter or digit cannot match, and a
        # rule this simple can be stated exactly in the OpenAPI schema.
        raise UsageError("search needs at least one letter or digit (A-Z, 0-9)")
    atlas = web.state.atlas
    hits = atlas.search(q, limit)
    results = []
    for h in hits:
        item = h.to_dict()
        item["url"] = entry_link(h.entry) if h.entry is not None else f"/ports/{h.port}"
        results.append(item)
    return {"schema": "portatlas.search/1", "query": q, "source": atlas.source_label,
            "goto": goto(q), "results": results}


def goto(q: str) -> str | None:
    """Where a query that names a port, range or service leads directly."""
    try:
        query = parse_query(q)
    except UsageError:
        return None
    if query.kind == "port":
        return f"/ports/{query.lo}" + (f"?transport={query.transport}" if query.transport else "")
    if query.kind == "range":
        return f"/ranges/{query.lo}-{query.hi}"
    return None


def search_context(web: "Web", q: str) -> dict[str, Any]:
    context: dict[str, Any] = {"title": "Search", "q": q, "results": [], "goto": None,
                               "error": None, "nav": "search"}
    if not q.strip():
        return context
    if len(q) > 200:
        context["error"] = f"search text too long ({len(q)} characters; the most is 200)"
        return context
    try:
        found = search_results(web, q, 50)
    except PortatlasError as exc:
        context["error"] = str(exc)
        return context
    context.update(title=f"Search: {q}", results=found["results"], goto=found["goto"])
    return context


# the port space ---------------------------------------------------------------------------
def _port_cells(web: "Web", lo: int, hi: int) -> list[dict[str, Any]]:
    """One cell per port with its status and the names registered there (tooltips)."""
    atlas, space = web.state.atlas, web.state.space
    cells = []
    for port in range(lo, hi + 1):
        names = [e.service for e in distinct_entries(atlas.entries(port)) if e.service]
        status = space.status(port)
        label = f"{port}: " + (", ".join(dict.fromkeys(names)) if names else status)
        cells.append({"port": port, "status": status, "label": label})
    return cells


def _block_cells(web: "Web", lo: int = 0, hi: int = 65535) -> list[dict[str, Any]]:
    cells = []
    for block in web.state.space.blocks[lo // BLOCK:hi // BLOCK + 1]:
        parts = [f"{block[s]} {s}" for s in STATUSES if block[s]]
        cells.append({"lo": block["lo"], "hi": block["hi"], "shade": block_shade(block),
                      "label": f"{block['lo']}-{block['hi']}: " + ", ".join(parts)})
    return cells


def home_context(web: "Web") -> dict[str, Any]:
    space = web.state.space
    atlas = web.state.atlas
    popular = []
    for port in atlas.store.nmap_top("tcp", 24):
        names = [e.service for e in distinct_entries(atlas.entries(port, "tcp")) if e.service]
        popular.append({"port": port, "name": names[0] if names else ""})
    return {"title": "The port space", "nav": "home", "system_cells": _port_cells(web, 0, 1023),
            "blocks": _block_cells(web), "classes": space.classes(), "popular": popular,
            "block_size": BLOCK}


def ranges_context(web: "Web") -> dict[str, Any]:
    atlas = web.state.atlas
    named = [e for e in distinct_entries(atlas.all_entries()) if e.is_range]
    named.sort(key=lambda e: (e.port_lo, e.port_hi))
    return {"title": "Ranges", "nav": "ranges", "classes": web.state.space.classes(),
            "blocks": _block_cells(web), "named": named, "entry_link": entry_link,
            "block_size": BLOCK}


# Entries shown per page of /ranges/LO-HI: a wide range has thousands, and one page per
# distinct range holding them all was a way to fill the server's memory (docs/web.md).
RANGE_PAGE_ENTRIES = 200


def range_context(web: "Web", lo: int, hi: int, transport: str | None,
                  page: int = 1) -> dict[str, Any]:
    atlas = web.state.atlas
    found = atlas.range(lo, hi, transport)
    pages = max(1, -(-len(found) // RANGE_PAGE_ENTRIES))
    if page > pages:
        raise UsageError(f"page {page} is past the last page ({pages}) of this range")
    first = (page - 1) * RANGE_PAGE_ENTRIES
    entries = found[first:first + RANGE_PAGE_ENTRIES]
    span = hi - lo + 1
    per_port = span <= 1024
    return {
        "title": f"Ports {lo}-{hi}", "nav": "ranges", "lo": lo, "hi": hi, "transport": transport,
        "entries": entries, "tally": web.state.space.tally(lo, hi),
        "cells": _port_cells(web, lo, hi) if per_port else [],
        "blocks": [] if per_port else _block_cells(web, lo, hi),
        "classes": sorted({range_class(lo).name, range_class(hi).name},
                          key=[SYSTEM.name, USER.name, DYNAMIC.name].index),
        "prev": (max(0, lo - span), lo - 1) if lo > 0 else None,
        "next": (hi + 1, min(65535, hi + span)) if hi < 65535 else None,
        "entry_link": entry_link, "block_size": BLOCK,
        "total": len(found), "page": page, "pages": pages, "first": first,
    }


# about ------------------------------------------------------------------------------------
def about_context(web: "Web") -> dict[str, Any]:
    state = web.state
    store = state.atlas.store
    counts = dict(store.conn.execute(
        "SELECT 'entries', count(*) FROM entries UNION ALL SELECT 'people', count(*) FROM people "
        "UNION ALL SELECT 'trojans', count(*) FROM trojans UNION ALL SELECT 'nmap', count(*) FROM nmap"
    ).fetchall())
    return {"title": "About the data", "nav": "about", "provenance": state.provenance,
            "meta": state.meta, "database": str(state.db_path), "counts": counts,
            "build": state.build, "endpoints": endpoints()}


# this machine -----------------------------------------------------------------------------
def local_context(web: "Web", params: Any) -> dict[str, Any]:
    data = live.local_data(web, params)
    return {"title": "This machine", "nav": "local", "lt": local_text(),
            "latest_changes": latest_changes(web), **data}


LATEST_INTERVALS = 10


def latest_changes(web: "Web", kind: str = "local", name: str | None = None,
                   limit: int = LATEST_INTERVALS) -> dict[str, Any]:
    """The changes between the last `limit` + 1 saved snapshots (portatlas.changes/1), newest
    interval first; an empty list when nothing was saved yet (`portatlas local --save`)."""
    from portatlas.changes import SnapshotStore, snapshot_path  # only for the changes page

    if name is None and kind == "local":
        name = host_name()
    doc: dict[str, Any] = {"schema": "portatlas.changes/1", "kind": kind, "name": name,
                           "since": None, "until": None, "intervals": []}
    try:
        with SnapshotStore(web.config.snapshots or snapshot_path(web.config.db_path),
                           create=False) as store:
            if name is None:
                saved = store.snapshots(kind)
                name = doc["name"] = max(saved, key=lambda s: (s.taken_at, s.id)).name \
                    if saved else None
            intervals = store.recent(kind, name, limit) if name is not None else []
    except NotFound:
        return doc
    doc["intervals"] = [i.to_dict() for i in reversed(intervals)]
    return doc


# remote checks ----------------------------------------------------------------------------
def check_context(web: "Web", result: dict | None) -> dict[str, Any]:
    checker = web.checker
    return {"title": "Check a host", "nav": "check", "enabled": checker is not None,
            "targets": checker.targets if checker else [],
            "max_ports": web.config.check_ports_max, "result": result}
