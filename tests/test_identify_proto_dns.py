"""DNS module (UDP and TCP) on bytes.

Captured: dnsmasq 2.90 (Debian 12 dnsmasq-base), started in a network namespace and asked
our version.bind query with id 0x1234, over UDP and TCP. Constructed from RFC 1035: the BIND,
REFUSED and hostile replies.
"""

from __future__ import annotations

import struct

import pytest

from portatlas.identify.base import NoMatch, Send, Verdict, Wait
from portatlas.identify.protocols import dns
from support.probe_talk import converse, feed_chunks, make

QUERY_1234 = bytes.fromhex("1234000000010000000000000776657273696f6e0462696e640000100003")
DNSMASQ_REPLY = bytes.fromhex(  # captured, dnsmasq 2.90 over UDP
    "1234848000010001000000000776657273696f6e0462696e640000100003c00c001000030000000000"
    "0d0c646e736d6173712d322e3930")
DNSMASQ_TCP_REPLY = bytes.fromhex("0037") + DNSMASQ_REPLY  # captured, same server over TCP


def question() -> bytes:
    return b"\x07version\x04bind\x00\x00\x10\x00\x03"


def reply(qid: int, flags: int, answers: bytes = b"", ancount: int = 0, qd: bytes | None = None,
          qdcount: int = 1) -> bytes:
    body = question() if qd is None else qd
    return struct.pack(">HHHHHH", qid, flags, qdcount, ancount, 0, 0) + body + answers


def txt_answer(value: bytes) -> bytes:
    rdata = bytes([len(value)]) + value
    return b"\xc0\x0c" + struct.pack(">HHIH", 16, 3, 0, len(rdata)) + rdata


def test_query_is_version_bind_chaos_txt_without_recursion():
    assert dns.build_query(0x1234) == QUERY_1234


def test_udp_dnsmasq_capture():
    probe = make(dns.DnsUdpProbe, 53)
    probe.query_id = 0x1234
    talk = converse(probe, [DNSMASQ_REPLY])
    assert talk.sent == [QUERY_1234]
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product, verdict.version) == ("dns", "dnsmasq", "2.90")
    assert verdict.confidence == 1.0
    assert verdict.extra["version_bind"] == "dnsmasq-2.90"
    assert verdict.extra["rcode"] == "NOERROR"
    assert "dnsmasq-2.90" in verdict.evidence


def test_tcp_dnsmasq_capture_arriving_in_pieces():
    probe = make(dns.DnsTcpProbe, 53)
    probe.query_id = 0x1234
    first = probe.start()
    assert isinstance(first, Send) and first.data == b"\x00\x1e" + QUERY_1234
    assert isinstance(probe.feed(DNSMASQ_TCP_REPLY[:1]), Wait)
    verdict = feed_chunks(probe, DNSMASQ_TCP_REPLY, [5, 10, 100])
    assert isinstance(verdict, Verdict) and verdict.product == "dnsmasq"
    # the connection closing before the whole message arrived is not a DNS answer
    assert isinstance(probe.finish(DNSMASQ_TCP_REPLY[:20]), NoMatch)


def test_reply_to_another_query_id_is_not_ours():
    probe = make(dns.DnsUdpProbe, 53)
    probe.query_id = 0x4321
    assert isinstance(probe.feed(DNSMASQ_REPLY), NoMatch)


def test_query_echoed_back_is_not_a_reply():
    probe = make(dns.DnsUdpProbe, 53)
    probe.query_id = 0x1234
    assert isinstance(probe.feed(QUERY_1234), NoMatch)  # QR bit clear: an echo service


def test_bind_version_text():
    facts = dns.parse_reply(reply(7, 0x8500, txt_answer(b"9.18.24-1-Debian"), 1), 7)
    verdict = dns.verdict_from(facts, b"", "udp")
    assert (verdict.product, verdict.version) == ("ISC BIND", "9.18.24")


def test_refused_still_identifies_dns_without_product():
    facts = dns.parse_reply(reply(9, 0x8005), 9)
    verdict = dns.verdict_from(facts, b"", "udp")
    assert verdict.protocol == "dns" and verdict.product is None
    assert verdict.extra["rcode"] == "REFUSED" and verdict.confidence == 1.0


def test_reply_without_question_is_less_certain():
    facts = dns.parse_reply(reply(9, 0x8001, qd=b"", qdcount=0), 9)
    verdict = dns.verdict_from(facts, b"", "udp")
    assert verdict.extra["rcode"] == "FORMERR" and verdict.confidence < 1.0


def test_compression_pointer_loop_is_bounded():
    looping = b"\xc0\x0c" + struct.pack(">HHIH", 16, 3, 0, 1) + b"\x00"
    hostile = reply(5, 0x8000, qd=b"\xc0\x0c" + b"\x00\x10\x00\x03", answers=looping, ancount=1)
    facts = dns.parse_reply(hostile, 5)
    assert facts is not None and facts.get("malformed_records")


def test_huge_counts_do_not_drive_work():
    hostile = struct.pack(">HHHHHH", 5, 0x8000, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF) + question()
    facts = dns.parse_reply(hostile, 5)
    assert facts is not None and facts["counts"][1] == 0xFFFF


def test_tcp_length_prefix_sanity():
    probe = make(dns.DnsTcpProbe, 53)
    assert isinstance(probe.feed(b"\x00\x02ab"), NoMatch)
    assert isinstance(probe.feed(b"\xff\xff" + b"x" * 100), NoMatch)  # beyond the read budget


@pytest.mark.parametrize("text,product,version", [
    ("dnsmasq-2.90", "dnsmasq", "2.90"),
    ("unbound 1.17.1", "Unbound", "1.17.1"),
    ("9.18.24-1-Debian", "ISC BIND", "9.18.24"),
    ("PowerDNS Recursor 4.8.4", "PowerDNS Recursor", "4.8.4"),
    ("Knot DNS 3.2.6", "Knot DNS", "3.2.6"),
    ("NSD 4.6.1", "NSD", "4.6.1"),
    ("go away", None, None),
])
def test_version_texts(text, product, version):
    assert dns.product_from_version_text(text) == (product, version)
