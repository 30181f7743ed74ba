"""Extra sections of a port answer contributed by other parts of portatlas.

A section module provides:
    section(answer: PortAnswer) -> dict | None    # JSON-ready data, or None to leave it out
and its terminal lines are in the rendering layer (portatlas.render.port.SECTION_RENDERERS,
by the same key). The CLI and the web UI both go through `collect`, so a section is written
once.
"""

from __future__ import annotations

import importlib
TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any

    from portatlas.atlas import PortAnswer

# key in the answer -> module; listed in display order
SECTIONS = {
    "here": "portatlas.local.here",          # is anything listening on this port on this machine
    "history": "portatlas.history.section",  # registry timeline, curated history, de-facto use
}


def collect(answer: "PortAnswer", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fill answer.extra with every section's data; returns the modules used by key."""
    used = {}
    for key, module_name in SECTIONS.items():
        if key in skip:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of portatlas is not installed in this build
            raise
        data = module.section(answer)
        if data is not None:
            answer.extra[key] = data
            used[key] = module
    return used
