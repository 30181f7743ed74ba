"""Free-text search over our curated notes (ranked together with the registry by ranking.py).

The notes are indexed at build time in `history_note_fts` (FTS5, the registry's tokenizer),
title weighted above text. A database built before that table existed simply has no note
results.
"""

from __future__ import annotations

import sqlite3
from portatlas.history.notes import from_row

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# FTS5 table over history_note (rowid = history_note.id); created by store.write
FTS_SCHEMA = ("CREATE VIRTUAL TABLE history_note_fts USING fts5(title, text, content='',"
              " tokenize='unicode61 remove_diacritics 2')")
TITLE_WEIGHT, TEXT_WEIGHT = 4.0, 1.0


def index_rows(conn: sqlite3.Connection) -> None:
    """Fill the notes' search index from history_note (inside the build)."""
    conn.execute("DROP TABLE IF EXISTS history_note_fts")
    conn.execute(FTS_SCHEMA)
    conn.execute("INSERT INTO history_note_fts(rowid, title, text)"
                 " SELECT id, title, text FROM history_note")


def search_notes(conn: sqlite3.Connection, match: str, limit: int
                 ) -> list[tuple[int, dict[str, Any], float]]:
    """(port, note, score) for notes matching an FTS5 query, best first; [] without an index."""

    try:
        rows = conn.execute(
            "SELECT n.port, n.kind, n.transports, n.category, n.title, n.text, n.sources,"
            f" n.related, bm25(history_note_fts, {TITLE_WEIGHT}, {TEXT_WEIGHT}) AS rank"
            " FROM history_note_fts JOIN history_note n ON n.id = history_note_fts.rowid"
            " WHERE history_note_fts MATCH ? ORDER BY rank LIMIT ?", (match, limit)).fetchall()
    except sqlite3.OperationalError:
        return []  # no index in this database (built by an older version)
    return [(row[0], from_row(row[1:8]), -row[8]) for row in rows]
