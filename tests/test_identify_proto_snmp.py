"""SNMP module and its BER codec on bytes.

Captured: Net-SNMP 5.9.3 snmpd (Debian 12, 'rocommunity public') in a network namespace,
answering our v3 discovery (msgID 0x4a69, request id 0x37f0) and our v2c GetRequest (request
id 0x1234). Constructed from RFC 3416/3414: the v1-only and hostile cases.
"""

from __future__ import annotations

import pytest

from portatlas.identify.base import NoMatch, Send, Verdict
from portatlas.identify.protocols import _ber as ber
from portatlas.identify.protocols import snmp
from portatlas.identify.protocols._wire import Bad, Reader, Short
from support.probe_talk import make

NETSNMP_REPORT = bytes.fromhex(
    "306d020103300f02024a69020300ffe30401000201030421301f041180001f8880f59b830bc15a046b"
    "000000000201010201000400040004003034041180001f8880f59b830bc15a046b000000000400a81d"
    "020237f00201000201003011300f060a2b060106030f01010400410102")
NETSNMP_RESPONSE = bytes.fromhex(
    "307802010104067075626c6963a26b02021234020100020100305f304506082b06010201010100043"
    "94c696e757820766d20362e31382e34342d66632d7636363920233120534d5020505245454d50545f"
    "44594e414d4943204030207838365f3634301606082b06010201010200060a2b06010401bf0803020a")


def probe() -> snmp.SnmpProbe:
    p = make(snmp.SnmpProbe, 161)
    p.message_id, p.request_id = 0x4A69, 0x37F0
    return p


def test_discovery_request_bytes():
    # msgFlags reportable only, USM, empty engine id and user name, empty GetRequest
    assert snmp.build_v3_discovery(0x4A69, 0x37F0) == bytes.fromhex(
        "303a020103300f02024a69020300ffe30401040201030410300e0400020100020100040004000400"
        "301204000400a00c020237f00201000201003000")


def test_netsnmp_capture_v3_then_v2c():
    p = probe()
    step = p.feed(NETSNMP_REPORT)
    assert isinstance(step, Send)
    assert step.data == snmp.build_v2c_get(0x37F0)
    p.request_id = 0x1234  # the capture answered request id 0x1234
    verdict = p.feed(NETSNMP_RESPONSE)
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("snmp", "Net-SNMP")
    assert verdict.extra["enterprise"] == 8072
    assert verdict.extra["engine_id"].startswith("80001f8880")
    assert verdict.extra["versions"] == ["v3", "v2c"]
    assert verdict.extra["sys_descr"].startswith("Linux vm 6.18")
    assert verdict.extra["sys_object_id"] == "1.3.6.1.4.1.8072.3.2.10"


def test_v2c_unanswered_keeps_the_v3_verdict():
    p = probe()
    p.feed(NETSNMP_REPORT)
    verdict = p.finish(b"")
    assert isinstance(verdict, Verdict) and verdict.product == "Net-SNMP"
    assert "sys_descr" not in verdict.extra


def test_no_v3_answer_offers_the_community_request():
    p = probe()
    step = p.finish(b"")
    assert isinstance(step, Send) and b"public" in step.data
    p.request_id = 0x1234
    verdict = p.feed(NETSNMP_RESPONSE)
    assert isinstance(verdict, Verdict) and verdict.product == "Net-SNMP"  # from sysObjectID
    assert verdict.extra["versions"] == ["v2c"]


def test_report_for_another_message_is_not_ours():
    p = make(snmp.SnmpProbe, 161)
    p.message_id = 1
    assert isinstance(p.feed(NETSNMP_REPORT), NoMatch)


def test_engine_id_vendors():
    assert snmp.parse_engine_id(bytes.fromhex("800000090300aabbccddeeff"))["vendor"] == "Cisco"
    assert "vendor" not in snmp.parse_engine_id(bytes.fromhex("8000ffff01c0a80101"))
    assert snmp.vendor_from_object_id("1.3.6.1.4.1.9.1.516") == "Cisco"
    assert snmp.vendor_from_object_id("1.3.6.1.2.1.1") is None


def test_ber_round_trip():
    encoded = ber.sequence(ber.integer(-129), ber.octets(b"x" * 200), ber.oid("1.3.6.1.4.1.8072"))
    reader = ber.expect(Reader(encoded), ber.SEQUENCE)
    assert ber.read_integer(reader) == -129
    assert ber.read_octets(reader) == b"x" * 200
    assert ber.decode_oid(ber.read_octets(reader, ber.OID)) == "1.3.6.1.4.1.8072"


@pytest.mark.parametrize("raw,error", [
    (b"\x30\x80\x00\x00", Bad),                # indefinite length
    (b"\x30\x85\x01\x00\x00\x00\x00", Bad),    # five length bytes
    (b"\x30\x84\x7f\xff\xff\xff", Short),      # 2 GiB declared: waits, allocates nothing
    (b"\x1f\x01\x00", Bad),                    # multi-byte tag
])
def test_ber_hostile_lengths(raw, error):
    with pytest.raises(error):
        ber.read_tlv(Reader(raw))


def test_ber_limits():
    with pytest.raises(Bad):
        ber.read_tlv(Reader(b"\x30\x82\xff\xff"), max_size=1000)
    with pytest.raises(Bad):
        ber.decode_integer(Reader(b"\x01" * 40))
    with pytest.raises(Bad):
        ber.decode_oid(b"\x2b\x86")  # unterminated arc
