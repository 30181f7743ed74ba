"""LDAP module on bytes.

Captured: OpenLDAP slapd 2.5.13 (Debian 12) in a network namespace, answering our root DSE
search (message id 7). Constructed from RFC 4511 with our BER encoder: an Active Directory-like
and a 389-DS-like root DSE, a refusal, a notice of disconnection and hostile messages.
"""

from __future__ import annotations

from portatlas.identify.base import NoMatch, Verdict, Wait
from portatlas.identify.protocols import _ber as ber
from portatlas.identify.protocols import ldap
from support.probe_talk import converse, feed_chunks, make

SLAPD_ROOT_DSE = bytes.fromhex(
    "308201750201076482016e0400308201683025040b6f626a656374436c61737331160403746f70040f"
    "4f70656e4c444150726f6f744453453028040e6e616d696e67436f6e74657874733116041464633d70"
    "6f727461746c61732c64633d7465737430750412737570706f72746564457874656e73696f6e315f04"
    "17312e332e362e312e342e312e343230332e312e31312e310417312e332e362e312e342e312e343230"
    "332e312e31312e33040b312e332e362e312e312e38040e312e332e362e312e312e32312e33040e312e"
    "332e362e312e312e32312e31301b0414737570706f727465644c44415056657273696f6e3103040133"
    "3081800417737570706f727465645341534c4d656368616e69736d733165040d534352414d2d534841"
    "2d353132040d534352414d2d5348412d333834040d534352414d2d5348412d323536040d534352414d"
    "2d5348412d323234040b534352414d2d5348412d31040a4449474553542d4d443504084352414d2d4d"
    "443504044e544c4d300c02010765070a010004000400")


def entry(message_id: int, attributes: dict[str, list[str]]) -> bytes:
    attrs = ber.sequence(*(ber.sequence(ber.octets(k), ber.sequence(*(ber.octets(v) for v in vs),
                                                                      tag=ber.SET))
                           for k, vs in attributes.items()))
    return ber.sequence(ber.integer(message_id), ber.sequence(ber.octets(""), attrs, tag=0x64))


def done(message_id: int, code: int = 0, message: str = "") -> bytes:
    result = ber.sequence(ber.integer(code, ber.ENUMERATED), ber.octets(""), ber.octets(message),
                          tag=0x65)
    return ber.sequence(ber.integer(message_id), result)


def probe() -> ldap.LdapProbe:
    p = make(ldap.LdapProbe, 389)
    p.message_id = 7
    return p


def test_openldap_capture():
    talk = converse(probe(), [SLAPD_ROOT_DSE])
    assert talk.sent == [ldap.build_rootdse_search(7)]
    verdict = talk.last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("ldap", "OpenLDAP")
    assert verdict.extra["naming_contexts"] == ["dc=portatlas,dc=test"]
    assert verdict.extra["ldap_versions"] == ["3"]
    assert "SCRAM-SHA-256" in verdict.extra["sasl_mechanisms"]
    assert verdict.extra["result"] == "success"


def test_capture_arriving_in_pieces():
    verdict = feed_chunks(probe(), SLAPD_ROOT_DSE, [1, 30, 300, 100])
    assert isinstance(verdict, Verdict) and verdict.product == "OpenLDAP"


def test_active_directory_like():
    data = entry(7, {"domainControllerFunctionality": ["7"], "forestFunctionality": ["7"],
                     "dnsHostName": ["dc1.corp.example"],
                     "defaultNamingContext": ["DC=corp,DC=example"]}) + done(7)
    verdict = probe().feed(data)
    assert verdict.product == "Microsoft Active Directory"
    assert verdict.extra["dns_host_name"] == "dc1.corp.example"


def test_389_directory_server_like():
    data = entry(7, {"vendorName": ["389 Project"],
                     "vendorVersion": ["389-Directory/2.3.4 B2023.123.1"]}) + done(7)
    verdict = probe().feed(data)
    assert (verdict.product, verdict.version) == ("389 Directory Server", "2.3.4")


def test_refusal_is_ldap_without_product():
    verdict = probe().feed(done(7, 1, "anonymous access denied"))
    assert isinstance(verdict, Verdict) and verdict.product is None
    assert verdict.extra == {"result": "operationsError", "diagnostic": "anonymous access denied"}


def test_notice_of_disconnection():
    notice = ber.sequence(ber.integer(0), ber.sequence(ber.integer(52, ber.ENUMERATED),
                                                       ber.octets(""), ber.octets("bye"),
                                                       tag=0x78))
    verdict = probe().feed(notice)
    assert isinstance(verdict, Verdict) and verdict.extra["result"] == "unavailable"


def test_not_ldap():
    assert isinstance(probe().feed(done(8)), NoMatch)  # other message id
    assert isinstance(probe().feed(b"HTTP/1.1 400 Bad Request\r\n"), NoMatch)
    assert isinstance(probe().feed(b"\x30\x84\x7f\xff\xff\xff"), NoMatch)  # 2 GiB message
    assert isinstance(probe().feed(b"\x30\x05\x02\x01"), Wait)
    assert isinstance(probe().finish(b"\x30\x05\x02\x01"), NoMatch)
    bad_inner = ber.sequence(ber.integer(7), ber.sequence(ber.octets("x"), tag=0x64))
    assert isinstance(probe().feed(bad_inner), NoMatch)
