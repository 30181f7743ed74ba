"""The atlas in the browser: an ASGI app (Starlette + Jinja2) behind `portatlas serve`.

Every page and every JSON answer is built from the same public API the CLI uses
(Atlas.port -> PortAnswer, sections.collect, Atlas.service, Atlas.search, portatlas.local);
this package only presents it. See docs/web.md.

    from portatlas.web import WebConfig, create_app
    app = create_app(WebConfig(db="portatlas.sqlite3"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portatlas.web.app import create_app
    from portatlas.web.config import WebConfig

__all__ = ["WebConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy: importing portatlas.web must not pull in Starlette until an app is wanted.
    if name == "create_app":
        # optional: create_app needs starlette (web extra); web.config alone does not
        from portatlas.web.app import create_app

        return create_app
    if name == "WebConfig":
        # lazy: `portatlas.web.WebConfig` resolves on first use; this __init__ imports nothing
        from portatlas.web.config import WebConfig

        return WebConfig
    raise AttributeError(name)
