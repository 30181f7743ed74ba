"""Identification against real servers from Debian packages, on their standard ports and on
unexpected ones (SSH on 103, HTTP on 57, SMTP on 2525, Redis on 8080...).

The servers run in one network namespace, portatlas in another, joined by a veth pair
(198.18.N.0/24): exactly a remote host. Every server starts once for the module; all ports
are identified in one batch, then each test checks its part of the answers.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from portatlas.identify import CLOSED, IDENTIFIED, describe, identify, identify_many
from support import nsthread
from support import servers_text as st
from support.netns import Netns, available, link

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not available(), reason="needs root and ip netns")]

# service -> (start function, keyword arguments)
SERVERS = {
    "ssh": (st.start_ssh, {"ports": (22, 103)}),
    "nginx": (st.start_nginx, {"http_ports": (80, 57), "https_ports": (443, 8443),
                               "h2c_ports": (8081,), "expired_port": 9443}),
    "redis": (st.start_redis, {"ports": (6379, 8080)}),
    "memcached": (st.start_memcached, {"ports": (11211, 4000)}),
    "vsftpd": (st.start_vsftpd, {"ports": (21, 2121)}),
    "exim": (st.start_exim, {"ports": (25, 2525), "smtps_port": 465}),
    "dovecot": (st.start_dovecot, {}),
    "rsync": (st.start_rsync, {"ports": (873, 1873)}),
    "ngircd": (st.start_ngircd, {"ports": (6667, 7000)}),
    "prosody": (st.start_prosody, {"port": 5222}),
    "kamailio": (st.start_kamailio, {"port": 5060}),
    "telnetd": (st.start_telnetd, {"ports": (23, 2323)}),
}

# port -> (protocol, product, service name) the answer must carry
TRUTH = {
    22: ("ssh", "OpenSSH", "ssh"), 103: ("ssh", "OpenSSH", "ssh"),
    80: ("http", "nginx", "http"), 57: ("http", "nginx", "http"),
    443: ("http", "nginx", "https"), 8443: ("http", "nginx", "https"),
    9443: ("http", "nginx", "https"), 8081: ("http", None, "http"),
    6379: ("redis", "Redis", "redis"), 8080: ("redis", "Redis", "redis"),
    11211: ("memcached", "memcached", "memcached"), 4000: ("memcached", "memcached", "memcached"),
    21: ("ftp", "vsftpd", "ftp"), 2121: ("ftp", "vsftpd", "ftp"),
    25: ("smtp", "Exim", "smtp"), 2525: ("smtp", "Exim", "smtp"), 465: ("smtp", "Exim", "smtps"),
    143: ("imap", "Dovecot", "imap"), 1430: ("imap", "Dovecot", "imap"),
    993: ("imap", "Dovecot", "imaps"),
    110: ("pop3", "Dovecot", "pop3"), 1100: ("pop3", "Dovecot", "pop3"),
    995: ("pop3", "Dovecot", "pop3s"),
    873: ("rsync", None, "rsync"), 1873: ("rsync", None, "rsync"),
    6667: ("irc", "ngIRCd", "irc"), 7000: ("irc", "ngIRCd", "irc"),
    5222: ("xmpp", None, "xmpp"), 5060: ("sip", "Kamailio", "sip"),
    23: ("telnet", None, "telnet"), 2323: ("telnet", None, "telnet"),
}
TIMEOUTS = {"timeout": 8.0, "probe_timeout": 2.0}  # generous: the CI machine is busy


@dataclass
class Lab:
    server: Netns
    client: Netns
    address: str
    results: dict[int, object]
    elapsed: float

    def identify(self, port: int, transport: str = "tcp", **kw):
        return nsthread.call_in(self.client.name, identify, self.address, port, transport,
                                **{**TIMEOUTS, **kw})


@pytest.fixture(scope="module")
def lab(tmp_path_factory, atlas):
    tmp = tmp_path_factory.mktemp("identify-servers")
    with Netns("pa-ids") as server, Netns("pa-idc") as client:
        _, address = link(client, server)
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(fn, server, tmp / name, **kw)
                       for name, (fn, kw) in SERVERS.items()]
            for future in futures:
                future.result()
        atlas.preload()  # the batch runs in another thread: no SQLite there
        start = time.monotonic()
        batch = nsthread.call_in(client.name, identify_many,
                                 [(address, p, "tcp") for p in TRUTH], atlas=atlas, **TIMEOUTS)
        elapsed = time.monotonic() - start
        yield Lab(server, client, address, {v.port: v for v in batch.results}, elapsed)


@pytest.mark.parametrize("port", sorted(TRUTH))
def test_every_service_on_every_port(lab, port):
    protocol, product, service = TRUTH[port]
    verdict = lab.results[port]
    assert verdict.outcome == IDENTIFIED, verdict.to_dict()
    assert (verdict.protocol, verdict.service) == (protocol, service), verdict.to_dict()
    if product:
        assert verdict.product == product, verdict.to_dict()
    assert verdict.confidence >= 0.8
    assert verdict.evidence  # what was received, escaped
    assert verdict.host == lab.address and verdict.port == port


def test_the_whole_batch_is_fast(lab):
    # 31 ports, several TLS handshakes each: seconds, not minutes (nmap -sV: see the benchmark)
    assert lab.elapsed < 10, lab.elapsed


def test_ssh_facts_and_the_registry_comparison(lab):
    verdict = lab.results[103]
    assert verdict.version.startswith("9.")
    assert {"ssh-ed25519", "ecdsa-sha2-nistp256"} <= set(verdict.extra["host_key_types"])
    assert verdict.registered == ["gppitnp"]
    sentence = describe(verdict)
    assert sentence.startswith("103/tcp is registered to gppitnp; what answers here is SSH, "
                               "OpenSSH 9.")


def test_http_facts(lab):
    page = lab.results[57]
    assert page.extra["title"] == "portatlas test page" and page.version == "1.22.1"
    assert page.extra["server"].startswith("nginx/")
    assert "h2c" in lab.results[8081].extra["http2"]


def test_https_certificate_and_http2(lab):
    verdict = lab.results[443]
    tls = verdict.tls
    assert tls["version"] in ("TLSv1.2", "TLSv1.3") and tls["alpn"] == "h2"
    assert verdict.extra["http2"] == "ALPN h2"
    cert = tls["certificate"]
    assert cert["subject_cn"] == "www.portatlas.test"
    assert set(cert["sans"]) == {"www.portatlas.test", "portatlas.test"}
    assert cert["self_signed"] is True and cert["expired"] is False
    old = lab.results[9443].tls["certificate"]
    assert old["expired"] is True and old["not_after"].startswith("2020-02-01")


def test_smtp_facts_and_starttls(lab):
    verdict = lab.results[2525]
    assert verdict.extra["hostname"] == "mail.portatlas.test"
    assert "PIPELINING" in verdict.extra["extensions"]
    assert verdict.extra["starttls"] is True and verdict.tls["starttls"] is True
    assert verdict.tls["certificate"]["subject_cn"] == "mail.portatlas.test"
    smtps = lab.results[465]
    assert smtps.tls["starttls"] is False and smtps.service == "smtps"


@pytest.mark.parametrize("port,key", [(143, "starttls"), (110, "stls"), (21, "auth_tls")])
def test_starttls_for_imap_pop3_ftp(lab, port, key):
    verdict = lab.results[port]
    assert verdict.extra[key] is True
    assert verdict.tls and verdict.tls["starttls"] is True
    assert verdict.tls["certificate"]["self_signed"] is True


def test_implicit_tls_mail(lab):
    for port, cn in ((993, "imap.portatlas.test"), (995, "imap.portatlas.test")):
        assert lab.results[port].tls["certificate"]["subject_cn"] == cn


def test_rsync_modules(lab):
    assert lab.results[873].extra["modules"][0]["module"] == "pub"


def test_sip_over_udp_and_closed_ports(lab):
    sip = lab.identify(5060, "udp")
    assert (sip.outcome, sip.protocol, sip.product) == (IDENTIFIED, "sip", "Kamailio")
    closed = lab.identify(9, "tcp")
    assert closed.outcome == CLOSED and closed.elapsed < 1
    closed_udp = lab.identify(9, "udp")
    assert closed_udp.outcome == CLOSED


def test_port_hint_is_not_trusted(lab):
    # registry and favoured ports say SMTP for 25 and HTTP for 8080: the answers still win
    assert lab.results[8080].registered  # http-alt
    assert lab.results[8080].protocol == "redis"
    only_wrong = lab.identify(2525, registered=("http",))
    assert only_wrong.protocol == "smtp"


def test_ipv6_target(lab):
    subnet = lab.address.split(".")[2]
    v6 = f"2001:db8:{subnet}::2"
    verdict = nsthread.call_in(lab.client.name, identify, v6, 103, **TIMEOUTS)  # sshd: both families
    assert (verdict.protocol, verdict.product) == ("ssh", "OpenSSH"), verdict.to_dict()
    assert verdict.host == v6
