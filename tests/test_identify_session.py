"""The conversation rules of portatlas.identify.session, without sockets or root: buffering,
read budget, send limit, what finish() may do over TCP and over UDP, the TLS hand-off."""

from __future__ import annotations

import pytest

from portatlas.identify.base import (IdentifyInside, NoMatch, Probe, ProbeContext, Send, StartTLS,
                                     Verdict, Wait)
from portatlas.identify.observations import MAX_SENDS
from portatlas.identify.session import MAX_DATAGRAMS, Session, final


class Script(Probe):
    """A probe that records what it was fed and answers from a list of steps."""

    name = "script"
    read_budget = 100

    def __init__(self, steps=(), *, start=None, finish=None, transport="tcp", tls_ready=None,
                 tls_failed=None):
        super().__init__(ProbeContext("198.18.0.2", 4242, transport))
        self.steps = list(steps)
        self._start = start if start is not None else Wait()
        self._finish = finish if finish is not None else NoMatch("no answer")
        self._tls_ready = tls_ready
        self._tls_failed = tls_failed
        self.fed: list[bytes] = []
        self.finished: list[bytes] = []
        self.tls: list = []

    def start(self):
        return self._start

    def feed(self, data):
        self.fed.append(bytes(data))
        return self.steps.pop(0) if self.steps else Wait()

    def finish(self, data):
        self.finished.append(bytes(data))
        step = self._finish
        if isinstance(step, list):
            return step.pop(0)
        return step

    def tls_ready(self, info):
        self.tls.append(info)
        return self._tls_ready or Wait()

    def tls_failed(self, reason):
        self.tls.append(reason)
        return self._tls_failed or Send(b"plain")


def test_tcp_concatenates_chunks_since_the_last_send():
    probe = Script([Wait(), Send(b"next"), Wait()], start=Send(b"hello"))
    s = Session(probe, "tcp")
    assert s.action == Send(b"hello") and s.sends == 1
    s.sent()
    s.received(b"ab")
    s.received(b"cd")
    assert probe.fed == [b"ab", b"abcd"]
    assert s.action == Send(b"next")
    s.sent()
    s.received(b"ef")
    assert probe.fed[-1] == b"ef"  # a Send starts a new buffer


def test_udp_feeds_each_datagram_alone():
    probe = Script([Wait(), Wait()], start=Send(b"q"), transport="udp")
    s = Session(probe, "udp")
    s.sent()
    s.received(b"one")
    s.received(b"two")
    assert probe.fed == [b"one", b"two"]


def test_pending_banner_is_fed_to_a_server_first_probe_only():
    waiting = Script([Verdict("x", confidence=1.0)])
    s = Session(waiting, "tcp", pending=b"220 hi\r\n")
    assert waiting.fed == [b"220 hi\r\n"] and s.done and s.result.protocol == "x"
    assert not s.implicit_tls
    sending = Script(start=Send(b"GET"))
    s = Session(sending, "tcp", pending=b"220 hi\r\n")
    assert sending.fed == [] and s.action == Send(b"GET")


def test_tcp_read_budget_gives_finish_exactly_the_budget():
    probe = Script(finish=Verdict("big", confidence=0.5))
    s = Session(probe, "tcp")
    assert s.read_size() == 101  # one byte over the budget shows it is exceeded
    s.received(b"x" * 60)
    assert s.read_size() == 41
    s.received(b"y" * 60)
    assert s.over_budget and s.done
    assert probe.finished == [b"x" * 60 + b"y" * 40]
    assert s.result.protocol == "big"


def test_send_limit():
    probe = Script([Send(b"again")] * (MAX_SENDS + 5), start=Send(b"first"))
    s = Session(probe, "tcp")
    sends = 0
    while not s.done:
        assert isinstance(s.action, Send)
        sends += 1
        s.sent()
        s.received(b"r")
    assert sends == MAX_SENDS
    assert s.result == NoMatch("too many exchanges")


@pytest.mark.parametrize("answer", [Send(b"more"), Wait(), StartTLS()])
def test_tcp_finish_may_only_answer(answer):
    probe = Script(finish=answer)
    s = Session(probe, "tcp")
    s.received(b"partial")
    assert not s.quiet()
    assert s.result == NoMatch("no decision")
    assert probe.finished == [b"partial"]  # finish gets what was read since the last Send


def test_tcp_finish_answers_are_kept():
    inside = IdentifyInside(Verdict("tls", confidence=0.9))
    for answer in (Verdict("p", confidence=0.4), NoMatch("no"), inside):
        s = Session(Script(finish=answer), "tcp")
        s.quiet()
        assert s.result is answer


def test_udp_finish_may_send_its_fallback_once():
    probe = Script(start=Send(b"v3"), transport="udp",
                   finish=[Send(b"v2c"), Send(b"v1"), NoMatch("no answer")])
    s = Session(probe, "udp")
    s.sent()
    assert s.quiet() is True
    assert s.action == Send(b"v2c") and not s.done
    assert s.sends == 1  # the fallback is not counted against the send limit
    s.sent()
    assert s.quiet() is False and s.done
    assert s.result == Send(b"v1")  # a second one ends it; the driver reads "no decision"
    assert probe.finished == [b"", b""]  # UDP finish() gets no buffer


def test_udp_stops_after_max_datagrams():
    probe = Script([Wait()] * (MAX_DATAGRAMS + 3), start=Send(b"q"), transport="udp")
    s = Session(probe, "udp")
    s.sent()
    for _ in range(MAX_DATAGRAMS):
        assert not s.done
        s.received(b"flood")
    assert s.done and isinstance(s.result, Wait)
    assert len(probe.fed) == MAX_DATAGRAMS


def test_udp_ignores_tls_steps():
    probe = Script([StartTLS(), IdentifyInside(Verdict("x"))], start=Send(b"q"), transport="udp")
    s = Session(probe, "udp")
    s.sent()
    s.received(b"a")
    assert isinstance(s.action, Wait) and not s.done
    s.received(b"b")
    assert isinstance(s.action, Wait) and not s.done


def test_tls_hand_off():
    probe = Script([StartTLS(server_name="a.test")], start=Send(b"STARTTLS"),
                   tls_ready=Send(b"inside"))
    s = Session(probe, "tcp")
    s.sent()
    s.received(b"220 go ahead")
    assert isinstance(s.action, StartTLS) and not s.implicit_tls
    s.tls_ready({"version": "TLSv1.3"})
    assert probe.tls == [{"version": "TLSv1.3"}]
    assert s.action == Send(b"inside") and s.buf == bytearray()


def test_implicit_tls_and_a_failed_handshake_is_the_last_word():
    probe = Script(start=StartTLS(), tls_failed=Send(b"plain"))
    s = Session(probe, "tcp")
    assert s.implicit_tls
    s.tls_failed("TLS handshake failed (reset): connection reset")
    assert s.result == NoMatch("no decision")  # same rule as finish()


def test_tls_switched_off_lets_the_probe_go_on():
    probe = Script(start=StartTLS(), tls_failed=Send(b"plain"))
    s = Session(probe, "tcp")
    s.tls_refused("TLS disabled by option")
    assert s.action == Send(b"plain") and not s.done


def test_final():
    assert final(Send(b"x")) == NoMatch("no decision")
    v = Verdict("x")
    assert final(v) is v


def test_snmp_v2c_fallback_goes_through_the_session():
    """The real SNMP module depends on the UDP rule: after an unanswered v3 discovery, its
    finish() asks to send the v2c GetRequest."""
    from portatlas.identify.protocols import snmp

    probe = snmp.SnmpProbe(ProbeContext("198.18.0.2", 161, "udp"))
    s = Session(probe, "udp")
    assert isinstance(s.action, Send)
    s.sent()
    assert s.quiet() is True
    assert isinstance(s.action, Send) and s.action.data != b""
    s.sent()
    assert s.quiet() is False
    assert s.result == NoMatch("no answer")
    # over TCP the same finish() could not send: only an answer counts
    tcp = Session(snmp.SnmpProbe(ProbeContext("198.18.0.2", 161, "udp")), "tcp")
    tcp.quiet()
    assert tcp.result == NoMatch("no decision")


def test_unknown_transport():
    with pytest.raises(ValueError):
        Session(Script(), "sctp")


def test_a_reflection_is_never_fed_to_the_probe():
    from portatlas.identify.session import REFLECTED

    verdict = Verdict("script", confidence=1.0)
    # TCP: the whole send back ends the conversation at once, the probe never sees it
    probe = Script([verdict], start=Send(b"HELLO-1234"))
    s = Session(probe, "tcp")
    s.sent()
    s.received(b"HELLO-1234")
    assert s.done and s.result == NoMatch(REFLECTED) and probe.fed == [] and s.reflected == 1
    # a prefix waits; what follows and differs is fed whole (a real reply may start alike)
    probe = Script([verdict], start=Send(b"HELLO-1234"))
    s = Session(probe, "tcp")
    s.sent()
    s.received(b"HELL")
    assert not s.done and probe.fed == []
    s.received(b"O-99 OK")
    assert probe.fed == [b"HELLO-99 OK"] and s.result == verdict
    # a prefix, then silence: a reflection, not the probe's business
    probe = Script([verdict], start=Send(b"HELLO-1234"), finish=verdict)
    s = Session(probe, "tcp")
    s.sent()
    s.received(b"HELLO")
    s.quiet()
    assert s.result == NoMatch(REFLECTED) and probe.finished == []
    # shorter than MIN_REFLECTION: an ordinary reply
    probe = Script([verdict], start=Send(b"\x05\x01\x00"))
    s = Session(probe, "tcp")
    s.sent()
    s.received(b"\x05")
    assert probe.fed == [b"\x05"]
    # UDP: the echoed datagram is skipped, the real answer decides
    probe = Script([verdict], start=Send(b"query-5678"), transport="udp")
    s = Session(probe, "udp")
    s.sent()
    s.received(b"query-5678")
    assert not s.done and probe.fed == [] and s.reflected == 1
    s.received(b"answer")
    assert s.result == verdict
    # UDP: only the echo, then silence
    probe = Script([], start=Send(b"query-5678"), transport="udp")
    s = Session(probe, "udp")
    s.sent()
    s.received(b"query-5678")
    s.quiet()
    assert s.result == NoMatch(REFLECTED)
