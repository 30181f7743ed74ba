"""Random bytes at every registered probe (the text modules here and the binary ones of
docs/identify-binary.md alike): start/feed/finish/tls_ready never raise, always answer a
Step quickly, and every verdict is JSON-ready with bounded, printable evidence.

Conversations go through the drivers' own Session (identify/session.py): bytes accumulate
while a probe Waits, reset after it Sends. Real greetings are used as prefixes so the later states get fuzzed too.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portatlas.identify import registry
from portatlas.identify.base import (IdentifyInside, NoMatch, ProbeContext, Send, StartTLS,
                                     Verdict, Wait, escape_evidence)
from portatlas.identify.observations import Observations
from portatlas.identify.session import Session

STEPS = (Send, Wait, NoMatch, StartTLS, IdentifyInside, Verdict)
PROBES = registry.load()
CALL_LIMIT = 0.5  # seconds for one call on a few KiB: a parser that loops is a bug

PREFIXES = [b"", b"SSH-2.0-OpenSSH_9.2p1\r\n", b"220 mail.example ESMTP Exim 4.96\r\n",
            b"220 (vsFTPd 3.0.3)\r\n", b"+OK Dovecot ready.\r\n", b"* OK [CAPABILITY IMAP4rev1] x\r\n",
            b"@RSYNCD: 31.0\n", b"\xff\xfb\x01", b"HTTP/1.1 200 OK\r\n", b"+PONG\r\n$10\r\n",
            b"VERSION 1.6", b"RTSP/1.0 200 OK\r\n", b"SIP/2.0 200 OK\r\n",
            b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            b":irc.example 001 x :hi\r\n", b"220 HOST MTP ready\r\n", b"215 T\r\n"]


def check(step):
    assert isinstance(step, STEPS), step
    if isinstance(step, IdentifyInside):
        step = step.fallback
    if isinstance(step, Verdict):
        json.dumps(step.to_dict())
        assert len(step.evidence) <= 1000 and step.evidence.isprintable()
        assert 0.0 <= step.confidence <= 1.0
    return step


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    assert time.monotonic() - start < CALL_LIMIT, fn
    return check(result)


def drive(cls, chunks: list[bytes]):
    """A random conversation through the drivers' Session (identify/session.py): bytes
    accumulate while a TCP probe waits, restart after it sends; UDP datagrams one by one."""
    probe = cls(ProbeContext("198.18.0.2", 4242, cls.transport, server_name="fuzz.example"))
    session = timed_session(probe)
    for chunk in chunks:
        if session.done:
            return
        if isinstance(session.action, StartTLS):
            timed_event(session, session.tls_ready, {"version": "TLSv1.3", "alpn": None,
                                                     "certificate": None})
            continue
        if isinstance(session.action, Send):
            session.sent()
        timed_event(session, session.received, chunk)
    if not session.done:
        timed_event(session, session.quiet)
        timed(probe.tls_failed, "fuzz")


def timed_session(probe):
    start = time.monotonic()
    session = Session(probe, probe.ctx.transport)
    assert time.monotonic() - start < CALL_LIMIT, probe.start
    check(session.result if session.done else session.action)
    return session


def timed_event(session, fn, *args):
    start = time.monotonic()
    fn(*args)
    assert time.monotonic() - start < CALL_LIMIT, fn
    check(session.result if session.done else session.action)


@pytest.mark.parametrize("key", sorted(PROBES))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(PREFIXES),
       chunks=st.lists(st.binary(max_size=600), min_size=1, max_size=6))
def test_random_conversations(key, prefix, chunks):
    drive(PROBES[key], [prefix + chunks[0], *chunks[1:]])


@pytest.mark.parametrize("key", sorted(PROBES))
@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=4096))
def test_single_feed_finish_and_banner_claims(key, data):
    cls = PROBES[key]
    probe = cls(ProbeContext("2001:db8::2", 1, cls.transport))
    check(probe.start())
    timed(probe.feed, data)
    again = cls(ProbeContext("2001:db8::2", 1, cls.transport))
    again.start()
    timed(again.finish, data)
    assert isinstance(cls.claims_banner(data), bool)


@given(data=st.binary(max_size=2000), limit=st.integers(min_value=1, max_value=300))
def test_escape_evidence_is_printable_and_bounded(data, limit):
    text = escape_evidence(data, limit)
    assert text.isprintable() and "\n" not in text
    assert len(text) <= limit * 4 + 1


@given(samples=st.lists(st.binary(max_size=300), max_size=5),
       resets=st.integers(0, 5), silent=st.integers(0, 5), closed=st.integers(0, 5))
def test_behaviour_always_named(samples, resets, silent, closed):
    obs = Observations(resets=resets, silent=silent, closed_empty=closed, connects=5)
    for data in samples:
        if data:
            obs.received(data)
            obs.sample("x", data)
    kind, reason = obs.behaviour()
    assert kind in {"silent", "closes", "reset", "tarpit", "text", "binary", "tls-refused",
                    "stream", "huge-banner"} and reason
