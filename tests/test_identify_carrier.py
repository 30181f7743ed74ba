"""Under time pressure the engine answers less, never wrong (issue 11), without root or
sockets: in-memory servers behind the driver's connection interface, captured bytes.

 - the carrier is never the service: TLS completed with nothing identified inside is
   open-unidentified with the TLS facts, whether the TLS module found it or nmap's
   SSLSessionReq line (which names only `ssl`), and whether the port's time ran out or not;
 - an nmap hard hit on a reply that is still growing waits for the rest (memcached's two
   ERROR lines in two segments are memcached, not AChat's `^ERROR\\r\\n$`);
 - a port waiting for a concurrency slot in a batch does not spend its own time;
 - inside TLS, HTTP starts at once when nothing else is hinted.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest

from portatlas.identify import (IDENTIFIED, UNIDENTIFIED, Options, identify_async,
                                identify_many_async)
from portatlas.identify import driver, nmap
from portatlas.identify.base import Verdict
from portatlas.identify.merge import merge, not_the_carrier

needs_nmap = pytest.mark.skipif(nmap.find_db() is None, reason="needs Debian's nmap-common")

HOST = "198.18.0.2"  # never contacted: every connection below is in memory


# --- in-memory servers -------------------------------------------------------------------------
class Segments:
    """A plain server: answer(received_so_far) -> [(delay, bytes), ...] sent back as separate
    segments after `delay` seconds (each recv returns at most one segment); None = silent."""

    def __init__(self, answer=lambda got: None, greeting: bytes = b"") -> None:
        self.answer = answer
        self.received = bytearray()
        self.queue: list[tuple[float, bytes]] = [(time.monotonic(), greeting)] if greeting else []
        self.closed = False

    async def send(self, data: bytes) -> None:
        self.received += data
        now = time.monotonic()
        for delay, chunk in self.answer(bytes(self.received)) or ():
            self.queue.append((now + delay, chunk))

    async def recv(self, limit: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            if self.queue and self.queue[0][0] <= time.monotonic():
                due, chunk = self.queue.pop(0)
                if len(chunk) > limit:
                    self.queue.insert(0, (due, chunk[limit:]))
                return chunk[:limit]
            if time.monotonic() >= end:
                raise asyncio.TimeoutError
            await asyncio.sleep(0.002)

    def close(self) -> None:
        self.closed = True


class MemoryTLS:
    """A TLS server in memory (a server-side SSLObject): the handshake is real, and after it
    `app(data)` answers application bytes (None: it stays silent)."""

    def __init__(self, context: ssl.SSLContext, app=lambda data: None) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.app = app
        self.out = bytearray()
        self.hangup = False
        self.closed = False

    async def send(self, data: bytes) -> None:
        self.incoming.write(data)
        try:
            self.obj.do_handshake()
            while True:
                got = self.obj.read(65536)
                if not got:
                    break
                reply = self.app(got)
                if reply:
                    self.obj.write(reply)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:  # not TLS, or an old version: the alert goes out, then a close
            self.hangup = True
        self.out += self.outgoing.read()

    async def recv(self, limit: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while not self.out:
            if self.hangup:
                return b""
            if time.monotonic() >= end:
                raise asyncio.TimeoutError
            await asyncio.sleep(0.002)
        chunk, self.out = bytes(self.out[:limit]), self.out[limit:]
        return chunk

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def server_context(tmp_path_factory) -> ssl.SSLContext:
    pytest.importorskip("cryptography")
    from support.servers_text import make_cert

    cert, key = make_cert(tmp_path_factory.mktemp("memory-tls"), cn="inside.portatlas.test",
                          sans=("inside.portatlas.test",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@pytest.fixture
def serve(monkeypatch):
    """serve(factory): every connection the driver and nmap's engine open gets factory()."""
    made: list = []

    def install(factory) -> list:
        async def fake_open(cls, host, port, timeout):
            assert host == HOST
            conn = factory()
            made.append(conn)
            return conn

        monkeypatch.setattr(driver.TCPConnection, "open", classmethod(fake_open))
        return made

    return install


def run(coro):
    return asyncio.run(coro)


FAST = dict(registered=(), banner_wait=0.1, connect_timeout=0.5)


# --- the carrier is never the service ------------------------------------------------------------
def _tls_fallback() -> Verdict:
    info = {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "alpn": None,
            "certificate": {"subject": "CN=inside.portatlas.test",
                            "subject_cn": "inside.portatlas.test"}}
    return Verdict("tls", None, "TLSv1.3", {"inside": {"behaviour": "silent",
                                                       "reason": "never sent a byte"}},
                   0.9, "TLS handshake: TLSv1.3 TLS_AES_256_GCM_SHA384", tls=info)


def test_tls_with_nothing_inside_is_unidentified_with_the_tls_evidence():
    v = not_the_carrier(_tls_fallback())
    assert (v.outcome, v.protocol, v.service, v.confidence) == (UNIDENTIFIED, None, None, 0.0)
    assert v.tls["certificate"]["subject_cn"] == "inside.portatlas.test"  # the facts stay
    assert v.reason.startswith("TLS handshake completed (TLSv1.3, certificate "
                               "CN=inside.portatlas.test)")
    assert "the service inside TLS was not identified: never sent a byte" in v.reason
    assert v.extra["carrier"] == "tls" and v.extra["behaviour"] == "tls-inside-unknown"
    assert v.extra["inside"]["identified"] is False
    assert v.basis["by"] == "none" and v.basis["carrier"] == "tls"


def test_the_reason_says_when_time_ran_out():
    v = not_the_carrier(_tls_fallback(), "the port's time limit of 5s was spent first")
    assert v.reason.endswith("was not identified: the port's time limit of 5s was spent first")


def test_a_service_inside_tls_keeps_its_name():
    v = Verdict("http", "nginx", tls={"version": "TLSv1.3"})
    assert not_the_carrier(v) is v


@needs_nmap
def test_nmaps_ssl_line_on_captured_bytes_is_not_a_name():
    """svnserve behind stunnel answered SSLSessionReq (SSLv3) with this alert; nmap's line
    names `ssl`, the carrier: with nothing found inside, no name."""
    from portatlas.identify.nmap.engine import EngineResult

    db = nmap.load(nmap.find_db())
    reply = b"\x15\x03\x00\x00\x02\x02("
    hit = nmap.match_reply(db, db.probe("tcp", "SSLSessionReq"), reply)
    assert hit is not None and hit.service == "ssl" and not hit.soft
    merged = merge(None, EngineResult(hard=hit, replies=[("SSLSessionReq", reply)]), "f")
    assert merged.protocol == "tls"  # merge names what nmap said...
    v = not_the_carrier(merged)      # ...and the final rule takes the carrier's name away
    assert v.outcome == UNIDENTIFIED and v.protocol is None
    assert v.reason.startswith("answers nmap's SSLSessionReq probe with a TLS record "
                               f"(line {hit.line})")
    assert v.extra["nmap_carrier"]["line"] == hit.line and "nmap" not in v.extra


@pytest.mark.parametrize("use_nmap", [False, pytest.param(True, marks=needs_nmap)])
def test_a_silent_service_inside_tls_gets_no_name(serve, server_context, use_nmap):
    """A real TLS handshake (in memory), then silence: the TLS module's fallback and, with
    nmap, SSLSessionReq's `ssl` line both name only the carrier: open-unidentified."""
    serve(lambda: MemoryTLS(server_context))
    v = run(identify_async(HOST, 4443, timeout=2.5, probe_timeout=0.4, nmap=use_nmap, **FAST))
    assert v.outcome == UNIDENTIFIED and v.protocol is None and v.service is None, v.to_dict()
    assert v.tls and v.tls["certificate"]["subject_cn"] == "inside.portatlas.test"
    assert "TLS handshake completed" in v.reason and "inside TLS was not identified" in v.reason
    assert v.extra["carrier"] == "tls"


@pytest.mark.parametrize("use_nmap", [False, pytest.param(True, marks=needs_nmap)])
def test_time_running_out_inside_tls_gives_no_wrong_name(serve, server_context, use_nmap):
    """A service inside TLS that has not answered when the port's (tight) time ends: the answer
    is 'TLS, the inside unknown because the time was spent', never `tls`."""
    serve(lambda: MemoryTLS(server_context))
    v = run(identify_async(HOST, 443, timeout=1.0, probe_timeout=0.3, nmap=use_nmap, **FAST))
    assert v.outcome == UNIDENTIFIED and v.protocol is None, v.to_dict()
    assert "time limit of 1s was spent first" in v.reason, v.reason
    assert v.tls is not None and v.extra["carrier"] == "tls"


def test_https_inside_memory_tls_is_named(serve, server_context):
    """The other side of the rule: when HTTP answers inside, the port is HTTPS - the inner
    GET starts at once (no banner wait first)."""
    def http(data: bytes) -> bytes | None:
        if data.startswith(b"GET ") and b"\r\n\r\n" in data:
            return b"HTTP/1.1 200 OK\r\nServer: memory/1.0\r\nContent-Length: 0\r\n\r\n"
        return None

    serve(lambda: MemoryTLS(server_context, http))
    v = run(identify_async(HOST, 4443, timeout=3.0, probe_timeout=0.5, nmap=False,
                           **{**FAST, "banner_wait": 1.0}))
    assert (v.outcome, v.protocol, v.service, v.product) == (IDENTIFIED, "http", "https",
                                                             "memory"), v.to_dict()
    assert v.elapsed < 1.0  # the 1 s inner banner wait was not spent before the GET


# --- a hard hit waits for the whole reply ----------------------------------------------------------
def _nmap_only(port: int, probe: str):
    """nmap's engine on the in-memory server, sending only `probe` (3 s in all)."""
    from portatlas.identify.nmap.engine import EngineSettings, TCPEngine

    db = nmap.load(nmap.find_db())

    async def main():
        engine = TCPEngine(db, HOST, port, EngineSettings(probe_timeout=1.0),
                           time.monotonic() + 3)
        return await engine.only((probe,))

    return run(main())


@needs_nmap
def test_memcached_error_lines_in_two_segments_are_memcached_not_achat(serve):
    """GenericLines (two empty lines) gets memcached's ERROR twice, in two segments: the first
    alone matches AChat's `^ERROR\\r\\n$`, both memcached's line."""
    def memcached(got: bytes):
        if got == b"\r\n\r\n":
            return [(0.0, b"ERROR\r\n"), (0.01, b"ERROR\r\n")]
        return None

    serve(lambda: Segments(memcached))
    result = _nmap_only(4000, "GenericLines")
    assert result.hard is not None and result.hard.service == "memcached", result.to_dict()


@needs_nmap
def test_a_repeated_packet_keeps_the_first_match(serve):
    """OpenVPN repeats its reset packet; nmap's `$`-anchored line matches one packet: the
    hit on the first one stands when the longer reply matches nothing."""
    packet = (b"\x00\x1a@\xc6\xea\x91/\x99\x19a\x0e\x01\x00\x00\x00\x00"
              b"7\xa5&\x08\xa2\x1b\xa0\xb1\x00\x00\x00\x00")  # captured in the lab
    serve(lambda: Segments(lambda got: [(0.0, packet), (0.01, packet)]))
    result = _nmap_only(1194, "OpenVPN")
    assert result.hard is not None and result.hard.service == "openvpn", result.to_dict()


# --- scheduling ------------------------------------------------------------------------------------
def test_a_port_waiting_for_its_slot_keeps_its_own_time(serve):
    """Three silent ports, one slot: each gets its whole time budget (before, the third one's
    clock ran while it waited, and it was cut before its first probe)."""
    made = serve(lambda: Segments())
    batch = run(identify_many_async([(HOST, p, "tcp") for p in (7001, 7002, 7003)],
                                    concurrency=1, timeout=0.6, probe_timeout=0.2,
                                    nmap=False, **FAST))
    for v in batch.results:
        assert v.outcome == UNIDENTIFIED and v.extra["behaviour"] == "silent", v.to_dict()
        assert v.elapsed >= 0.5 and v.extra["connections"] >= 2, v.to_dict()
    assert len(made) >= 6 and batch.elapsed >= 1.5


def test_inside_tls_http_is_favoured_when_nothing_is_hinted():
    from portatlas.identify import registry
    from portatlas.identify.base import ProbeContext
    from portatlas.identify.schedule import Schedule

    order = registry.ordered("tcp", 3692, ())
    ctx = lambda: ProbeContext(HOST, 3692)  # noqa: E731
    assert Schedule(order, 3692, (), ctx).speculative() is None
    sched = Schedule([c for c in order if c.name != "tls"], 3692, (), ctx,
                     favoured=driver.INSIDE_TLS_FAVOURED)
    assert sched.speculative().name == "http"
    # a real hint still comes first: the registry names imaps for 993
    hinted = Schedule(registry.ordered("tcp", 993, ("imaps",)), 993, ("imaps",), ctx,
                      favoured=driver.INSIDE_TLS_FAVOURED)
    assert hinted.order[0].name != "http"
