"""What the route modules (api, pages, live) and the application share, below all of them:
the JSON response and the "this installation cannot" error. (Importing these from web/app.py
made app ↔ api/live a cycle.)"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from portatlas.errors import PortatlasError


class NotAvailable(PortatlasError):
    """A feature this installation does not have (e.g. no portatlas.local)."""

    exit_code = 4


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=headers, media_type="application/json")
