"""Ranked free-text search over the registry and our curated notes.

SQLite FTS5 with bm25 for both (same tokenizer), plus exact service-name matches first. The
registry and the notes are two indexes whose bm25 scores are on the same scale (both are
sums of per-term IDF-weighted frequencies), so the hits are merged by score; words found
together, in order, double a hit's score in either.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from portatlas.errors import UsageError
from portatlas.model import Entry
from portatlas.history.search import search_notes

if TYPE_CHECKING:
    from typing import Any

    from portatlas.atlas import Atlas

_WORD = re.compile(r"[\w+]+", re.UNICODE)
MAX_QUERY = 200


class SearchHit:
    """One search result: a registry entry (kind "registry", `entry` set) or one of our
    curated notes (kind "note", `note` set; `entry` is None), with the port it is about."""

    __slots__ = ("entry", "score", "why", "note", "port")

    def __init__(self, entry: Entry | None, score: float, why: str, *, port: int | None = None,
                 note: dict[str, Any] | None = None) -> None:
        self.entry = entry
        self.score = score
        self.why = why
        self.note = note
        self.port = entry.port_lo if entry is not None else port

    @property
    def kind(self) -> str:
        return "registry" if self.entry is not None else "note"

    def to_dict(self) -> dict[str, Any]:
        head = {"score": round(self.score, 3), "match": self.why, "result": self.kind}
        if self.entry is not None:
            return {**head, **self.entry.to_dict()}
        note = self.note or {}
        transports = note.get("transports", [])
        # the registry result's fields where they make sense, so that lists of results
        # can show port, transport and a one-line description for either kind
        return {**head, "service": None, "ports": str(self.port), "port_lo": self.port,
                "port_hi": self.port,
                "transport": transports[0] if len(transports) == 1 else None,
                "transports": transports, "description": note.get("title", ""),
                "source": "portatlas-notes", "note": note}


def fts_query(text: str) -> str:
    """Every word must appear (prefix match on the last one, for search-as-you-type)."""
    words = [w.replace('"', "") for w in _WORD.findall(text.lower())][:12]
    if not words:
        raise UsageError("search needs at least one word")
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def search(atlas: "Atlas", text: str, limit: int = 20) -> list["SearchHit"]:
    text = text.strip()
    if not text:
        raise UsageError("empty search")
    if len(text) > MAX_QUERY:
        raise UsageError(f"search text too long ({len(text)} characters; the most is {MAX_QUERY})")
    limit = max(1, min(limit, 500))
    hits: list[SearchHit] = []
    seen: set[tuple] = set()
    # An exact service name (or alias) ranks first: "http" should find http, not every
    # description that mentions HTTP.
    name = text.lower()
    for entry in atlas.store.entries_for_service(name) if re.fullmatch(r"[\w+.\-]+", name) else []:
        seen.add(entry.key())
        hits.append(SearchHit(entry, 1000.0, "service name"))
    phrase = " ".join(_WORD.findall(name))
    for entry, score in atlas.store.search(fts_query(text), limit * 3):
        if entry.key() in seen:
            continue
        seen.add(entry.key())
        why = "text"
        haystack = f"{entry.service or ''} {entry.description}".lower()
        if phrase and phrase in haystack:
            score *= 2  # the words together, in order, beat the words scattered
            why = "phrase"
        hits.append(SearchHit(entry, score, why))
    hits.extend(_note_hits(atlas, text, phrase, limit))
    hits.sort(key=lambda h: (-h.score, h.port if h.port is not None else 70000,
                             h.kind != "registry"))
    return hits[:limit]


def _note_hits(atlas: "Atlas", text: str, phrase: str, limit: int) -> list["SearchHit"]:
    hits = []
    for port, note, score in search_notes(atlas.store.conn, fts_query(text), limit * 3):
        why = "text"
        haystack = " ".join(_WORD.findall(f"{note['title']} {note['text']}".lower()))
        if phrase and phrase in haystack:
            score *= 2
            why = "phrase"
        hits.append(SearchHit(None, score, why, port=port, note=note))
    return hits
