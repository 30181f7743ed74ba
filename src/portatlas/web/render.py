"""Templates, and pages with slots for the parts that differ per request.

A page is rendered once per database build and cached as pieces; per request only the
slots are filled in (the form token of this client, the live 'on this machine' section).
Slot markers carry a per-process random nonce and start with '<!--', which escaped data
can never contain, so nothing from the registry or a user can forge one.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any
import gzip

import jinja2
from markupsafe import Markup

HERE = Path(__file__).parent
_NONCE = secrets.token_hex(6)
_SLOT_RE = re.compile(r"<!--slot:(\w+):" + _NONCE + "-->")


def slot(name: str) -> Markup:
    return Markup(f"<!--slot:{name}:{_NONCE}-->")


class Prepared:
    """A rendered page split at its slots: even items are fixed bytes, odd items slot names."""

    __slots__ = ("pieces", "status", "_gzipped")

    def __init__(self, html: str, status: int = 200) -> None:
        parts = _SLOT_RE.split(html)
        self.pieces = [p.encode() if i % 2 == 0 else p for i, p in enumerate(parts)]
        self.status = status
        self._gzipped: bytes | None = None

    def gzipped(self) -> bytes | None:
        """The page compressed once, for big pages without slots (the maps: ~200 KB -> ~20 KB)."""
        if len(self.pieces) != 1 or len(self.pieces[0]) < 8192:
            return None
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.pieces[0], compresslevel=6, mtime=0)
        return self._gzipped

    @property
    def nbytes(self) -> int:
        """What keeping this page costs (the page cache is bounded by bytes)."""
        self.gzipped()  # made now, so that its size is counted when the page is cached
        return (sum(len(p) for p in self.pieces) + len(self._gzipped or b"")
                + 64 * len(self.pieces) + 200)

    @property
    def slots(self) -> list[str]:
        return self.pieces[1::2]

    def fill(self, values: dict[str, str]) -> bytes:
        if len(self.pieces) == 1:
            return self.pieces[0]
        out = []
        for i, piece in enumerate(self.pieces):
            out.append(piece if i % 2 == 0 else values.get(piece, "").encode())
        return b"".join(out)


def _thousands(value: int) -> str:
    return f"{value:,}"


def _percent(value: float) -> str:
    pct = value * 100
    if pct >= 1:
        return f"{pct:.1f}%"
    if pct >= 0.01:
        return f"{pct:.2f}%"
    if pct >= 0.0001:
        return f"{pct:.4f}%"
    return "0%" if pct == 0 else "under 0.0001%"


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template is HTML
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["slot"] = slot
    env.filters["thousands"] = _thousands
    env.filters["percent"] = _percent
    return env


def render(env: jinja2.Environment, template: str, context: dict[str, Any]) -> str:
    return env.get_template(template).render(context)
