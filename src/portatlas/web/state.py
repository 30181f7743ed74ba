"""The long-lived state of one server process: a preloaded Atlas and what is cached from it.

Rendered pages are cached per database build: when `portatlas data update` replaces the
database file, the next request notices (a stat at most every reload_interval seconds),
opens the new file and starts a fresh cache. Live data (what listens on this machine) is
never part of a cached page; it is filled into a slot per request from a snapshot that is
at most live_ttl seconds old.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from portatlas.atlas import Atlas
    from portatlas.web.portspace import PortSpace


class LRU:
    """A small bounded mapping; the oldest-used entry goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)

    def clear(self) -> None:
        self.data.clear()


class AtlasState:
    def __init__(self, db_path: Path, *, cache_size: int = 2048, live_ttl: float = 2.0,
                 reload_interval: float = 2.0) -> None:
        self.db_path = Path(db_path)
        self.live_ttl = live_ttl
        self.reload_interval = reload_interval
        self.pages = LRU(cache_size)
        self.live: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._checked = 0.0
        self._identity: tuple[int, int, int] | None = None
        self.atlas: Atlas
        self.build = ""
        self.provenance: list[dict] = []
        self.meta: dict[str, str] = {}
        self._space: PortSpace | None = None
        self._open()

    def _open(self) -> None:
        from portatlas.atlas import Atlas

        atlas = Atlas(self.db_path, notify=None).preload()
        st = os.stat(self.db_path)
        identity = (st.st_dev, st.st_ino, st.st_mtime_ns)
        meta = atlas.store.meta()
        self.atlas = atlas
        self.meta = meta
        self.provenance = atlas.provenance()
        self.build = hashlib.sha256(repr((identity, meta.get("built_at"))).encode()).hexdigest()[:12]
        self._identity = identity
        self._space = None
        self.pages.clear()
        self.live.clear()
        atlas.source_label  # computed once, now, rather than inside a request
        # A replaced Atlas is not closed here: a request in a worker thread may still be
        # using it; its connection closes when the last reference goes.

    def current(self) -> "Atlas":
        """The Atlas for this request; reopens the database if the file was replaced."""
        now = time.monotonic()
        if now - self._checked >= self.reload_interval:
            self._checked = now
            try:
                st = os.stat(self.db_path)
                identity = (st.st_dev, st.st_ino, st.st_mtime_ns)
            except OSError:
                identity = self._identity  # keep serving what we have
            if identity != self._identity:
                with self._lock:
                    if identity != self._identity:
                        self._open()
        return self.atlas

    @property
    def space(self) -> "PortSpace":
        if self._space is None:
            with self._lock:
                if self._space is None:
                    from portatlas.web.portspace import PortSpace

                    self._space = PortSpace(self.atlas)
        return self._space

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value (usually a rendered page) for this build, made once."""
        value = self.pages.get(key)
        if value is None:
            value = make()
            self.pages.put(key, value)
        return value

    def fresh(self, key: Any, make: Callable[[], Any]) -> Any:
        """Live data, reused for at most live_ttl seconds."""
        now = time.monotonic()
        hit = self.live.get(key)
        if hit is not None and now - hit[0] < self.live_ttl:
            return hit[1]
        value = make()
        if len(self.live) > 4096:
            self.live.clear()
        self.live[key] = (now, value)
        return value

    @property
    def registry(self) -> dict[str, Any]:
        """The provenance record of the registry itself (for page footers)."""
        for record in self.provenance:
            if record["kind"] in ("iana-registry", "etc-services"):
                return record
        return {}
