"""VNC (RFB) module on bytes.

Captured: TigerVNC 1.12 Xvnc (Debian 12 tigervnc-standalone-server, security types VncAuth
and None) in a network namespace: its banner, and the security types sent after our
'RFB 003.008'. Constructed from RFC 6143: version 3.3, Apple's 3.889, a refusal and junk.
"""

from __future__ import annotations

import struct

from portatlas.identify.base import NoMatch, Send, Verdict, Wait
from portatlas.identify.protocols import vnc
from support.probe_talk import make

TIGERVNC_BANNER = b"RFB 003.008\n"
TIGERVNC_TYPES = bytes.fromhex("020201")


def probe() -> vnc.VncProbe:
    return make(vnc.VncProbe, 5900)


def test_tigervnc_capture():
    p = probe()
    assert isinstance(p.start(), Wait)
    assert vnc.VncProbe.claims_banner(TIGERVNC_BANNER)
    step = p.feed(TIGERVNC_BANNER)
    assert isinstance(step, Send) and step.data == b"RFB 003.008\n"
    verdict = p.feed(TIGERVNC_TYPES)
    assert isinstance(verdict, Verdict) and verdict.protocol == "vnc"
    assert verdict.extra == {"rfb_version": "3.8", "security_types": ["VNC", "None"]}


def test_banner_alone_then_silence():
    p = probe()
    p.feed(TIGERVNC_BANNER)
    verdict = p.finish(b"")
    assert isinstance(verdict, Verdict) and verdict.extra == {"rfb_version": "3.8"}


def test_version_3_3_server_chooses():
    p = probe()
    assert p.feed(b"RFB 003.003\n").data == b"RFB 003.003\n"
    assert p.feed(struct.pack(">I", 2)).extra["security_types"] == ["VNC"]


def test_apple_and_refusal():
    p = probe()
    p.feed(b"RFB 003.889\n")
    reason = b"Too many security failures"
    verdict = p.feed(b"\x00" + struct.pack(">I", len(reason)) + reason)
    assert verdict.product == "Apple Remote Desktop"
    assert verdict.extra["refused"] == "Too many security failures"


def test_not_vnc():
    assert isinstance(probe().feed(b"SSH-2.0-OpenSSH_9.2\r\n"), NoMatch)
    assert isinstance(probe().feed(b"RFB"), Wait)
    assert isinstance(probe().feed(b"RFB 3.8\nxxxxxxxx"), NoMatch)
    assert not vnc.VncProbe.claims_banner(b"220 ftp ready\r\n")
    assert isinstance(probe().finish(b""), NoMatch)
