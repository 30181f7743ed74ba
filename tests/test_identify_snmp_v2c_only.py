"""An SNMP agent that ignores SNMPv3 and answers only v1/v2c communities is still found: the
UDP driver lets a probe send its fallback request once after silence.

No Debian agent can be configured to drop v3 discovery, so the agent here is a few lines of
Python that decodes a v2c GetRequest and answers with a GetResponse carrying sysDescr.
"""

from __future__ import annotations

import sys

import pytest

from support.netns import Netns, available
from support.nsthread import call_in

pytestmark = [pytest.mark.netns, pytest.mark.skipif(not available(), reason="needs root and ip netns")]

AGENT = r'''
import socket, sys
sys.path.insert(0, sys.argv[1])
from portatlas.identify.protocols import _ber as ber
from portatlas.identify.protocols._wire import Reader
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 161))
for _ in range(300):  # bounded: at most 300 datagrams (nmap's UDP probes come too), then exit
    data, peer = sock.recvfrom(4096)
    try:  # other probes' datagrams (DNS, NTP, ...) are not SNMP: ignore them like an agent would
        msg = ber.expect(Reader(data), ber.SEQUENCE)
        if ber.read_integer(msg) != 1:      # version 1 = v2c; v3 (3) is silently dropped
            continue
        community = ber.read_octets(msg)
        tag, pdu = ber.read_tlv(msg)
        request_id = ber.read_integer(pdu)
    except Exception:
        continue
    descr = ber.sequence(ber.oid("1.3.6.1.2.1.1.1.0"), ber.octets(b"Linux v2c-only agent"))
    reply_pdu = ber.sequence(ber.integer(request_id), ber.integer(0), ber.integer(0),
                             ber.sequence(descr), tag=0xA2)
    sock.sendto(ber.sequence(ber.integer(1), ber.octets(community), reply_pdu), peer)
'''


def test_v2c_only_agent_is_identified(atlas_db):
    from portatlas.identify import Options, identify_many

    src = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src")
    with Netns("pa-snmp") as ns:
        ns.popen([sys.executable, "-c", AGENT, src])
        ns.run([sys.executable, "-c", "import time; time.sleep(0.5)"])
        batch = call_in(ns.name, identify_many, [("127.0.0.1", 161, "udp")],
                        options=Options(timeout=8), deadline=20)
    (verdict,) = batch.results
    assert verdict.outcome == "identified", verdict.to_dict()
    assert verdict.protocol == "snmp"
    assert verdict.extra["versions"] == ["v2c"]
    assert verdict.extra["sys_descr"] == "Linux v2c-only agent"
