"""Play a protocol module's conversation from canned bytes (no sockets): the test side of the
sans-I/O design. The conversation rules are the drivers' own (portatlas.identify.session);
this only hands each scripted reply to the session and records what the probe asked to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portatlas.identify.base import Probe, ProbeContext, Send, Step, Wait
from portatlas.identify.session import Session


@dataclass
class Talk:
    sent: list[bytes] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def last(self) -> Step:
        return self.steps[-1]


def make(cls: type[Probe], port: int = 0, transport: str | None = None, **ctx) -> Probe:
    return cls(ProbeContext("198.18.0.2", port, transport or cls.transport, **ctx))


def converse(probe: Probe, replies: list[bytes], *, finish: bool = False) -> Talk:
    """start(), then each reply in turn as bytes received, through the same Session as the
    drivers (identify/session.py): over TCP, replies that arrive while the probe waits are
    concatenated, a Send starts afresh; over UDP each reply is one datagram. With
    finish=True, the server goes quiet when the replies run out undecided (finish(), with the
    Session's rules: over UDP it may send its fallback once)."""
    talk = Talk()
    session = Session(probe, probe.ctx.transport)

    def note() -> None:
        step = session.result if session.done else session.action
        talk.steps.append(step)
        if isinstance(step, Send) and not session.done:
            talk.sent.append(step.data)
            session.sent()

    note()
    for reply in replies:
        if session.done or not isinstance(session.action, Wait):
            break
        session.received(reply)
        note()
    if finish and not session.done:
        session.quiet()
        note()
    return talk


def feed_chunks(probe: Probe, data: bytes, sizes: list[int]) -> Step:
    """Feed a TCP reply as it might arrive: growing prefixes of `data`."""
    step: Step = Wait()
    seen = 0
    for size in sizes:
        seen = min(len(data), seen + size)
        step = probe.feed(data[:seen])
        if not isinstance(step, Wait):
            return step
    return step
