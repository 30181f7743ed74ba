"""RDP module on bytes.

Captured: xrdp 0.9.21 (Debian 12) in a network namespace, answering our X.224 Connection
Request. Constructed from [MS-RDPBCGR] 2.2.1.2: a Windows 10-like confirm (flags 0x1f,
CredSSP), a negotiation failure, a pre-negotiation confirm and junk.
"""

from __future__ import annotations

import pytest

from portatlas.identify.base import NoMatch, Verdict, Wait
from portatlas.identify.protocols import rdp
from support.probe_talk import converse, make

XRDP_CONFIRM = bytes.fromhex("030000130ed000001234000201080001000000")
WINDOWS_CONFIRM = bytes.fromhex("030000130ed0000012340002" "1f080002000000")
FAILURE = bytes.fromhex("030000130ed0000012340003" "00080005000000")
OLD_CONFIRM = bytes.fromhex("0300000b06d00000123400")


def probe() -> rdp.RdpProbe:
    return make(rdp.RdpProbe, 3389)


def test_connection_request_bytes():
    assert rdp.build_connection_request() == bytes.fromhex("030000130ee000000000000100080003000000")


def test_xrdp_capture():
    verdict = converse(probe(), [XRDP_CONFIRM]).last
    assert isinstance(verdict, Verdict) and verdict.protocol == "rdp"
    assert verdict.extra["security"] == "tls"
    assert verdict.extra["flags"] == ["EXTENDED_CLIENT_DATA"]
    assert verdict.product is None  # modern xrdp is not told apart from older Windows


def test_windows_like():
    verdict = probe().feed(WINDOWS_CONFIRM)
    assert verdict.product == "Microsoft Terminal Services"
    assert verdict.extra["security"] == "credssp"


def test_failure_and_old_servers():
    assert probe().feed(FAILURE).extra["failure"] == "HYBRID_REQUIRED_BY_SERVER"
    old = probe().feed(OLD_CONFIRM)
    assert isinstance(old, Verdict) and old.extra["security"].startswith("rdp")
    assert probe().feed(bytes.fromhex("0300000b06d00000000000")).product == "xrdp"


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 400 Bad Request\r\n",
    bytes.fromhex("030000130ee000001234000201080001000000"),  # a request, not a confirm
    bytes.fromhex("030000130ed0000012340009010800010000"),    # cut short
    bytes.fromhex("03000013" "0fd000001234000201080001000000"),  # length indicator wrong
    bytes.fromhex("0300ffff0ed000001234000201080001000000"),  # huge TPKT
])
def test_not_rdp(data):
    assert isinstance(probe().finish(data), NoMatch)


def test_waits_for_the_whole_tpkt():
    assert isinstance(probe().feed(XRDP_CONFIRM[:3]), Wait)
    assert isinstance(probe().feed(XRDP_CONFIRM[:10]), Wait)
