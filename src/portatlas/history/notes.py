"""Our curated notes: a port's origin and history, and what runs there in practice.

The notes are our own writing (notes.json, validated against notes.schema.json by the test
suite). Every note cites at least one source; a note without one is dropped at build time.
At build time they are copied into the database (table history_note) so that a port lookup
reads only that port's notes with one indexed query and no JSON parsing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any

import os

# plain strings: pathlib is not imported on the lookup path
NOTES_FILE = os.path.join(os.path.dirname(__file__), "notes.json")
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "notes.schema.json")

KINDS = ("history", "use")
SOURCE_TYPES = ("rfc", "ien", "registry", "vendor", "document", "standard")
CATEGORIES = ("web", "dev-server", "database", "cache", "messaging", "search", "monitoring",
              "remote-access", "file-sharing", "mail", "directory", "voip", "media", "game",
              "iot", "industrial", "printing", "proxy", "security", "infrastructure",
              "container", "malware", "other")

_RS, _US = "\x1e", "\x1f"


def load_file(path: str = NOTES_FILE) -> list[dict[str, Any]]:
    """The notes as written, in file order."""
    # lazy: json (~2 ms) only when a notes file is read; `portatlas PORT` reads the database
    import json

    with open(path, encoding="utf-8") as stream:
        return json.load(stream)["notes"]


def shippable(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Notes that may be shown: those with text and at least one source."""
    return [n for n in notes if n.get("sources") and n.get("text") and n.get("kind") in KINDS]


# compact encoding for the database ---------------------------------------------------------
def _encode_source(source: dict[str, Any]) -> str:
    pairs = [f"{k}={v}" for k, v in source.items() if k != "type" and v is not None]
    return _US.join([source["type"], *pairs])


def _decode_source(text: str) -> dict[str, Any]:
    kind, *pairs = text.split(_US)
    out: dict[str, Any] = {"type": kind}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = int(value) if key in ("number", "port") and value.isdigit() else value
    return out


def to_rows(notes: list[dict[str, Any]]) -> list[tuple]:
    rows = []
    for note in shippable(notes):
        related = ",".join(f"{r['port']}/{r['transport']}" for r in note.get("related", ()))
        rows.append((note["port"], note["kind"], ",".join(note["transports"]),
                     note.get("category"), note["title"], note["text"],
                     _RS.join(_encode_source(s) for s in note["sources"]), related or None))
    return rows


def from_row(row: tuple) -> dict[str, Any]:
    kind, transports, category, title, text, sources, related = row
    out: dict[str, Any] = {"kind": kind, "transports": transports.split(",") if transports else [],
                           "title": title, "text": text}
    if category:
        out["category"] = category
    out["sources"] = [source_view(_decode_source(s)) for s in sources.split(_RS)] if sources else []
    if related:
        out["related"] = [{"port": int(p), "transport": t}
                          for p, _, t in (item.partition("/") for item in related.split(","))]
    return out


def from_file(port: int) -> list[dict[str, Any]]:
    """A port's notes straight from notes.json (for a database built without them)."""
    out = []
    for note in shippable(load_file()):
        if note["port"] == port:
            view = {k: note[k] for k in ("kind", "transports", "title", "text") if k in note}
            if note.get("category"):
                view["category"] = note["category"]
            view["sources"] = [source_view(s) for s in note["sources"]]
            if note.get("related"):
                view["related"] = note["related"]
            out.append(view)
    return out


def source_view(source: dict[str, Any]) -> dict[str, Any]:
    """A source with a human label (and a link for RFCs)."""
    out = dict(source)
    kind = source["type"]
    if kind == "rfc":
        section = source.get("section")
        out["label"] = f"RFC {source['number']}" + (f", section {section}" if section else "")
        out["url"] = f"https://www.rfc-editor.org/rfc/rfc{source['number']}" + (
            f"#section-{section}" if section else "")
    elif kind == "ien":
        out["label"] = f"IEN {source['number']}"
    elif kind == "registry":
        what = source.get("service") or repr(source.get("description") or "no service name")
        out.setdefault("service", None)
        out["label"] = f"IANA registry: {what} {source['port']}/{source['transport']}"
    elif kind == "vendor":
        edition = ", ".join(str(source[k]) for k in ("version", "date") if source.get(k))
        out["label"] = f"{source['vendor']}: {source['document']}" + (
            f" ({edition})" if edition else "")
    elif kind == "document":
        out["label"] = f"{source['publisher']}: {source['title']}"
    elif kind == "standard":
        out["label"] = f"{source['body']} {source['id']}" + (
            f" ({source['title']})" if source.get("title") else "")
    else:
        out["label"] = kind
    return out
