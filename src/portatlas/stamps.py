"""When and where a record was made: the UTC time stamp and the host name that saved
snapshots, reports and feedback carry (one spelling for all of them)."""

from __future__ import annotations

import os
import time


def utc_iso(t: float) -> str:
    """A Unix time as ISO 8601 UTC to the second, e.g. 2026-12-01T12:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def host_name() -> str:
    """This machine's node name (what `portatlas local --save` files snapshots under)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    return os.environ.get("COMPUTERNAME", "")
