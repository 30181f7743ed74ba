"""Play a protocol module's conversation from canned bytes (no sockets): the test side of the
sans-I/O design. This is not a driver: it only hands each scripted reply to the probe and
records what the probe asked to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portatlas.identify.base import NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait


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
    """start(), then feed each reply in turn (each one is 'all bytes since the last Send').
    With finish=True, finish(b"") is called when the replies run out undecided."""
    talk = Talk()
    step = probe.start()
    talk.steps.append(step)
    for reply in replies:
        if isinstance(step, Send):
            talk.sent.append(step.data)
        elif not isinstance(step, Wait):
            break
        step = probe.feed(reply)
        talk.steps.append(step)
    if isinstance(step, Send):
        talk.sent.append(step.data)
    if finish and not isinstance(step, (Verdict, NoMatch)):
        talk.steps.append(probe.finish(b""))
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
