"""What the three scan engines (TCP connect, UDP, raw SYN) share."""

from __future__ import annotations

from typing import Any, Awaitable, Callable


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
