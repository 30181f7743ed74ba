"""STUN (RFC 8489) and Time (RFC 868) modules, with the replies of the lab's coturn and
openbsd-inetd (tests/captures/). Pure: no sockets."""

from __future__ import annotations

import struct
from pathlib import Path

from portatlas.identify.base import IDENTIFIED, NoMatch, Verdict
from portatlas.identify.merge import merge
from portatlas.identify.nmap.engine import EngineResult
from portatlas.identify.protocols import stun, time_rfc868
from support.probe_talk import converse, make

CAPTURES = Path(__file__).resolve().parent / "captures"


def _capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


# coturn's answers to a Binding request with transaction id b"p2-portatlas"
COTURN_BINDING_UDP = _capture("coturn-3478-udp-binding.bin")
COTURN_BINDING_TCP = _capture("coturn-3478-tcp-binding.bin")
txid_sent = b"p2-portatlas"


def _stun(cls, reply: bytes, txid: bytes = txid_sent):
    probe = make(cls, 3478)
    probe.transaction = txid
    return converse(probe, [reply], finish=True)


def test_coturn_answers_a_binding_request_over_udp_and_tcp():
    for cls, reply in ((stun.StunUdpProbe, COTURN_BINDING_UDP),
                       (stun.StunTcpProbe, COTURN_BINDING_TCP)):
        talk = _stun(cls, reply)
        assert talk.sent == [stun.binding_request(txid_sent)]
        verdict = talk.last
        assert (verdict.protocol, verdict.product, verdict.version) == ("stun", "Coturn", "4.6.1")
        assert verdict.extra["software"] == "Coturn-4.6.1 'Gorst'" and verdict.confidence == 1.0
        merged = merge(verdict, EngineResult(), "/usr/share/nmap/nmap-service-probes")
        assert (merged.outcome, merged.protocol) == (IDENTIFIED, "stun")


def test_stun_needs_our_transaction_and_the_cookie():
    assert isinstance(_stun(stun.StunUdpProbe, COTURN_BINDING_UDP, b"another-txid").last, NoMatch)
    no_cookie = COTURN_BINDING_UDP[:4] + b"\x00\x00\x00\x00" + COTURN_BINDING_UDP[8:]
    assert isinstance(_stun(stun.StunUdpProbe, no_cookie).last, NoMatch)
    # a TCP reply in pieces waits for its whole length, then decides
    talk = _stun(stun.StunTcpProbe, COTURN_BINDING_TCP[:30])
    assert isinstance(talk.last, NoMatch) and "cut short" in talk.last.reason
    overrun = COTURN_BINDING_UDP[:2] + b"\x00\x08" + COTURN_BINDING_UDP[4:20] + \
        b"\x80\x22\x00\x40abcd"
    assert isinstance(_stun(stun.StunUdpProbe, overrun).last, NoMatch)
    assert stun.software_product("Coturn-4.6.1 'Gorst'") == ("Coturn", "4.6.1")
    assert stun.software_product("pion") == ("pion", None)


def _time(value: int) -> bytes:
    return struct.pack(">I", value % (1 << 32))


def test_time_is_four_bytes_near_our_clock_then_the_end():
    import time as clock

    now = int(clock.time()) + time_rfc868.EPOCH_1900
    verdict = converse(make(time_rfc868.TimeTcpProbe, 37), [_time(now - 30)], finish=True).last
    assert isinstance(verdict, Verdict) and verdict.protocol == "time"
    assert abs(verdict.extra["clock_offset_s"] + 30) <= 5
    far = converse(make(time_rfc868.TimeTcpProbe, 37), [_time(now + 10 * 86400)], finish=True)
    assert isinstance(far.last, NoMatch)  # a clock far off: not named (a miss, not a guess)
    longer = converse(make(time_rfc868.TimeTcpProbe, 37), [_time(now) + b"\r\n"], finish=True)
    assert isinstance(longer.last, NoMatch)
    udp = converse(make(time_rfc868.TimeUdpProbe, 37), [_time(now)], finish=True)
    assert udp.sent == [b""] and udp.last.protocol == "time"
    assert time_rfc868.plausible(b"\xff\xff\xff\xff", now=0) is None
