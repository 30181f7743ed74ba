"""One verdict from a portatlas module and nmap's match lines (identify/merge.py). Pure."""

from __future__ import annotations

from portatlas.identify.base import IDENTIFIED, UNIDENTIFIED, Verdict
from portatlas.identify.merge import MIN_NAMED, merge
from portatlas.identify.nmap.engine import EngineResult
from portatlas.identify.nmap.matching import Hit

PATH = "/usr/share/nmap/nmap-service-probes"


def hit(service, soft=False, probe="GetRequest", line=100, weak=False, **fields):
    return Hit(service, soft, probe, line, probe, "tcp", dict(fields),
               [f"cpe:/a:x:{service}"], weak=weak)


def engine(hard=None, soft=None, weak=None):
    return EngineResult(hard=hard, soft=soft, weak=weak)


def module(protocol, confidence=1.0, product=None, **extra):
    return Verdict(protocol, product, None, dict(extra), confidence)


def unidentified(**extra):
    return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0, reason="sends text",
                   extra=dict(extra))


def test_a_parsed_exchange_beats_a_regular_expression():
    v = merge(module("ssh", product="OpenSSH"), engine(hard=hit("telnet")), PATH)
    assert (v.protocol, v.product) == ("ssh", "OpenSSH")
    assert v.extra["nmap_disagrees"]["service"] == "telnet"
    assert v.basis["by"] == "portatlas" and v.basis["text"].startswith("portatlas ssh module")


def test_nmap_fills_what_the_module_left_empty():
    v = merge(module("postgresql"), engine(hard=hit(
        "pgbouncer", probe="GenericLines", product="PgBouncer", version="1.18")), PATH)
    assert (v.protocol, v.product, v.version) == ("postgresql", "PgBouncer", "1.18")
    assert v.extra["cpe"] == ["cpe:/a:x:pgbouncer"]
    assert "GenericLines" in v.basis["filled_by"]
    kept = merge(module("ssh", product="OpenSSH"), engine(hard=hit("ssh", product="Other")),
                 PATH)
    assert kept.product == "OpenSSH"  # only what was empty


def test_the_service_is_named_not_its_carrier():
    v = merge(module("http", product="CUPS", server="CUPS/2.4"),
              engine(hard=hit("ipp", product="CUPS", version="2.4")), PATH)
    assert (v.protocol, v.extra["carrier"]) == ("ipp", "http")
    assert v.basis["by"] == "nmap" and "over http" in v.basis["text"]
    proxy = merge(module("http", product="Squid"), engine(hard=hit("http-proxy", product="Squid http proxy")), PATH)
    assert proxy.protocol == "http-proxy" and proxy.extra["carrier_product"] == "Squid"


def test_a_soft_match_never_overrides():
    v = merge(module("smtp", product="Exim"), engine(soft=hit("ftp", soft=True)), PATH)
    assert v.protocol == "smtp"
    alone = merge(unidentified(), engine(soft=hit("ftp", soft=True, probe="NULL")), PATH)
    assert alone.protocol == "ftp" and alone.confidence == 0.8 and alone.basis["soft"]
    both = merge(unidentified(), engine(hard=hit("smtp"), soft=hit("ftp", soft=True)), PATH)
    assert both.protocol == "smtp" and both.confidence == 0.85


def test_nmap_names_what_no_module_knows_and_says_how():
    v = merge(unidentified(behaviour="binary"), engine(hard=hit(
        "epmd", probe="epmd", line=16019, product="Erlang Port Mapper Daemon")), PATH)
    assert (v.outcome, v.protocol, v.product) == (IDENTIFIED, "epmd", "Erlang Port Mapper Daemon")
    assert v.basis["text"] == f"nmap probe epmd, match line 16019 of {PATH}"
    assert v.extra["portatlas_behaviour"] == "binary"


def test_a_weak_line_never_names():
    v = merge(unidentified(), engine(weak=hit("landesk-rc", weak=True)), PATH)
    assert v.outcome == UNIDENTIFIED and v.extra["nmap_weak"]["service"] == "landesk-rc"
    assert "not named" in v.reason


def test_a_failed_exchange_of_the_same_family_outweighs_the_regex():
    v = merge(unidentified(probes={"tls": "TLS handshake failed (reset)"}),
              engine(hard=hit("ssl", probe="SSLSessionReq")), PATH)
    assert v.outcome == UNIDENTIFIED and v.extra["nmap_unconfirmed"]["service"] == "ssl"


def test_a_guess_below_the_threshold_is_not_a_verdict():
    v = merge(module("telnet", confidence=MIN_NAMED - 0.1), None, PATH)
    assert v.outcome == UNIDENTIFIED and v.extra["guess"]["protocol"] == "telnet"
    tentative = merge(module("http", confidence=0.7), engine(hard=hit("ipp")), PATH)
    assert tentative.protocol == "ipp"  # a hard match beats a tentative module guess
