"""The OpenAPI 3.1 description of the JSON API (written by hand: it is the contract the
schemathesis tests hold the server to, so it must say exactly what the code does)."""

from __future__ import annotations

from typing import Any
from importlib import resources
import json

from portatlas import __version__
from portatlas.model import TRANSPORTS

STATUSES = ["assigned", "unassigned", "reserved", "deassigned"]


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None,
         extra: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "required": list(props) if required is None else required}
    if not extra:
        out["additionalProperties"] = False
    return out


STR = {"type": "string"}
INT = {"type": "integer"}
PORT = {"type": "integer", "minimum": 0, "maximum": 65535}
TRANSPORT = {"type": "string", "enum": list(TRANSPORTS)}
STATUS = {"type": "string", "enum": STATUSES}
TALLY = {s: {"type": "integer", "minimum": 0} for s in STATUSES}

SNAPSHOT = _obj({"id": INT, "kind": STR, "name": STR, "time": STR, "items": INT})
CHANGE = _obj({"change": {"type": "string", "enum": ["appeared", "disappeared", "changed"]},
               "key": STR, "label": STR, "facets": {"type": "object"},
               "fields": {"type": "array", "items": _obj({"facet": STR, "before": {}, "after": {}})}})

COMPONENTS: dict[str, Any] = {
    "Error": _obj({"error": STR, "status": INT}),
    "Changes": _obj({"schema": {"const": "portatlas.changes/1"},
                     "kind": {"type": "string", "enum": ["local", "scan"]},
                     "name": _null(STR), "since": _null(STR), "until": _null(STR),
                     "intervals": {"type": "array", "items": _obj(
                         {"from": _null(SNAPSHOT), "to": SNAPSHOT,
                          "changes": {"type": "array", "items": CHANGE}})}}),
    "Person": _obj({"id": STR, "name": _null(STR), "org": _null(STR), "email": _null(STR),
                    "uri": _null(STR)}),
    "Reference": _obj({"kind": {"type": "string", "enum": ["rfc", "draft", "uri", "text",
                                                           "note", "person"]},
                       "value": STR, "section": _null(STR), "label": STR, "url": _null(STR)}),
    "Entry": _obj({
        "service": _null(STR), "ports": _null(STR), "port_lo": _null(PORT),
        "port_hi": _null(PORT), "transport": _null(TRANSPORT), "description": STR,
        "status": STATUS, "assignee": _null(_ref("Person")), "contact": _null(_ref("Person")),
        "registered": _null(STR), "modified": _null(STR),
        "references": {"type": "array", "items": _ref("Reference")},
        "service_code": _null(STR), "unauthorized_use": _null(STR), "notes": _null(STR),
        "alias_of": _null(STR), "previously": _null(STR), "source": STR}),
    "EntrySummary": _obj({"service": _null(STR), "ports": STR, "transport": _null(TRANSPORT),
                          "description": STR, "status": STATUS}),
    "RangeClass": _obj({"name": {"type": "string", "enum": ["system", "user", "dynamic"]},
                        "lo": PORT, "hi": PORT, "meaning": STR}),
    "Port": _obj({
        "schema": {"const": "portatlas.port/1"}, "port": PORT, "transport": _null(TRANSPORT),
        "source": STR, "range_class": _ref("RangeClass"),
        "status": {"type": "object", "propertyNames": TRANSPORT, "additionalProperties": STATUS},
        "entries": {"type": "object", "propertyNames": TRANSPORT,
                    "additionalProperties": {"type": "array", "items": _ref("Entry")}},
        "trojans": _obj({"caveat": STR, "by_transport": {
            "type": "object", "additionalProperties": {"type": "array", "items": STR}}}),
        "nmap_frequency": {"type": "object", "additionalProperties": _obj(
            {"service": STR, "frequency": {"type": "number", "minimum": 0, "maximum": 1}})},
        "neighbours": {"type": "array", "items": _obj(
            {"port": PORT, "entries": {"type": "array", "items": _ref("EntrySummary")}})},
        "howto": {"type": "object", "additionalProperties": _obj({
            "local": {"type": "array", "items": STR}, "remote": {"type": "array", "items": STR}})},
        "here": {"type": "object", "description": "what listens on this port on the server's "
                 "machine (the CLI's 'here' section; live, at most a few seconds old)"},
        "history": {"type": "object", "description": "registry timeline and curated notes "
                    "(the CLI's 'history' section)"},
    }, required=["schema", "port", "transport", "source", "range_class", "status", "entries",
                 "trojans", "nmap_frequency", "neighbours", "howto"]),
    "Service": _obj({"schema": {"const": "portatlas.service/1"}, "name": STR,
                     "entries": {"type": "array", "items": _ref("Entry")}}),
    "SearchResult": {"oneOf": [
        {"allOf": [_ref("Entry"), _obj({
            "score": {"type": "number"},
            "match": {"type": "string", "enum": ["service name", "text", "phrase"]},
            "result": {"const": "registry"}, "url": STR})]},
        _obj({"score": {"type": "number"}, "match": {"type": "string", "enum": ["text", "phrase"]},
              "result": {"const": "note"}, "service": {"type": "null"}, "ports": STR,
              "port_lo": PORT, "port_hi": PORT, "transport": _null(TRANSPORT),
              "transports": {"type": "array", "items": TRANSPORT}, "description": STR,
              "source": {"const": "portatlas-notes"},
              "note": {"type": "object", "description": "the note, as in the history section"},
              "url": STR})]},
    "Search": _obj({"schema": {"const": "portatlas.search/1"}, "query": STR, "source": STR,
                    "goto": _null(STR),
                    "results": {"type": "array", "items": _ref("SearchResult")}}),
    "Block": _obj({"lo": PORT, "hi": PORT, **TALLY}),
    "Ranges": _obj({
        "schema": {"const": "portatlas.web.ranges/1"}, "source": STR,
        "classes": {"type": "array", "items": {"allOf": [_ref("RangeClass"), _obj(TALLY)]}},
        "block_size": {"type": "integer", "minimum": 1},
        "blocks": {"type": "array", "items": _ref("Block")},
        "ranges": {"type": "array", "items": _ref("Entry")}}),
    "RangeDetail": _obj({
        "schema": {"const": "portatlas.range/1"}, "lo": PORT, "hi": PORT,
        "transport": _null(TRANSPORT), "entries": {"type": "array", "items": _ref("Entry")},
        "source": STR, "tally": _ref("Block"), "statuses": {"type": "array", "items": STATUS},
        "page": _obj({"offset": INT, "limit": INT, "total": INT, "next": _null(STR)})}),
    "Provenance": _obj({"kind": STR, "location": STR, "format": _null(STR),
                        "sha256": _null(STR), "registry_date": _null(STR),
                        "records": _null(INT), "imported_at": _null(STR)}),
    "About": _obj({"schema": {"const": "portatlas.web.about/1"}, "source": STR,
                   "database": STR, "built_at": _null(STR), "build": STR,
                   "provenance": {"type": "array", "items": _ref("Provenance")}}),
    "Health": _obj({"status": {"const": "ok"}, "build": STR, "source": STR}),
    "FeedbackIn": _obj({"port": PORT, "helpful": {"type": "boolean"},
                        "comment": _null({"type": "string", "maxLength": 500})},
                       required=["port", "helpful"], extra=False),
    "FeedbackOut": _obj({"ok": {"const": True}, "id": {"type": "integer", "minimum": 1}}),
    "FeedbackSummary": _obj({
        "schema": {"const": "portatlas.web.feedback/1"},
        "total": {"type": "integer", "minimum": 0}, "helpful": {"type": "integer", "minimum": 0},
        "not_helpful": {"type": "integer", "minimum": 0},
        "ports": {"type": "array", "items": _obj({
            "port": PORT, "helpful": {"type": "integer", "minimum": 0},
            "not_helpful": {"type": "integer", "minimum": 0}, "last": _null(STR)})},
        "recent_comments": {"type": "array", "items": _obj({
            "id": INT, "port": PORT, "helpful": {"type": "boolean"}, "comment": STR,
            "created": _null(STR)})}}),
    "Local": {"type": "object", "description": "this machine's listeners (portatlas local "
              "--json)", "required": ["schema"], "properties": {"schema": STR}},
    "CheckIn": _obj({"host": {"type": "string", "minLength": 1, "maxLength": 253},
                     "ports": {"type": "array", "minItems": 1, "maxItems": 16, "items": PORT},
                     "transport": {"type": "string", "enum": ["tcp"]}},
                    required=["host", "ports"], extra=False),
    "CheckOut": _obj({
        "schema": {"const": "portatlas.web.check/1"}, "host": STR,
        "ports": {"type": "array", "items": PORT},
        "results": {"type": "array", "items": {"type": "object", "required": [
            "address", "port", "transport", "state", "reason"], "properties": {
            "address": STR, "port": PORT, "transport": TRANSPORT, "state": STR, "reason": STR,
            "rtt_ms": _null({"type": "number"}), "registered": _null({"type": "array"}),
            "service": _null({"type": "object", "description": "what answers (open ports): "
                              "the identification verdict, docs/identify.md"})}}},
        "scan": {"type": "object", "description": "the full result in portatlas check/scan "
                 "--json form (schema portatlas.scan/1, docs/scan.md)"}}),
}


def _error(description: str, headers: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": _ref("Error")}}}
    if headers:
        out["headers"] = headers
    return out


def _ok(name: str, description: str = "OK", status: str = "200") -> dict[str, Any]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": _ref(name)}}}}


BAD = {"400": _error("bad input (a one-line reason in 'error')")}
RATE = {"429": _error("too many requests from this client",
                      {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}})}
DATA = {"503": _error("the registry database is missing or broken")}
FORBIDDEN = {"403": _error("refused: missing/stale CSRF token, cross-site request, or feature off")}
TOO_BIG = {"413": _error("request body over 4 KiB"),
           "415": _error("body is not application/json")}

_P = "([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
LOCAL_PARAMS = [
    {"name": "port", "in": "query", "required": False, "description": "PORT[/TRANSPORT] or LO-HI",
     "schema": {"type": "string", "pattern": f"^{_P}(-{_P})?(/(tcp|udp))?$"}},
    {"name": "transport", "in": "query", "required": False,
     "schema": {"type": "string", "enum": ["tcp", "udp"]}},
    {"name": "family", "in": "query", "required": False,
     "schema": {"type": "string", "enum": ["ipv4", "ipv6"]}},
    {"name": "all", "in": "query", "required": False, "description": "1: connections too",
     "schema": {"type": "string", "enum": ["0", "1"]}},
    {"name": "process", "in": "query", "required": False,
     "schema": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^-]"}},
    {"name": "user", "in": "query", "required": False,
     "schema": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[^-]"}},
    {"name": "sort", "in": "query", "required": False, "schema": {
        "type": "string", "pattern": "^(port|transport|address|state|exposure|pid|process|user|flags)"
                                     "(,(port|transport|address|state|exposure|pid|process|user|flags))*$"}},
]

TRANSPORT_PARAM = {"name": "transport", "in": "query", "required": False, "schema": TRANSPORT,
                   "description": "only this transport"}
CSRF_HEADER = {"name": "X-CSRF-Token", "in": "header", "required": True, "schema": STR,
               "description": "the token from the page (meta csrf-token), bound to the pa_csrf cookie"}

PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness and the loaded database build",
                         "responses": {**_ok("Health"), **DATA}}},
    "/api/ports/{port}": {"get": {
        "summary": "Everything known about one port (as portatlas N --json)",
        "parameters": [{"name": "port", "in": "path", "required": True, "schema": PORT},
                       TRANSPORT_PARAM],
        "responses": {**_ok("Port"), **BAD, **DATA}}},
    "/api/services/{name}": {"get": {
        "summary": "All ports of a service name or alias",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 63}},
                       TRANSPORT_PARAM],
        "responses": {**_ok("Service"), **BAD, "404": _error("no such service"), **DATA}}},
    "/api/search": {"get": {
        "summary": "Ranked free-text search (as portatlas search --json)",
        "parameters": [
            {"name": "q", "in": "query", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "[A-Za-z0-9_+]"},
             "description": "words to look for; at least one ASCII letter, digit, _ or +"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}],
        "responses": {**_ok("Search"), **BAD, **DATA}}},
    "/api/ranges": {"get": {"summary": "The port space: range classes, 64-port blocks, "
                                       "registered ranges",
                            "responses": {**_ok("Ranges"), **DATA}}},
    "/api/ranges/{spec}": {"get": {
        "summary": "One range (e.g. 6000-6063): entries and the status of each port",
        "parameters": [{"name": "spec", "in": "path", "required": True,
                        "schema": {"type": "string",
                                   "pattern": "^[0-9]{1,5}-[0-9]{1,5}(/(tcp|udp|sctp|dccp))?$"},
                        "description": "LO-HI[/transport], at most 16384 ports"},
                       {"name": "offset", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1048576,
                                   "default": 0},
                        "description": "first entry of this page (page.next links the next)"},
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                   "default": 500},
                        "description": "entries per page"}],
        "responses": {**_ok("RangeDetail"), **BAD, **DATA}}},
    "/api/local": {"get": {"summary": "What listens on this machine (as portatlas local --json)",
                           "parameters": LOCAL_PARAMS,
                           "responses": {**BAD, **_ok("Local"), **DATA,
                                         "501": _error("not available in this installation")}}},
    "/api/changes": {"get": {
        "summary": "What changed between the latest saved snapshots (portatlas changes --json)",
        "parameters": [
            {"name": "kind", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["local", "scan"]}},
            {"name": "name", "in": "query", "required": False,
             "schema": {"type": "string", "maxLength": 200},
             "description": "host name (local; default this machine's) or saved scan name "
                            "(scan; default the scan saved last)"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 100},
             "description": "intervals, 1 to 100 (default 10)"}],
        "responses": {**_ok("Changes"), **BAD, **DATA}}},
    "/api/about": {"get": {"summary": "Where the data comes from",
                           "responses": {**_ok("About"), **DATA}}},
    "/api/feedback": {
        "get": {"summary": "Summary of 'Was this page helpful?' answers",
                "responses": {**_ok("FeedbackSummary"), **DATA}},
        "post": {"summary": "Record one answer",
                 "parameters": [CSRF_HEADER],
                 "requestBody": {"required": True, "content": {
                     "application/json": {"schema": _ref("FeedbackIn")}}},
                 "responses": {**_ok("FeedbackOut", "recorded", "201"), **BAD, **FORBIDDEN,
                               **TOO_BIG, **RATE, **DATA}}},
    "/api/check": {"post": {
        "summary": "Check ports on an allow-listed host (only with --allow-check)",
        "parameters": [CSRF_HEADER],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("CheckIn")}}},
        "responses": {**_ok("CheckOut"), **BAD, **FORBIDDEN, **TOO_BIG, **RATE, **DATA}}},
}


def local_components() -> dict[str, Any]:
    """portatlas.local's own JSON Schema (local/schema.json), as components "local.*", so
    /api/local and the 'here' key are held to exactly what `portatlas local --json` promises."""

    try:
        text = resources.files("portatlas.local").joinpath("schema.json").read_text()
        defs = json.loads(text)["$defs"]
    except (ModuleNotFoundError, FileNotFoundError, KeyError, ValueError):
        return {}
    moved = json.dumps(defs).replace('"#/$defs/', '"#/components/schemas/local.')
    return {f"local.{name}": body for name, body in json.loads(moved).items()}


def schema(checks_enabled: bool = False) -> dict[str, Any]:
    components = dict(COMPONENTS)
    paths = json_copy(PATHS)
    local = local_components()
    if local:
        components.update(local)
        components["Local"] = _ref("local.local")
        port = json_copy(components["Port"])
        port["properties"]["here"] = _ref("local.here")
        components["Port"] = port
    return {
        "openapi": "3.1.0",
        "info": {"title": "portatlas", "version": __version__,
                 "description": "What runs on port N? The IANA registry, this machine's "
                                "listeners and more. Errors are JSON objects {error, status}."},
        "paths": paths,
        "components": {"schemas": components},
        "x-remote-checks": "enabled" if checks_enabled else "disabled",
    }


def json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def endpoints() -> list[tuple[str, str, str]]:
    """(method, path, summary) for the about page."""
    out = []
    for path, ops in PATHS.items():
        for method, op in ops.items():
            out.append((method.upper(), path, op["summary"]))
    out.append(("GET", "/openapi.json", "This schema"))
    return out
