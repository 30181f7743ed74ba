"""Ranked free-text search over the registry (SQLite FTS5 with bm25, plus name matches)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from portatlas.errors import UsageError
from portatlas.model import Entry

if TYPE_CHECKING:
    from typing import Any

    from portatlas.atlas import Atlas

_WORD = re.compile(r"[\w+]+", re.UNICODE)
MAX_QUERY = 200


class SearchHit:
    __slots__ = ("entry", "score", "why")

    def __init__(self, entry: Entry, score: float, why: str) -> None:
        self.entry = entry
        self.score = score
        self.why = why

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 3), "match": self.why, **self.entry.to_dict()}


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
    hits.sort(key=lambda h: (-h.score, h.entry.port_lo if h.entry.port_lo is not None else 70000))
    return hits[:limit]
