"""This machine, live: the /local page and /api/local, through portatlas.local's public API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portatlas.web.app import Web


def local_data(web: "Web", params: Any) -> dict[str, Any]:
    return {"available": False, "json": {"schema": "portatlas.local/1", "sockets": []}}
