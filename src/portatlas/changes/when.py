"""`--since WHEN`: an absolute date or time, or an age ('90m', '2h', '3d', '1w')."""

from __future__ import annotations

import datetime as dt
import math
import re
import time

from portatlas.errors import UsageError

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)", re.ASCII)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, *, now: float | None = None) -> float:
    """Seconds since the epoch. Absolute forms are ISO 8601 (2026-12-01, 2026-12-01T09:30,
    2026-12-01 09:30:00+01:00); without a zone they are local time, as a person means them."""
    now = time.time() if now is None else now
    value = text.strip()
    age = _AGE.fullmatch(value)
    if age:
        seconds = float(age.group(1)) * _UNIT_S[age.group(2)]
        if not math.isfinite(seconds):
            raise UsageError(f"--since {text!r}: that age is too large")
        return now - seconds
    if value in ("today", "yesterday"):
        day = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        if value == "yesterday":
            day -= dt.timedelta(days=1)
        return day.timestamp()
    if value.isascii():
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            return moment.timestamp()
    raise UsageError(f"--since {text!r}: give a date or time (2026-12-01, 2026-12-01T09:30) "
                     "or an age (30m, 2h, 7d)")
