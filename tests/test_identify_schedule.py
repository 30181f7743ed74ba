"""The TCP driver's scheduling without sockets or root: the Schedule's decisions on their own,
and a whole PortRun over an in-memory transport (scripted servers behind a fake connector)."""

from __future__ import annotations

import asyncio
import time

import pytest

from portatlas.identify import registry
from portatlas.identify.base import NoMatch, Probe, ProbeContext, Send, Verdict, Wait
from portatlas.identify.driver import PortRun
from portatlas.identify.options import Options
from portatlas.identify.schedule import FirstState, Schedule, Start


def ctx() -> ProbeContext:
    return ProbeContext("198.18.0.2", 4242, "tcp")


class Greets(Probe):
    """Server-first: recognises greetings that start with its name."""

    name = "greets"
    server_first = True

    def start(self):
        return Wait()

    def feed(self, data):
        if data.startswith(b"GREETS"):
            return Verdict("greets", confidence=0.5 if b"maybe" in data else 1.0)
        return NoMatch("not a greeting of ours")

    @classmethod
    def claims_banner(cls, banner):
        return banner.startswith(b"GREETS")


class Other(Greets):
    name = "other"

    def feed(self, data):
        return Wait()  # could be: needs more


class Asks(Probe):
    """Client-first: sends a question, recognises the answer."""

    name = "asks"
    ports = frozenset({4242})

    def start(self):
        return Send(b"QUESTION\r\n")

    def feed(self, data):
        if data.startswith(b"ANSWER"):
            return Verdict("asks", confidence=1.0)
        if b"\n" in data:
            return NoMatch("not our answer")
        return Wait()


class AlsoAsks(Asks):
    name = "alsoasks"
    ports = frozenset()

    def feed(self, data):
        return Verdict("alsoasks", confidence=0.4) if data else Wait()


NONE = FirstState(False, False, True)


# -- the Schedule alone ---------------------------------------------------------------------------
def test_speculative_start_of_a_hinted_client_first_probe():
    sched = Schedule([Asks, Greets, AlsoAsks], 4242, (), ctx)
    assert sched.speculative() is Asks
    assert sched.queue_cf == [AlsoAsks] and Asks in sched.started
    unhinted = Schedule([AlsoAsks, Asks], 9, (), ctx)
    assert unhinted.speculative() is None


def test_banner_screening_in_memory():
    sched = Schedule([Asks, Greets, Other], 4242, (), ctx)
    sched.screen(b"GREETS you")
    assert sched.instant_answer().protocol == "greets"  # decided from the banner alone
    assert sched.queue_sf == [Other]                      # can continue: gets a connection
    sched.screen(b"GREETS you")                           # the same bytes are screened once
    assert sched.queue_sf == [Other]


def test_a_tentative_banner_verdict_is_not_instant():
    sched = Schedule([Greets], 1, (), ctx)
    sched.screen(b"GREETS maybe")
    assert sched.instant_answer() is None and sched.answer().confidence == 0.5


def test_server_first_probes_get_the_banner_connection_then_client_first_ones_run():
    sched = Schedule([Asks, Other, AlsoAsks], 9, (), ctx)
    sched.screen(b"hello")
    assert sched.queue_sf == [Other]
    with_banner = FirstState(True, True, True)
    assert sched.next(4, 0, with_banner) == Start(Other, True)
    # no client-first probe while a server-first one reads the greeting
    assert sched.next(4, 1, FirstState(False, True, True)) is None
    assert sched.finished(Other, None) is None
    assert sched.next(4, 0, NONE) == Start(Asks, False)
    assert sched.next(4, 1, NONE) == Start(AlsoAsks, False)
    assert sched.next(4, 2, NONE) is None and sched.empty


def test_a_silent_first_connection_goes_to_the_first_client_first_probe():
    sched = Schedule([Asks, AlsoAsks], 9, (), ctx)
    silent = FirstState(True, False, True)
    assert sched.next(1, 0, silent) == Start(Asks, True)
    assert sched.next(1, 1, silent) is None  # parallel limit
    h2 = FirstState(True, False, False)
    assert sched.next(1, 0, h2) == Start(AlsoAsks, False)  # an h2 session cannot carry it


def test_client_first_probes_that_also_greet_move_up():
    class Irc(Asks):
        name = "irc"

        @classmethod
        def claims_banner(cls, banner):
            return b"NOTICE" in banner

    sched = Schedule([Asks, Irc], 9, (), ctx)
    sched.screen(b":server NOTICE AUTH :*** Looking up your hostname")
    assert sched.queue_sf == [Irc] and sched.queue_cf == [Asks]


def test_confident_verdict_ends_tentative_ones_are_kept():
    sched = Schedule([Asks, AlsoAsks], 9, (), ctx)
    assert sched.finished(AlsoAsks, Verdict("alsoasks", confidence=0.4)) is None
    assert sched.finished(AlsoAsks, Verdict("x", confidence=0.3)) is None
    assert sched.answer().protocol == "alsoasks"
    sure = Verdict("asks", confidence=1.0)
    assert sched.finished(Asks, sure) is sure


def test_a_broken_probe_is_noted_not_fatal():
    class Broken(Greets):
        name = "broken"

        def feed(self, data):
            raise ValueError("bug")

    notes = []
    sched = Schedule([Broken, Greets], 9, (), ctx, notes.append)
    sched.screen(b"GREETS")
    assert notes and "broken" in notes[0] and sched.instant_answer().protocol == "greets"


# -- a whole PortRun over an in-memory transport --------------------------------------------------
class MemoryConnection:
    """The driver's connection interface (send, recv with a timeout, close) over a scripted
    server: server(received_so_far) -> bytes to send back (b"" = nothing), None = close."""

    def __init__(self, server, greeting: bytes = b"") -> None:
        self.server = server
        self.out = bytearray(greeting)
        self.received = bytearray()
        self.closed = False
        self.hangup = False

    async def send(self, data: bytes) -> None:
        self.received += data
        answer = self.server(bytes(self.received))
        if answer is None:
            self.hangup = True
        else:
            self.out += answer

    async def recv(self, limit: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while not self.out and not self.hangup:
            if time.monotonic() >= end:
                raise asyncio.TimeoutError
            await asyncio.sleep(0.005)
        chunk, self.out = bytes(self.out[:limit]), self.out[limit:]
        return chunk

    def close(self) -> None:
        self.closed = True


def run_port(server, greeting=b"", probes=("asks", "alsoasks", "greets"), **opts):
    made: list[MemoryConnection] = []

    async def connector(timeout):
        conn = MemoryConnection(server, greeting)
        made.append(conn)
        return conn

    options = Options(timeout=3.0, probe_timeout=0.5, banner_wait=0.1, only=tuple(probes), **opts)

    async def main():
        run = PortRun("198.18.0.2", 4242, options, (), time.monotonic() + options.timeout,
                      connector=connector)
        return await run.run()

    return asyncio.run(main()), made


@pytest.fixture(autouse=True)
def fake_probes(monkeypatch):
    probes = {f"{c.name}/tcp": c for c in (Asks, AlsoAsks, Greets)}
    monkeypatch.setattr(registry, "probes", lambda transport: [c for k, c in probes.items()
                                                               if k.endswith("/" + transport)])


def test_memory_run_client_first_answer():
    verdict, made = run_port(lambda got: b"ANSWER 42\r\n" if got.endswith(b"\n") else b"")
    assert verdict.protocol == "asks" and verdict.confidence == 1.0
    assert all(c.closed for c in made)
    assert made[0].received == b"QUESTION\r\n" or made[1].received == b"QUESTION\r\n"


def test_memory_run_banner_decides_without_sending():
    verdict, made = run_port(lambda got: b"", greeting=b"GREETS you\r\n", probes=("greets",))
    assert verdict.protocol == "greets"
    assert [bytes(c.received) for c in made] == [b""]


def test_memory_run_tentative_answer_when_nothing_is_sure():
    verdict, _ = run_port(lambda got: b"??\r\n", probes=("asks", "alsoasks"))
    assert verdict.protocol == "alsoasks" and verdict.confidence == 0.4


def test_memory_run_nothing_recognised():
    verdict, made = run_port(lambda got: None, probes=("asks",))
    assert verdict.outcome == "open-unidentified" and verdict.protocol is None
    assert verdict.extra["probes"] == {"asks": "no answer"}  # finish() on the hang-up
    assert verdict.extra["connections"] == len(made)


def test_memory_run_probe_verdict_is_not_changed():
    """The driver's report is a copy: the probe's own Verdict keeps its fields."""
    seen = []

    class Keeps(Asks):
        name = "keeps"

        def feed(self, data):
            v = Verdict("keeps", confidence=1.0)
            seen.append(v)
            return v

    from portatlas import identify

    original = registry.probes
    registry.probes = lambda transport: [Keeps] if transport == "tcp" else []
    try:
        async def connector(timeout):
            return MemoryConnection(lambda got: b"hi\r\n")

        job = identify._Job("198.18.0.2", 4242, "tcp",
                            Options(timeout=2.0, probe_timeout=0.5, banner_wait=0.05,
                                    registered=()))
        run = PortRun("198.18.0.2", 4242, job.opts, (), job.deadline, connector=connector)

        async def main():
            return job._finish(await run.run())

        verdict = asyncio.run(main())
    finally:
        registry.probes = original
    assert verdict.host == "198.18.0.2" and verdict.port == 4242
    assert verdict.reason == "recognised by the keeps probe"
    assert seen[0].host is None and seen[0].reason == ""
