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
from typing import Any, Callable

from portatlas.atlas import Atlas
from portatlas.web.portspace import PortSpace


def nbytes(value: Any) -> int | None:
    """What a cached value costs, roughly, in bytes; None for values that cannot be measured
    (those are not cached: a cache bounded by bytes must know every item's size)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value) + 64
    if isinstance(value, str):
        return (len(value) if value.isascii() else 4 * len(value)) + 80
    size = getattr(value, "nbytes", None)
    return size if isinstance(size, int) else None


class ByteLRU:
    """A mapping bounded by the bytes of its values (not their number); the least recently
    used go first. A value bigger than max_item is never kept: a stream of distinct large
    requests then costs no memory beyond the one being answered."""

    def __init__(self, max_bytes: int, max_item: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item if max_item is not None else max(1, max_bytes // 16)
        self.data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: Any) -> Any:
        hit = self.data.get(key)
        if hit is None:
            return None
        try:
            self.data.move_to_end(key)
        except KeyError:  # evicted by another thread meanwhile
            pass
        return hit[0]

    def put(self, key: Any, value: Any, size: int | None = None) -> bool:
        """Keep value; False when it is not kept (too big, or of unknown size)."""
        size = nbytes(value) if size is None else size
        if size is None or size > self.max_item:
            return False
        with self._lock:
            old = self.data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self.data[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes and self.data:
                _, (_, dropped) = self.data.popitem(last=False)
                self.bytes -= dropped
        return True

    def clear(self) -> None:
        with self._lock:
            self.data.clear()
            self.bytes = 0


# Bounds of what one server process keeps (docs/web.md, "Memory"): pages and JSON answers
# made from the registry, and the live 'here' parts of port pages.
PAGE_CACHE_BYTES = 48 << 20
PAGE_CACHE_ITEM = 2 << 20
LIVE_ENTRIES = 64


class AtlasState:
    def __init__(self, db_path: Path, *, cache_bytes: int = PAGE_CACHE_BYTES,
                 cache_item: int = PAGE_CACHE_ITEM, live_ttl: float = 2.0,
                 reload_interval: float = 2.0) -> None:
        self.db_path = Path(db_path)
        self.live_ttl = live_ttl
        self.reload_interval = reload_interval
        self.pages = ByteLRU(cache_bytes, cache_item)
        self.live: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
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
        self.live[key] = (now, value)
        self.live.move_to_end(key)
        while len(self.live) > LIVE_ENTRIES:  # snapshots are big and only live_ttl fresh
            try:
                self.live.popitem(last=False)
            except KeyError:
                break
        return value

    @property
    def registry(self) -> dict[str, Any]:
        """The provenance record of the registry itself (for page footers)."""
        for record in self.provenance:
            if record["kind"] in ("iana-registry", "etc-services"):
                return record
        return {}
