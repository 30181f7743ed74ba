"""One probe's conversation, without I/O: the rules every driver and test helper follows.

A Session sits between a probe (sans-I/O, portatlas.identify.base) and whatever moves bytes:
the TCP driver, the UDP driver, the test helpers that replay captured bytes, the in-memory
transport of the scheduler tests. The I/O loop asks `session.action` what to do, does it, and
reports back; the session alone decides what the probe sees.

    s = Session(probe, "tcp", pending=banner)
    while not s.done:
        act = s.action
        Send       -> write act.data, then s.sent()
        Wait       -> read up to s.read_size() bytes; s.received(chunk), or s.quiet(why) on
                      timeout, close, reset or when the probe's time is up
        StartTLS   -> handshake (TCP), then s.tls_ready(info) or s.tls_failed(reason)
    s.result     -> Verdict | NoMatch | IdentifyInside

The rules (the same for every caller):
 - buffer: over TCP, feed() gets every byte received since the last Send (chunks are
   concatenated: a reply may arrive in pieces). Over UDP each datagram is fed on its own.
   A TCP session can start with `pending` bytes (the banner read on a shared connection):
   a probe that starts with Wait is fed them at once.
 - read budget: TCP reads at most probe.read_budget bytes (at least 64) since the last Send;
   beyond it the probe gets finish(first read_budget bytes) (`over_budget` tells the driver).
   UDP reads at most MAX_DATAGRAMS replies per probe; then the conversation ends undecided.
   Over UDP only Send, Verdict and NoMatch mean something: any other step keeps listening.
 - send limit: at most MAX_SENDS Sends per conversation, start() included; one more ends it
   with NoMatch("too many exchanges").
 - finish(): called once the server is quiet (timeout, close, reset, time up, budget).
   TCP: only an answer counts - a Verdict, NoMatch or IdentifyInside; anything else (a Send,
   a Wait) becomes NoMatch("no decision"). The connection is over: there is nothing to send
   on. UDP: finish() may return a Send once - the probe's fallback request after silence
   (snmp: a v2c GetRequest after an unanswered v3 discovery). It does not count against the
   send limit and the UDP driver gives it a fresh probe timeout; a second one ends the
   conversation. (The difference is deliberate: a UDP "connection" is never closed by the
   server, and silence is exactly when a UDP probe has something else to try.)
 - TLS hand-off (TCP only): StartTLS is done by the driver; the buffer is emptied, and the
   probe continues with tls_ready(info). When the handshake fails, tls_failed(reason) is the
   probe's last word (held to the same "only an answer counts" rule as finish()); when TLS is
   switched off by an option, tls_failed(reason) may go on without TLS (tls_refused).
 - IdentifyInside (the TLS probe after an implicit-TLS handshake) ends the conversation: the
   driver identifies what speaks inside on the same connection.
 - reflection: a reply that repeats what the probe last sent (all of it, or a prefix of at
   least MIN_REFLECTION bytes) is never evidence of the probe's protocol - an echo service
   (or a loop-back) sends it whatever the protocol. The probe is not fed such bytes: over TCP
   an exact copy of the whole send ends the conversation at once, a prefix keeps waiting
   (more may follow, then the probe sees everything); a conversation that ends on a
   reflection ends with NoMatch(REFLECTED...), and `reflected` says so. Over UDP a datagram
   that repeats the send is counted and skipped. Evidence of an echo service, never of the
   probe's protocol (docs/identify.md, "Reflections").
"""

from __future__ import annotations

from portatlas.identify.base import IdentifyInside, NoMatch, Probe, Send, Step, Verdict, Wait
from portatlas.identify.observations import MAX_SENDS

MAX_DATAGRAMS = 32  # UDP replies read per probe (a flood of datagrams is cut here)
MIN_BUDGET = 64
MIN_REFLECTION = 4  # a shorter prefix of what was sent may be a real reply's first bytes
REFLECTED = "the reply repeats what was sent (an echo), not this protocol"
FINAL = (Verdict, NoMatch, IdentifyInside)


def final(step: Step) -> Step:
    """After finish() (TCP) or tls_failed(): only an answer counts."""
    if isinstance(step, FINAL):
        return step
    return NoMatch("no decision")


def is_reflection(reply: bytes, sent: bytes) -> bool:
    """`reply` repeats `sent`: all of it, or a prefix of at least MIN_REFLECTION bytes."""
    if not reply or not sent or not sent.startswith(reply):
        return False
    return len(reply) >= min(len(sent), MIN_REFLECTION)


class Session:
    """One probe over one connection (TCP) or one connected socket (UDP)."""

    def __init__(self, probe: Probe, transport: str = "tcp", pending: bytes = b"") -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"unknown transport {transport!r}")
        self.probe = probe
        self.transport = transport
        self.budget = max(MIN_BUDGET, int(getattr(probe, "read_budget", 16384)))
        self.buf = bytearray()
        self.sends = 0
        self.replies = 0            # UDP datagrams (TCP: chunks) received
        self.had_pending = bool(pending)
        self.fed_pending = False   # the pending bytes went to the probe (it started with Wait)
        self.fallback_sent = False  # UDP: the one Send finish() may return
        self.over_budget = False
        self.last_sent = b""       # what the latest Send carried (reflections are set apart)
        self.reflected = 0          # replies that only repeated what was sent
        self.result: Step | None = None
        self.action: Step = Wait()
        step = probe.start()
        if transport == "tcp" and isinstance(step, Wait) and pending:
            self.fed_pending = True
            self.buf += pending
            step = probe.feed(bytes(self.buf))
        self._take(step)

    # -- state -----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def implicit_tls(self) -> bool:
        """A StartTLS before anything was exchanged: TLS from the first byte (not STARTTLS)."""
        return self.sends == 0 and not self.had_pending

    def read_size(self) -> int:
        """How much the I/O loop may read now (one byte over the budget shows it is exceeded)."""
        if self.transport == "udp":
            return 65535
        return min(16384, self.budget - len(self.buf) + 1)

    def _take(self, step: Step) -> None:
        udp = self.transport == "udp"
        if isinstance(step, (Verdict, NoMatch)) or (isinstance(step, IdentifyInside) and not udp):
            self.result = step
            return
        if isinstance(step, Send):
            self.last_sent = bytes(step.data)
            self.sends += 1
            if self.sends > MAX_SENDS:
                self.result = NoMatch("too many exchanges")
                return
        elif udp:
            step = Wait()  # no TLS over UDP: anything else means "keep listening"
        self.action = step

    def _end(self, step: Step) -> None:
        self.result = step
        self.action = Wait()

    # -- events from the I/O loop ----------------------------------------------------------
    def sent(self) -> None:
        """The action's bytes are written."""
        if self.transport == "tcp":
            self.buf = bytearray()
        self.action = Wait()

    def received(self, data: bytes) -> None:
        """Bytes arrived: a TCP chunk or one UDP datagram."""
        self.replies += 1
        if self.transport == "udp":
            if is_reflection(data, self.last_sent):
                self.reflected += 1  # skipped: not the probe's business
            else:
                self._take(self.probe.feed(data))
            if not self.done and self.replies >= MAX_DATAGRAMS and not isinstance(self.action, Send):
                self._end(self.action)  # undecided: the driver reads it as "no decision"
            return
        self.buf += data
        if len(self.buf) > self.budget:
            self.over_budget = True
            self._end(final(self.probe.finish(bytes(self.buf[:self.budget]))))
            return
        if is_reflection(bytes(self.buf), self.last_sent):
            if len(self.buf) == len(self.last_sent):
                self.reflected += 1
                self._end(NoMatch(REFLECTED))  # the whole send came back: an echo
            return  # a prefix of what was sent: wait for more before the probe sees it
        self._take(self.probe.feed(bytes(self.buf)))

    def quiet(self) -> bool:
        """The server said nothing more (timeout, close, reset) or the time is up: the probe
        decides with what there is. Returns True when, over UDP, finish() asked to send its
        fallback request (then `action` is that Send and the conversation goes on)."""
        if self.transport == "udp":
            step = self.probe.finish(b"")
            if isinstance(step, Send) and not self.fallback_sent:
                self.fallback_sent = True
                self.action = step
                self.last_sent = bytes(step.data)
                return True
            if self.reflected and not isinstance(step, Verdict):
                step = NoMatch(REFLECTED)
            self._end(step)
            return False
        if is_reflection(bytes(self.buf), self.last_sent):
            self.reflected += 1
            self._end(NoMatch(REFLECTED))
            return False
        self._end(final(self.probe.finish(bytes(self.buf))))
        return False

    def tls_ready(self, info: dict) -> None:
        """The handshake StartTLS asked for succeeded."""
        self.buf = bytearray()
        self.last_sent = b""  # a new layer: what the server says next answers nothing sent yet
        self._take(self.probe.tls_ready(info))

    def tls_failed(self, reason: str) -> None:
        """The handshake failed: the probe's last word."""
        self._end(final(self.probe.tls_failed(reason)))

    def tls_refused(self, reason: str) -> None:
        """TLS is not to be tried (an option): the probe may go on without it."""
        self.buf = bytearray()
        self._take(self.probe.tls_failed(reason))
