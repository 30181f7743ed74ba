"""This machine, live: the /local page and /api/local.

The query parameters become a portatlas.local Selection (Selection.make, the same checks as the
CLI's arguments), and the look and its report are portatlas.local's query() and report(), so
the page, the API and the CLI select, classify and describe sockets in exactly one way. A look
is reused for at most live_ttl seconds.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import TYPE_CHECKING, Any

from portatlas.errors import UsageError
from portatlas.web.responses import NotAvailable
from portatlas.web.state import ByteLRU
from portatlas.web.state import nbytes as measure

if TYPE_CHECKING:
    from portatlas.web.app import Web

# the query parameters /local and /api/local take
PARAMS = ("port", "transport", "family", "all", "process", "user", "sort")
MAX_ROWS = 2000  # the page shows at most this many sockets (the JSON has them all)
HERE_CACHE_BYTES = 16 << 20  # the 'on this machine' parts of port pages kept (docs/web.md)


def available() -> bool:
    try:
        return importlib.util.find_spec("portatlas.local") is not None
    except ModuleNotFoundError:
        return False


def selection_from(params: Any, strict: bool = False) -> tuple[Any, list[str]]:
    """/local?port=8080&transport=tcp&all=1 -> (the Selection, the sort keys).

    strict (the API): an empty value is an error; the page's form sends empty fields."""
    # (portatlas.local is imported when used: a build may lack it, see available())
    from portatlas.local.reports import DEFAULT_SORT, parse_sort
    from portatlas.local.selection import Selection

    unknown = [k for k in params.keys() if k not in PARAMS]
    if unknown:
        raise UsageError(f"unknown parameter {unknown[0]!r}; use {', '.join(PARAMS)}")
    if strict:
        empty = [k for k in params.keys() if params.get(k) == ""]
        if empty:
            raise UsageError(f"parameter {empty[0]!r} is empty")
    port = params.get("port") or None
    if port and port.startswith("-"):
        raise UsageError(f"{port!r} is not a port or range")
    transport = params.get("transport")
    if transport and transport not in ("tcp", "udp"):
        raise UsageError("transport must be tcp or udp")
    family = params.get("family")
    if family and family not in ("ipv4", "ipv6"):
        raise UsageError("family must be ipv4 or ipv6")
    everything = params.get("all") not in (None, "", "0")
    if everything and params.get("all") != "1":
        raise UsageError("all must be 0 or 1")
    words = {}
    for name in ("process", "user", "sort"):
        value = params.get(name)
        if value:
            if len(value) > 100 or value.startswith("-"):
                raise UsageError(f"{name} must be a short word")
            words[name] = value
    selection = Selection.make(port, tcp=transport == "tcp", udp=transport == "udp",
                               ipv4=family == "ipv4", ipv6=family == "ipv6", everything=everything,
                               user=words.get("user"),
                               processes=(words["process"],) if "process" in words else ())
    return selection, parse_sort(words.get("sort") or ",".join(DEFAULT_SORT))


def look(web: "Web", selection: Any, sort: list[str]) -> dict[str, Any]:
    """One classified look at this machine, as `portatlas local --json` would print it."""
    from portatlas.local.classify import Classifier  # (when used: see available())
    from portatlas.local.reports import report
    from portatlas.local.selection import query

    snap = query(selection)
    Classifier(web.state.atlas).classify(snap)
    # optional: like the local imports above, only where this build has portatlas.local
    from portatlas.exposure import annotate

    annotate(snap)  # can other machines reach each listener (as `portatlas local` shows it)
    return report(snap, sort, False)


def local_data(web: "Web", params: Any, strict: bool = False) -> dict[str, Any]:
    """Context for the page and body for the API (under 'json')."""
    if not available():
        raise NotAvailable("this installation cannot look at this machine's sockets "
                           "(portatlas.local is missing)")
    selection, sort = selection_from(params, strict)
    web.state.current()
    data = web.state.fresh(("local", selection, tuple(sort)), lambda: look(web, selection, sort))
    sockets = data["sockets"]
    form = {k: params.get(k, "") for k in PARAMS}
    return {"json": data, "sockets": sockets[:MAX_ROWS], "cut": max(0, len(sockets) - MAX_ROWS),
            "report": data, "form": form,
            "flagged": sum(1 for s in sockets if s.get("flags")),
            "reachable": [s for s in sockets[:MAX_ROWS]
                          if (s.get("reachability") or {}).get("verdict") in ("exposed", "limited")],
            "flagged_sockets": [s for s in sockets[:MAX_ROWS] if s.get("flags")]}


def nbytes(value: Any) -> int | None:
    return measure(value)


class HereCache:
    """The live 'on this machine' part of port pages, without a lookup per request.

    here.section (the CLI's code) is asked per port, and its answer is kept while the set of
    listening (transport, port) pairs of the machine stays the same: one cheap look at all
    listeners (no processes) at most every ttl seconds tells whether it changed. A port that
    is listened on is asked again after ttl anyway (its holder may have changed).
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.checked = -1e9
        self.listening: frozenset | None = None
        self.epoch = 0
        self.values = ByteLRU(HERE_CACHE_BYTES, 256 << 10)
        self._lock = threading.Lock()

    def _epoch(self, now: float) -> int:
        if now - self.checked >= self.ttl:
            with self._lock:
                if now - self.checked >= self.ttl:
                    self.checked = now
                    listening = self._look()
                    if listening is None or listening != self.listening:
                        self.epoch += 1
                        self.listening = listening
        return self.epoch

    @staticmethod
    def _look() -> frozenset | None:
        try:
            from portatlas.local import listeners  # (when used: see available())

            snap = listeners(processes=False)
        except Exception:  # cannot look: fall back to asking per port after ttl
            return None
        return frozenset((s.transport, s.port) for s in snap.sockets)

    def get(self, key: Any, port: int) -> Any:
        """The kept value for key, or None when it must be made again."""
        now = time.monotonic()
        epoch = self._epoch(now)
        hit = self.values.get(key)
        if hit is None or hit[0] != epoch:
            return None
        busy = self.listening is None or ("tcp", port) in self.listening \
            or ("udp", port) in self.listening
        if busy and now - hit[1] >= self.ttl:
            return None
        return hit

    def put(self, key: Any, value: Any) -> None:
        # bounded by bytes like the page cache: one entry per port and transport could
        # otherwise grow to hundreds of megabytes under a stream of distinct port requests
        self.values.put(key, (self.epoch, time.monotonic(), value),
                        size=(nbytes(value) or 64) + 96)
