"""nmap's service-probe database, read by portatlas: the whole installed file, nmap's rules,
and no wrong name on any captured reply. Pure: no sockets, no root.

The file is Debian's nmap-common (/usr/share/nmap/nmap-service-probes, installed by
.ci/apt/base.txt), read at run time; these tests count it independently with plain line
matching and compare.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from portatlas.errors import DataError
from portatlas.identify import nmap
from portatlas.identify.nmap.db import parse, parse_match, unescape_payload, NmapProbe
from portatlas.identify.nmap.matching import applicable, match_reply, possible_services, substitute
from portatlas.identify.nmap.pcre import differences, literal_prefix, required_literal
from support import capture_corpus

PATH = Path(nmap.DEFAULT_PATH)
pytestmark = pytest.mark.skipif(not PATH.is_file(), reason="needs Debian's nmap-common")


@pytest.fixture(scope="module")
def db():
    return nmap.load(str(PATH))


def _grep_count(prefix: str) -> int:
    """An independent count: lines of the file that start with `prefix` (grep -c '^prefix')."""
    with open(PATH, encoding="latin-1") as f:
        return sum(1 for line in f if line.startswith(prefix))


# --- the whole file -----------------------------------------------------------------------------
def test_the_whole_file_parses_with_every_line_counted(db):
    counts = db.counts()
    assert counts["probes"] == _grep_count("Probe ")
    assert counts["match"] == _grep_count("match ")
    assert counts["softmatch"] == _grep_count("softmatch ")
    assert counts["match"] + counts["softmatch"] >= 11000  # Debian 12: 11,721 + 196
    assert counts["tcp_probes"] == _grep_count("Probe TCP ")
    assert counts["udp_probes"] == _grep_count("Probe UDP ")
    assert sum(1 for p in db.probes if p.fallback) == _grep_count("fallback ")
    assert sum(1 for p in db.probes if p.sslports) == _grep_count("sslports ")
    assert db.exclude["tcp"] >= {9100, 9107}
    db.validate()  # every line's version fields parse too
    assert sum(len(m.cpes) for m in db.match_lines) >= _grep_count("match ") // 2


def test_every_match_line_compiles_and_means_the_same_as_in_pcre(db):
    skipped = []
    for line in db.match_lines:
        try:
            line.regex()
        except re.error as exc:  # pragma: no cover - the assertion below reports it
            skipped.append((line.line, str(exc)))
    assert skipped == []
    assert [(m.line, differences(m.pattern.decode("latin-1"))) for m in db.match_lines
            if differences(m.pattern.decode("latin-1"))] == []


def test_the_audit_sees_constructs_whose_meaning_differs():
    assert differences(r"^foo\Z") == ["\\Z"]
    assert differences(r"[[:alpha:]]+") != []
    assert differences(r"a{,3}") == ["{,3"]
    assert differences(r"^\\Z") == []  # an escaped backslash, then Z


def test_a_malformed_line_is_an_error_with_its_line_number(tmp_path):
    text = "Probe TCP NULL q||\nmatch ftp m|^220|\nmatch broken m|^unterminated\n"
    with pytest.raises(DataError, match=r":3: cannot parse"):
        parse(text, "probes")
    with pytest.raises(DataError, match=r":2: .*unknown directive"):
        parse("Probe TCP NULL q||\nfrobnicate 1\n", "probes")
    with pytest.raises(DataError, match="falls back to unknown"):
        parse("Probe TCP NULL q||\nProbe TCP A q|x|\nfallback Nope\n", "probes")
    bad_fields = parse("Probe TCP NULL q||\nmatch ftp m|^220| p/x/ z/y/\n", "probes")
    with pytest.raises(DataError, match="line 2 .*unknown version field"):
        bad_fields.validate()
    with pytest.raises(DataError, match="cannot read"):
        nmap.load(str(tmp_path / "absent"))


def test_probe_payload_escapes(db):
    assert unescape_payload(r"GET / HTTP/1.0\r\n\r\n") == b"GET / HTTP/1.0\r\n\r\n"
    assert unescape_payload(r"\0\x01\xFFa\\b\t\|") == b"\x00\x01\xffa\\b\t|"
    assert db.probe("tcp", "GetRequest").payload == b"GET / HTTP/1.0\r\n\r\n"
    assert db.probe("tcp", "NULL").payload == b""
    assert db.probe("udp", "DNSVersionBindReq").payload.endswith(b"\x07version\x04bind\0\0\x10\0\x03")


# --- templates ------------------------------------------------------------------------------------
def _line(text: str):
    probe = NmapProbe("tcp", "T", b"", 1, 0)
    return parse_match(text, 7, probe)


def test_version_templates_and_cpe():
    line = _line(r'match x m|^v(\d)\.(\d+)_(\w+) ([\x00-\xff]{2})(.)|s p/Prod $1/ '
                 r'v/$SUBST(3,"_",".")/ i/ver $1.$2 n=$I(4,">") le=$I(4,"<")/ h/$P(5)/ '
                 r'cpe:/a:vendor:prod:$1.$2/a')
    found = line.regex().search(b"v2.10_a_b \x01\x02\x07")
    from portatlas.identify.nmap.matching import expand
    fields, cpes = expand(line, found)
    assert fields == {"product": "Prod 2", "version": "a.b", "info": "ver 2.10 n=258 le=513"}
    assert cpes == ["cpe:/a:vendor:prod:2.10"]  # $P of a control byte is empty: no hostname
    assert substitute("$1", line.regex().search(b"v1.2_x \x00\x00\x1b")) == "1"


def test_dollar_one_never_puts_control_bytes_on_a_terminal():
    line = _line(r"match x m|^(.*)$|s p/$1/")
    assert substitute("$1", line.regex().search(b"a\x1b[31mb")) == "a\\x1b[31mb"
    assert substitute("$P(1)", line.regex().search(b"a\x1b[31mb")) == "a[31mb"


# --- rarity, intensity, ports, sslports, fallback, Exclude ------------------------------------
def test_rarity_and_intensity(db):
    all9 = nmap.plan(db, "tcp", 40000, intensity=9)
    assert {p.name for p in all9} == {p.name for p in db.probes
                                      if p.transport == "tcp" and p.name != "NULL"}
    low = nmap.plan(db, "tcp", 40000, intensity=2)
    assert low and all(p.rarity <= 2 for p in low)
    assert [p.rarity for p in nmap.plan(db, "tcp", 40000)] == \
        sorted(p.rarity for p in nmap.plan(db, "tcp", 40000))
    assert nmap.plan(db, "tcp", 40000, intensity=0) == []


def test_ports_hint_first_whatever_the_rarity(db):
    epmd = db.probe("tcp", "epmd")
    assert epmd.rarity > 7 and 4369 in epmd.ports
    order = nmap.plan(db, "tcp", 4369)
    assert order[0].name == "epmd" or "epmd" in [p.name for p in order if 4369 in p.ports]
    assert "epmd" not in [p.name for p in nmap.plan(db, "tcp", 14369)]  # rarity 8 > 7
    assert "epmd" in [p.name for p in nmap.plan(db, "tcp", 14369, intensity=9)]


def test_sslports_apply_inside_tls(db):
    inside = nmap.plan(db, "tcp", 443, tls=True)
    hinted = [p for p in inside if 443 in p.sslports]
    assert hinted and inside[:len(hinted)] == hinted
    assert [p.name for p in nmap.plan(db, "tcp", 443)][:1] != ["tor-versions"]


def test_fallback_chains(db):
    chain = [p.name for p in applicable(db, db.probe("tcp", "HTTPOptions"))]
    assert chain == ["HTTPOptions", "GetRequest", "NULL"]
    assert [p.name for p in applicable(db, db.probe("tcp", "GenericLines"))] == \
        ["GenericLines", "NULL"]
    assert [p.key for p in applicable(db, db.probe("udp", "DNSVersionBindReq"))] == \
        ["udp/DNSVersionBindReq"]  # UDP: never NULL
    # the one cross-transport fallback: UDP lines judge the TCP reply without its length
    hit = match_reply(db, db.probe("tcp", "DNSVersionBindReqTCP"),
                      capture_corpus.load()["DNSMASQ_TCP_REPLY"])
    assert hit is not None and hit.service == "domain"


def test_a_fallback_line_is_reported_as_such(db):
    nginx = capture_corpus.load()["NGINX_200"]
    hit = match_reply(db, db.probe("tcp", "HTTPOptions"), nginx)
    assert hit.service == "http" and hit.line_probe == "GetRequest" and hit.probe == "HTTPOptions"


def test_softmatch_narrows_later_probes(db):
    narrowed = nmap.plan(db, "tcp", 40000, softmatch="ftp")
    assert narrowed and all("ftp" in possible_services(db, p) for p in narrowed)
    assert len(narrowed) < len(nmap.plan(db, "tcp", 40000))


def test_excluded_ports_get_no_probes(db):
    assert nmap.plan(db, "tcp", 9100) == []
    assert nmap.plan(db, "udp", 9100) != []


def test_soft_match_then_hard_match(db):
    null = db.probe("tcp", "NULL")
    soft = match_reply(db, null, b"220 mail.example.org ESMTP something new\r\n")
    assert soft is not None and soft.soft and soft.service == "smtp"
    hard = match_reply(db, null, capture_corpus.load()["EXIM_GREETING"])
    assert not hard.soft and (hard.service, hard.product) == ("smtp", "Exim smtpd")


# --- the own-probe rule: the wrong names of the old --nmap-probes, reproduced ----------------
def _old_any_line(db, data: bytes):
    """What --nmap-probes used to do: every hard line of the file on any bytes received."""
    return next((m for m in db.match_lines if not m.soft and m.regex().search(data)), None)


def test_a_udp_probes_line_no_longer_fires_on_a_tcp_greeting(db):
    greeting = capture_corpus.load()["DOVECOT_IMAP"]
    old = _old_any_line(db, greeting)
    assert old.transport == "udp" and old.service == "ventrilo"  # the old wrong name
    for name in ("NULL", "GetRequest", "GenericLines", "Help", "mongodb"):
        probe = db.probe("tcp", name)
        hit = match_reply(db, probe, greeting, greeting_len=len(greeting))
        assert hit is None or hit.soft or hit.weak or hit.service == "imap", name
    # a UDP probe's lines judge replies to that UDP probe only
    assert all(p.transport == "udp" for p in applicable(db, db.probe("udp", "Ventrilo")))


def test_a_mongodb_probes_line_no_longer_fires_on_another_greeting(db):
    greeting = b"220 files.example ready, server version 4.2.1 (build 77)\r\n"  # made
    old = _old_any_line(db, greeting)
    assert old is not None and old.service == "mongodb" and old.probe == "mongodb"
    mongo = db.probe("tcp", "mongodb")
    # the mongodb probe's reply from this server starts with its greeting: not its answer
    assert match_reply(db, mongo, greeting + b"500 what?\r\n", greeting_len=len(greeting)) \
        is None or match_reply(db, mongo, greeting + b"500 what?\r\n",
                               greeting_len=len(greeting)).service != "mongodb"
    # and the same line still names real MongoDB answers to its own probe
    real = b"\xa0\0\0\0" + b"\0" * 12 + b"\x02version\0\x06\0\0\x004.4.6\0"
    assert match_reply(db, mongo, real).service == "mongodb"


def test_any_264_bytes_are_not_landesk(db):
    import random

    noise = random.Random(57).randbytes(264)
    hit = match_reply(db, db.probe("tcp", "GenericLines"), noise)
    assert hit is None or hit.weak  # '^(?!HTTP|RTSP|SIP).{264}$' proves nothing


# --- no wrong name on any captured reply ----------------------------------------------------------
def test_no_wrong_name_on_any_captured_reply(db):
    corpus = capture_corpus.load()
    unlabelled = sorted(set(corpus) - set(capture_corpus.TABLE))
    assert unlabelled == [], "label new captured bytes in tests/support/capture_corpus.py"
    wrong = []
    for name, data in corpus.items():
        via, truth = capture_corpus.TABLE[name]
        if via == capture_corpus.OWN:
            continue  # no nmap probe sends what elicited these bytes: nmap never sees them
        if via == capture_corpus.GREETING:
            # a greeting opens the reply to every TCP probe, but only NULL's lines may judge
            # it (match_reply's greeting_len): judging it as NULL's reply covers them all
            judged = [(db.probe("tcp", "NULL"), 0)]
        else:
            judged = [(db.probe(via[0], n), 0) for n in via[1:]]
        for probe, glen in judged:
            hit = match_reply(db, probe, data, greeting_len=glen)
            if hit is not None and not hit.weak and hit.service not in truth:
                wrong.append((name, probe.name, hit.service, hit.line))
    assert wrong == []


def test_the_prefilters_never_change_a_result(db):
    """A line skipped by its literal prefix or required run would not have matched."""
    corpus = list(capture_corpus.load().values())
    for line in db.match_lines:
        regex = line.regex()
        for data in corpus:
            if line.search(data) is None and regex.search(data) is not None:
                pytest.fail(f"line {line.line}: prefilter {line.prefix!r}/{line.needle!r} "
                            f"skipped a match on {data[:40]!r}")


def test_literal_extraction():
    assert literal_prefix(rb"^SSH-([\d.]+)-", 0) == b"SSH-"
    assert literal_prefix(rb"^HTTP/1\.[01] ", 0) == b"HTTP/1."
    assert literal_prefix(rb"^abc?d", 0) == b"ab"
    assert literal_prefix(rb"^a|b", 0) == b""
    assert literal_prefix(rb"x^", 0) == b""
    assert required_literal(rb"^HTTP/1\.[01] \d+ .*\r\nServer: Apache/") == b"\r\nServer: Apache/"
    assert required_literal(rb"x(?:abc)?yz") == b"yz"


def test_the_first_byte_index_never_drops_a_matching_line(db):
    for line in db.match_lines:
        if line.first >= 0 and line.prefix:
            assert line.prefix[0] == line.first, line.line
    corpus = list(capture_corpus.load().values()) + [b"", b"\x00", b"hello"]
    for probe in db.probes:
        for data in corpus:
            kept = {id(m) for m in probe.candidates(data)}
            for line in probe.matches:
                if id(line) not in kept:
                    assert line.regex().search(data) is None, (line.line, data[:30])
