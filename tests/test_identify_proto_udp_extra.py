"""The cheap extra UDP modules on bytes: NetBIOS name service and SSDP.

Captured: Samba 4.17.12 nmbd (Debian 12, NetBIOS name PATEST, workgroup PORTATLAS) in a
network namespace, answering our NBSTAT query (transaction id 0x4e42) across a veth link.
Constructed from the UPnP Device Architecture 1.1: the SSDP answers (no packaged server answers
a unicast M-SEARCH without a UPnP service to announce).
"""

from __future__ import annotations

from portatlas.identify.base import NoMatch, Verdict
from portatlas.identify.protocols import netbios_ns, ssdp
from support.probe_talk import converse, make

NMBD_NODE_STATUS = bytes.fromhex(
    "4e428400000000010000000020434b414141414141414141414141414141414141414141414141414141"
    "414141000021000100000000008905504154455354202020202020202020000400504154455354202020"
    "202020202020030400504154455354202020202020202020200400504f525441544c4153202020202020"
    "008400504f525441544c41532020202020201e8400000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000")
MINIUPNPD_REPLY = (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\n"
                   b"USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::upnp:rootdevice\r\nEXT:\r\n"
                   b"SERVER: Linux/5.10 UPnP/1.1 MiniUPnPd/2.3.3\r\n"
                   b"LOCATION: http://198.18.0.1:5000/rootDesc.xml\r\n\r\n")


def nbns() -> netbios_ns.NetbiosNsProbe:
    p = make(netbios_ns.NetbiosNsProbe, 137)
    p.transaction_id = 0x4E42
    return p


def test_nbstat_query_bytes():
    assert netbios_ns.build_nbstat_query(0x4E42) == bytes.fromhex(
        "4e420000000100000000000020434b41414141414141414141414141414141414141414141414141414141"
        "41410000210001")


def test_nmbd_capture():
    verdict = converse(nbns(), [NMBD_NODE_STATUS]).last
    assert isinstance(verdict, Verdict)
    assert (verdict.protocol, verdict.product) == ("netbios-ns", "Samba nmbd")
    assert verdict.extra["host_name"] == "PATEST" and verdict.extra["workgroup"] == "PORTATLAS"
    assert verdict.extra["file_server"] is True
    assert verdict.extra["names"][0] == "PATEST<00>"
    assert verdict.extra["mac"] == "00:00:00:00:00:00"


def test_windows_like_mac_names_no_product():
    data = bytearray(NMBD_NODE_STATUS)
    start = 12 + 34 + 10 + 1 + 5 * 18
    data[start:start + 6] = bytes.fromhex("00155d010203")
    verdict = nbns().feed(bytes(data))
    assert verdict.product is None and verdict.extra["mac"] == "00:15:5d:01:02:03"


def test_not_netbios():
    assert isinstance(nbns().feed(NMBD_NODE_STATUS[:40]), NoMatch)
    other = b"\x00\x01" + NMBD_NODE_STATUS[2:]
    assert isinstance(nbns().feed(other), NoMatch)
    assert isinstance(nbns().feed(netbios_ns.build_nbstat_query(0x4E42)), NoMatch)  # an echo
    assert isinstance(nbns().finish(b""), NoMatch)


def test_ssdp_msearch_and_answer():
    probe = make(ssdp.SsdpProbe, 1900)
    talk = converse(probe, [MINIUPNPD_REPLY])
    assert talk.sent[0].startswith(b"M-SEARCH * HTTP/1.1\r\nHOST: 198.18.0.2:1900\r\n")
    assert b"ST: ssdp:all" in talk.sent[0]
    verdict = talk.last
    assert (verdict.protocol, verdict.product, verdict.version) == ("ssdp", "MiniUPnPd", "2.3.3")
    assert verdict.extra["location"] == "http://198.18.0.1:5000/rootDesc.xml"


def test_ssdp_rejects_plain_http_and_junk():
    probe = make(ssdp.SsdpProbe, 1900)
    assert isinstance(probe.feed(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n"), NoMatch)
    assert isinstance(probe.feed(b"SIP/2.0 200 OK\r\nST: x\r\n\r\n"), NoMatch)
    assert ssdp.product_from_server("Linux UPnP/1.0") == (None, None)
    v6 = ssdp.build_msearch("2001:db8::2", 1900)
    assert v6.startswith(b"M-SEARCH * HTTP/1.1\r\nHOST: [2001:db8::2]:1900")
