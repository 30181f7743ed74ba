"""NTP module on bytes.

Captured: chrony 4.3 (Debian 12, 'local stratum 10') and NTPsec 1.2.2 (ntpd from Debian 12's
ntpsec package, unsynchronised, mode 6 queries allowed), each in a network namespace, asked a
mode 3 request whose transmit timestamp was 01 02 .. 08, then a mode 6 READVAR with sequence 1.
Constructed from RFC 5905: the kiss-of-death and hostile replies.
"""

from __future__ import annotations

import struct

from portatlas.identify.base import NoMatch, Send, Verdict
from portatlas.identify.protocols import ntp
from support.probe_talk import converse, make

TRANSMIT = bytes(range(1, 9))
CHRONY_MODE4 = bytes.fromhex(
    "240a00e600000000000000007f7f0101eeaed8ca632414580102030405060708eeaed8cc5feb4f63"
    "eeaed8cc5feeb7b8")
NTPSEC_MODE4 = bytes.fromhex(
    "e40000e80000000000000000494e495400000000000000000102030405060708eeaed8d8a67a906d"
    "eeaed8d8a6fb33e3")
NTPSEC_MODE6 = bytes.fromhex(
    "d6820001c0160000000001596c6561703d332c207374726174756d3d31362c20707265636973696f6e"
    "3d2d32342c20726f6f7464656c61793d302e3030302c20726f6f74646973703d302e3031352c0d0a72"
    "656669643d494e49542c2072656674696d653d307830303030303030302e30303030303030302c2074"
    "633d302c20706565723d302c206f66667365743d302e3030303030302c0d0a6672657175656e63793d"
    "302e3030303030302c207379735f6a69747465723d302e3030303030302c20636c6b5f6a6974746572"
    "3d302e3030303036302c0d0a636c6f636b3d307865656165643864382e61373131333432652c207072"
    "6f636573736f723d227838365f3634222c0d0a73797374656d3d224c696e75782f362e31382e34342d"
    "66632d76363639222c2076657273696f6e3d226e747064206e74707365632d312e322e32222c0d0a63"
    "6c6b5f77616e6465723d302e3030303030302c206d696e74633d300d0a000000")


def probe() -> ntp.NtpProbe:
    p = make(ntp.NtpProbe, 123)
    p.transmit = TRANSMIT
    p.sequence = 1
    return p


def test_request_is_a_48_byte_v4_client_packet():
    data = ntp.build_client_request(TRANSMIT)
    assert len(data) == 48 and data[0] == 0x23 and data[40:] == TRANSMIT
    assert ntp.build_readvar(1) == bytes.fromhex("160200010000000000000000")


def test_chrony_capture_decides_without_mode6():
    talk = converse(probe(), [CHRONY_MODE4])
    assert len(talk.sent) == 1  # no READVAR: chrony would not answer it
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("ntp", "chrony")
    assert verdict.extra["stratum"] == 10 and verdict.extra["refid"] == "127.127.1.1"
    assert verdict.extra["origin_echoed"] and verdict.confidence == 1.0


def test_ntpsec_capture_with_mode6():
    talk = converse(probe(), [NTPSEC_MODE4, NTPSEC_MODE6])
    assert talk.sent[1] == ntp.build_readvar(1)
    verdict = talk.last
    assert (verdict.product, verdict.version) == ("NTPsec", "1.2.2")
    assert verdict.extra["leap"] == "unsynchronized"
    assert verdict.extra["kiss_code"] == "INIT"
    assert verdict.extra["mode6"] == "answered"
    assert verdict.extra["system"].startswith("Linux/")


def test_mode6_unanswered_still_ntp():
    p = probe()
    assert isinstance(converse(p, [NTPSEC_MODE4]).last, Send)
    verdict = p.finish(b"")
    assert isinstance(verdict, Verdict) and verdict.protocol == "ntp" and verdict.product is None


def test_classic_ntpd_version_text():
    text = "ntpd 4.2.8p15@1.3728-o Wed Sep 23 11:46:38 UTC 2020 (1)"
    assert ntp.product_from_version_text(text) == ("ntpd", "4.2.8p15")


def test_origin_not_echoed_is_less_certain():
    other = CHRONY_MODE4[:24] + bytes(8) + CHRONY_MODE4[32:]
    verdict = converse(probe(), [other]).last
    assert isinstance(verdict, Verdict) and verdict.confidence < 1.0


def test_rate_kiss_of_death():
    kod = bytes([0x24, 0, 4, 0xEC]) + bytes(8) + b"RATE" + bytes(8) + TRANSMIT + bytes(16)
    p = probe()
    step = p.feed(kod)
    assert isinstance(step, Send)  # ask mode 6 next
    verdict = p.finish(b"")
    assert verdict.extra["kiss_code"] == "RATE"


def test_not_ntp():
    assert isinstance(probe().feed(b"\x23" + bytes(47)), NoMatch)  # a client packet echoed
    assert isinstance(probe().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n"), NoMatch)
    assert isinstance(probe().finish(b""), NoMatch)


def test_foreign_control_reply_ignored():
    p = probe()
    p.feed(NTPSEC_MODE4)
    wrong_sequence = NTPSEC_MODE6[:2] + struct.pack(">H", 99) + NTPSEC_MODE6[4:]
    verdict = p.feed(wrong_sequence)
    assert verdict.product is None and "mode6" not in verdict.extra
