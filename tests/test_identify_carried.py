"""Three kinds of wrong answer from issue 11, each with bytes captured from the lab's own
servers (tests/captures/), judged on the final merged verdict: the right name or none.

 - the carrier named instead of the service: an HTTP proxy or an IPP server is not `http`;
 - a reflection taken for an answer: an echo service sends back the AMQP header (and any
   module's request): that is no evidence of AMQP;
 - a behaviour taken for a product: a DNS server refusing version.bind is not "NLnet Labs
   NSD" (many servers refuse it with the same bytes).
Pure: no sockets, no root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from portatlas.identify import registry
from portatlas.identify.base import IDENTIFIED, UNIDENTIFIED, NoMatch, Send, Verdict
from portatlas.identify.merge import merge
from portatlas.identify.nmap.engine import EngineResult
from portatlas.identify.protocols.amqp import AmqpProbe
from portatlas.identify.protocols.dns import DnsTcpProbe, DnsUdpProbe
from portatlas.identify.protocols.http import HTTPProbe
from portatlas.identify.session import REFLECTED, Session
from support.probe_talk import converse, make

CAPTURES = Path(__file__).resolve().parent / "captures"
NMAP_DB = Path("/usr/share/nmap/nmap-service-probes")
PATH = str(NMAP_DB)


def _capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


# replies of the lab's servers (support.servers_lab), labelled in support/capture_corpus.py
SQUID_TO_PORTATLAS = _capture("squid-3128-portatlas-get.bin")
SQUID_TO_GETREQUEST = _capture("squid-3128-nmap-getrequest.bin")
TINYPROXY_TO_PORTATLAS = _capture("tinyproxy-8888-portatlas-get.bin")
TINYPROXY_TO_GETREQUEST = _capture("tinyproxy-8888-nmap-getrequest.bin")
CUPS_TO_PORTATLAS = _capture("cups-631-portatlas-get.bin")
CUPS_TO_GETREQUEST = _capture("cups-631-nmap-getrequest.bin")
KNOT_REFUSED_UDP = _capture("knot-1053-udp-version-bind.bin")
KNOT_REFUSED_TCP = _capture("knot-1053-tcp-version-bind.bin")
KNOT_REFUSED_OUR_UDP = _capture("knot-1053-udp-portatlas-query.bin")
KNOT_REFUSED_OUR_TCP = _capture("knot-1053-tcp-portatlas-query.bin")
INETD_ECHO_AMQP = _capture("inetd-echo-7-amqp-header.bin")


@pytest.fixture(scope="module")
def db():
    if not NMAP_DB.is_file():
        pytest.skip("needs Debian's nmap-common")
    from portatlas.identify import nmap

    return nmap.load(PATH)


def _module(cls, reply: bytes, port: int, **attrs):
    probe = make(cls, port)
    for key, value in attrs.items():
        setattr(probe, key, value)
    return converse(probe, [reply], finish=True).last


def _engine(db, transport: str, probe: str, reply: bytes) -> EngineResult:
    from portatlas.identify.nmap.matching import match_reply

    hit = match_reply(db, db.probe(transport, probe), reply)
    result = EngineResult(replies=[(probe, reply)])
    if hit is not None and not hit.weak:
        if hit.soft:
            result.soft = hit
        else:
            result.hard = hit
    return result


def _unidentified(probes: dict[str, str]) -> Verdict:
    return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0, reason="nothing recognised",
                   extra={"probes": probes, "behaviour": "binary"})


# --- the service, not its carrier ---------------------------------------------------------------
PROXIES = [("squid", SQUID_TO_PORTATLAS, SQUID_TO_GETREQUEST, 3128, "Squid"),
           ("tinyproxy", TINYPROXY_TO_PORTATLAS, TINYPROXY_TO_GETREQUEST, 8888, "tinyproxy")]


@pytest.mark.parametrize("name,ours,nmaps,port,product", PROXIES, ids=[p[0] for p in PROXIES])
def test_an_http_proxy_is_named_http_proxy_whatever_the_timing(db, name, ours, nmaps, port,
                                                               product):
    module = _module(HTTPProbe, ours, port)
    assert isinstance(module, Verdict) and module.protocol == "http-proxy", module
    assert module.extra["carrier"] == "http" and product.lower() in module.product.lower()
    # nmap's probes not answered yet (the race of issue 11): the module alone decides
    alone = merge(_module(HTTPProbe, ours, port), EngineResult(), PATH)
    assert (alone.outcome, alone.protocol) == (IDENTIFIED, "http-proxy")
    assert alone.basis["text"].startswith("portatlas http module")
    # nmap's GetRequest answered as well: still http-proxy, and the facts are kept
    both = merge(_module(HTTPProbe, ours, port), _engine(db, "tcp", "GetRequest", nmaps), PATH)
    assert both.protocol == "http-proxy" and product.lower() in both.product.lower()
    # a port on 631 or 80 changes nothing: the evidence is the reply
    assert _module(HTTPProbe, ours, 80).protocol == "http-proxy"


def test_ipp_is_named_ipp_whatever_the_timing(db):
    module = _module(HTTPProbe, CUPS_TO_PORTATLAS, 8631)
    assert (module.protocol, module.product, module.version) == ("ipp", "CUPS", "2.4")
    assert "IPP" in module.extra["carried"]
    alone = merge(_module(HTTPProbe, CUPS_TO_PORTATLAS, 631), EngineResult(), PATH)
    assert (alone.protocol, alone.product) == ("ipp", "CUPS")
    both = merge(_module(HTTPProbe, CUPS_TO_PORTATLAS, 631),
                 _engine(db, "tcp", "GetRequest", CUPS_TO_GETREQUEST), PATH)
    assert (both.protocol, both.product) == ("ipp", "CUPS")
    # and nmap alone on its own probe's reply says the same
    assert _engine(db, "tcp", "GetRequest", CUPS_TO_GETREQUEST).hard.service == "ipp"


def _http(status: str, *headers: str, body: bytes = b"") -> bytes:
    head = "".join(h + "\r\n" for h in headers)
    return (f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_the_carried_service_needs_evidence():
    cases = {
        # only a proxy asks for proxy credentials (RFC 9110)
        _http("407 Proxy Authentication Required",
              'Proxy-Authenticate: Basic realm="corp"'): "http-proxy",
        _http("200 OK", "Server: nginx/1.22.1", "Content-Type: application/ipp"): "ipp",
        # a reverse proxy or a cache serves HTTP: it stays http
        _http("200 OK", "Server: nginx/1.22.1", "Via: 1.1 varnish (Varnish/7.1)",
              "X-Cache: MISS", "Content-Type: text/plain"): "http",
        _http("502 Bad Gateway", "Server: nginx", "Content-Type: text/plain"): "http",
        _http("400 Bad Request", "Server: Apache/2.4.57 (Debian)",
              "Content-Type: text/plain"): "http",
        # a page that merely mentions IPP or a proxy is a page
        _http("200 OK", "Server: lighttpd/1.4.69", "Content-Type: text/plain",
              body=b"IPP/2.1 proxy squid"): "http",
    }
    for reply, expected in cases.items():
        verdict = _module(HTTPProbe, reply, 8080)
        assert verdict.protocol == expected, (reply, verdict)
        assert ("carrier" in verdict.extra) == (expected != "http")


def test_a_module_that_names_only_the_carrier_still_yields_to_nmap(db):
    page = _http("200 OK", "Server: Foo/1.0", "Content-Type: text/plain")
    merged = merge(_module(HTTPProbe, page, 631), _engine(db, "tcp", "GetRequest",
                                                         CUPS_TO_GETREQUEST), PATH)
    assert (merged.protocol, merged.extra["carrier"]) == ("ipp", "http")


# --- a reflection is not an answer ----------------------------------------------------------------
def test_the_echoed_amqp_header_is_not_amqp():
    step = _module(AmqpProbe, INETD_ECHO_AMQP, 7)
    assert isinstance(step, NoMatch) and step.reason == REFLECTED
    merged = merge(_unidentified({"amqp": step.reason}), EngineResult(), PATH)
    assert merged.outcome == UNIDENTIFIED  # one reflection: not named, not amqp


def _first_sends(transport: str):
    for cls in registry.probes(transport):
        probe = make(cls, 7)
        step = probe.start()
        if isinstance(step, Send) and step.data:
            yield cls, step.data


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_no_module_takes_its_own_request_sent_back_for_its_protocol(transport):
    reflected = {}
    for cls, _ in _first_sends(transport):
        for whole in (True, False):  # all of it, or a prefix
            probe = make(cls, 7)
            session = Session(probe, transport)
            assert isinstance(session.action, Send)
            sent = session.action.data  # (this probe's own: some pick a random id)
            reply = sent if whole else sent[:max(4, len(sent) // 2)]
            session.sent()
            session.received(reply)
            if not session.done:
                session.quiet()
                if not session.done and isinstance(session.action, Send):  # a UDP fallback
                    session.sent()
                    session.quiet()
            result = session.result
            assert not (isinstance(result, Verdict) and result.protocol == cls.name), (
                cls.name, reply, result)
            if reply == sent:
                assert isinstance(result, NoMatch) and result.reason == REFLECTED, cls.name
                assert session.reflected >= 1
        reflected[cls.name] = REFLECTED
    assert len(reflected) >= (10 if transport == "tcp" else 5)
    # every module's request came back: the merged verdict is echo, never a module's name
    merged = merge(_unidentified(reflected), EngineResult(), PATH)
    assert (merged.outcome, merged.protocol) == (IDENTIFIED, "echo")
    assert merged.basis["by"] == "portatlas" and "unchanged" in merged.reason


def test_no_nmap_line_takes_its_own_probe_sent_back_for_a_service(db):
    from portatlas.identify.nmap.matching import match_reply

    named = []
    for probe in db.probes:
        if not probe.payload:
            continue
        hit = match_reply(db, probe, probe.payload)
        if hit is not None and hit.service != "echo":
            named.append((probe.name, hit.service, hit.line))
    assert named == []


def test_a_real_answer_that_starts_like_the_request_still_counts():
    # a short prefix (fewer than MIN_REFLECTION bytes) is a real reply's first bytes
    step = _module(AmqpProbe, b"AMQP\x00\x01\x00\x00", 5672)
    assert isinstance(step, Verdict) and step.protocol == "amqp"  # AMQP 1.0 header


# --- a behaviour is not a product ---------------------------------------------------------------
def test_a_refused_version_bind_names_no_product(db):
    for cls, reply, nmap_probe, nmap_reply, transport in (
            (DnsUdpProbe, KNOT_REFUSED_OUR_UDP, "DNSVersionBindReq", KNOT_REFUSED_UDP, "udp"),
            (DnsTcpProbe, KNOT_REFUSED_OUR_TCP, "DNSVersionBindReqTCP", KNOT_REFUSED_TCP, "tcp")):
        module = _module(cls, reply, 1053, query_id=6)
        assert isinstance(module, Verdict) and module.protocol == "dns"
        assert module.extra["rcode"] == "REFUSED" and module.product is None
        engine = _engine(db, transport, nmap_probe, nmap_reply)
        assert engine.hard.service == "domain" and engine.hard.product is None
        assert engine.hard.unnamed_product  # what the line would have said, kept apart
        merged = merge(module, engine, PATH)
        assert (merged.protocol, merged.product, merged.version) == ("dns", None, None)
        assert "cpe" not in merged.extra
        # nmap alone (the module cut short): the service, still no product
        alone = merge(None, _engine(db, transport, nmap_probe, nmap_reply), PATH)
        assert (alone.protocol, alone.product) == ("dns", None)


def test_a_product_the_reply_names_is_kept(db):
    from portatlas.identify.nmap.matching import match_reply

    hit = match_reply(db, db.probe("tcp", "GetRequest"), SQUID_TO_GETREQUEST)
    assert (hit.service, hit.product) == ("http-proxy", "Squid http proxy")
    from support import capture_corpus

    dnsmasq = capture_corpus.load()["DNSMASQ_REPLY"]
    hit = match_reply(db, db.probe("udp", "DNSVersionBindReq"), dnsmasq)
    assert hit.product and "dnsmasq" in hit.product.lower()
