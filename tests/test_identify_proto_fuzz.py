"""Every binary/UDP protocol parser against random bytes, truncated replies and bit flips:
no exception may escape, every answer is a Step, and every verdict is JSON-serialisable with
bounded evidence. Conversations are first led to each stage with real (captured) replies, so
the fuzzing reaches the later parsers too (after CONNACK, after 'N', after the v3 report...).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portatlas.identify.base import IdentifyInside, NoMatch, Send, StartTLS, Verdict, Wait
from portatlas.identify.protocols import (amqp, dns, ldap, memcached_udp, mongodb, mqtt, mysql,
                                          netbios_ns, ntp, postgresql, rdp, smb, snmp, ssdp, vnc)
from support.probe_talk import make

import test_identify_proto_amqp as t_amqp
import test_identify_proto_dns as t_dns
import test_identify_proto_ldap as t_ldap
import test_identify_proto_memcached_udp as t_memcached
import test_identify_proto_mongodb as t_mongodb
import test_identify_proto_mqtt as t_mqtt
import test_identify_proto_mysql as t_mysql
import test_identify_proto_ntp as t_ntp
import test_identify_proto_postgresql as t_pg
import test_identify_proto_rdp as t_rdp
import test_identify_proto_smb as t_smb
import test_identify_proto_snmp as t_snmp
import test_identify_proto_udp_extra as t_udp_extra
import test_identify_proto_vnc as t_vnc

STEPS = (Send, Wait, NoMatch, StartTLS, IdentifyInside, Verdict)


def _ids(**values):
    def setup(probe):
        for key, value in values.items():
            setattr(probe, key, value)
    return setup


# (probe class, setup, the real replies of one whole conversation, in order)
CONVERSATIONS = {
    "dns/udp": (dns.DnsUdpProbe, _ids(query_id=0x1234), [t_dns.DNSMASQ_REPLY]),
    "dns/tcp": (dns.DnsTcpProbe, _ids(query_id=0x1234), [t_dns.DNSMASQ_TCP_REPLY]),
    "ntp": (ntp.NtpProbe, _ids(transmit=t_ntp.TRANSMIT, sequence=1),
            [t_ntp.NTPSEC_MODE4, t_ntp.NTPSEC_MODE6]),
    "snmp": (snmp.SnmpProbe, _ids(message_id=0x4A69, request_id=0x1234),
             [t_snmp.NETSNMP_REPORT, t_snmp.NETSNMP_RESPONSE]),
    "memcached/udp": (memcached_udp.MemcachedUdpProbe, _ids(request_id=0x4D43),
                      [t_memcached.MEMCACHED_REPLY]),
    "mysql": (mysql.MysqlProbe, _ids(), [t_mysql.MARIADB_GREETING]),
    "postgresql": (postgresql.PostgresqlProbe, _ids(), [b"N", t_pg.LOGGED_IN]),
    "mongodb": (mongodb.MongodbProbe, _ids(request_id=1000),
                [t_mongodb.op_reply(1000, t_mongodb.IS_MASTER),
                 t_mongodb.op_msg(1001, t_mongodb.BUILD_INFO)]),
    "mqtt": (mqtt.MqttProbe, _ids(packet_id=0x1234), [t_mqtt.CONNACK, t_mqtt.SUBACK_AND_VERSION]),
    "amqp": (amqp.AmqpProbe, _ids(), [t_amqp.RABBITMQ_START]),
    "ldap": (ldap.LdapProbe, _ids(message_id=7), [t_ldap.SLAPD_ROOT_DSE]),
    "rdp": (rdp.RdpProbe, _ids(), [t_rdp.XRDP_CONFIRM]),
    "smb": (smb.SmbProbe, _ids(), [t_smb.SAMBA_NEGOTIATE]),
    "vnc": (vnc.VncProbe, _ids(), [t_vnc.TIGERVNC_BANNER, t_vnc.TIGERVNC_TYPES]),
    "netbios-ns": (netbios_ns.NetbiosNsProbe, _ids(transaction_id=0x4E42),
                   [t_udp_extra.NMBD_NODE_STATUS]),
    "ssdp": (ssdp.SsdpProbe, _ids(), [t_udp_extra.MINIUPNPD_REPLY]),
}
STAGES = [(name, stage) for name, (_, _, replies) in CONVERSATIONS.items()
          for stage in range(len(replies))]


def at_stage(name: str, stage: int):
    """A probe led through the first `stage` real replies, and the real reply expected next."""
    cls, setup, replies = CONVERSATIONS[name]
    probe = make(cls, 1)
    setup(probe)
    probe.start()
    for reply in replies[:stage]:
        step = probe.feed(reply)
        assert isinstance(step, (Send, Wait)), f"{name}: stage {stage} ended early with {step}"
    return probe, replies[stage]


def check(step) -> None:
    assert isinstance(step, STEPS), step
    if isinstance(step, Verdict):
        encoded = json.dumps(step.to_dict())
        assert len(step.evidence) <= 1200 and len(encoded) < 64_000
        assert 0.0 <= step.confidence <= 1.0
        assert step.protocol and step.protocol.isascii()
    if isinstance(step, Send):
        assert isinstance(step.data, bytes) and len(step.data) < 4096


def exercise(probe_factory, data: bytes) -> None:
    probe = probe_factory()
    check(probe.feed(data))
    check(probe_factory().finish(data))


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_real_conversations_end_in_verdicts():
    for name, (cls, setup, replies) in CONVERSATIONS.items():
        probe, _ = at_stage(name, len(replies) - 1)
        step = probe.feed(replies[-1])
        assert isinstance(step, Verdict), (name, step)
        check(step)


@pytest.mark.parametrize("name,stage", STAGES)
@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(name, stage, data):
    exercise(lambda: at_stage(name, stage)[0], data)


@pytest.mark.parametrize("name,stage", STAGES)
@FUZZ
@given(cut=st.integers(min_value=0, max_value=4096), junk=st.binary(max_size=8))
def test_truncations(name, stage, cut, junk):
    _, reply = at_stage(name, stage)
    exercise(lambda: at_stage(name, stage)[0], reply[:cut % (len(reply) + 1)] + junk)


@pytest.mark.parametrize("name,stage", STAGES)
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), min_size=1,
                      max_size=6))
def test_bit_flips(name, stage, flips):
    _, reply = at_stage(name, stage)
    mutated = bytearray(reply)
    for position, bit in flips:
        mutated[position % len(mutated)] ^= 1 << bit
    exercise(lambda: at_stage(name, stage)[0], bytes(mutated))


@pytest.mark.parametrize("name,stage", STAGES)
def test_every_prefix(name, stage):
    """Exhaustive over the real reply: each prefix (as TCP might deliver) and each single
    byte set to 0x00 and 0xff."""
    _, reply = at_stage(name, stage)
    for cut in range(len(reply) + 1):
        exercise(lambda: at_stage(name, stage)[0], reply[:cut])
    for position in range(len(reply)):
        for value in (0x00, 0xFF):
            mutated = bytearray(reply)
            mutated[position] = value
            exercise(lambda: at_stage(name, stage)[0], bytes(mutated))


def test_hostile_lengths_everywhere():
    """Length fields at their maximum must not allocate or loop: all answered at once."""
    blobs = [b"\xff" * 64, b"\x7f" + b"\xff" * 63, b"\x00" * 64, b"\x30\x84\xff\xff\xff\xff" * 8,
             b"\x01\x00\x00\xff\xff\xff\xff" + b"\x00" * 40]
    for name, stage in STAGES:
        for blob in blobs:
            exercise(lambda: at_stage(name, stage)[0], blob)
