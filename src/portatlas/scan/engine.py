"""What the three scan engines (TCP connect, UDP, raw SYN) share."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, NamedTuple


class Answer(NamedTuple):
    """One port's answer as an engine emits it (the batches of emit(batch, bulk)).

    The engines build plain tuples in this field order rather than Answer objects: creating a
    NamedTuple costs about six times a tuple (measured: 1.9 us against 0.3 us), and a sweep
    emits hundreds of thousands. Consumers unpack them by these names (Scanner._emitter)."""

    index: int            # the host's position in the scan
    port: int
    state: int            # an index into scan.results.STATES
    reason: int           # an index into scan.results.REASONS
    rtt: float | None     # seconds, when the answer was timed
    tries: int


class BulkKey(NamedTuple):
    """The key of emit()'s `bulk` dict: ports that share one answer at the first try."""

    index: int
    state: int
    reason: int


class ProbeState:
    """One port's bookkeeping: its host's state, tries so far, last send time, and a
    generation number that makes answers to an earlier try recognisable."""

    __slots__ = ("hs", "port", "tries", "sent", "gen")

    def __init__(self, hs: Any, port: int) -> None:
        self.hs = hs
        self.port = port
        self.tries = 0
        self.sent = 0.0
        self.gen = 0


class Engine:
    """run() drives the engine's loop; Ctrl-C keeps what was found, and the engine's
    results are flushed and its sockets released whatever happens."""

    interrupted = False

    def run(self) -> None:
        try:
            self._loop()
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._flush()
            self._close()

    def _loop(self) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def run_async(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from synchronous code, also when the caller sits inside
    a running event loop (a web server calling Scanner.run()): then in a helper thread."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
