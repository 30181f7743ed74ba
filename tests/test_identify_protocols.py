"""The text and TLS protocol modules on bytes, no sockets.

Captured: every vector marked 'real' was read from the Debian 12 server named beside it,
running inside a test network namespace (OpenSSH 9.2p1, nginx 1.22.1, Exim 4.96, vsftpd
3.0.3, Dovecot 2.3.19, Redis 7.0.15, memcached 1.6.18, rsync 3.2.7, ngIRCd 26.1, Prosody
0.12.3, Kamailio 5.6.3, GNU inetutils telnetd 2.4), trimmed by hand where long (dates,
INFO fields). Vectors marked 'made' follow the protocol documents (RTSP, MTP, Postfix...).
"""

from __future__ import annotations

import struct

import pytest

from portatlas.identify.base import (IdentifyInside, NoMatch, ProbeContext, Send, StartTLS,
                                     Verdict, Wait)
from portatlas.identify.protocols import (ftp, http, imap, irc, memcached, mtp, pop3, redis,
                                          rsync, rtsp, sip, smtp, ssh, telnet, tls, xmpp)
from portatlas.identify.protocols._text import numeric_reply, split_product
from portatlas.identify.session import Session


def ctx(port: int, transport: str = "tcp", **kw) -> ProbeContext:
    return ProbeContext("198.18.0.2", port, transport, **kw)


def play(probe, replies: list[bytes], tls_info: dict | None = None):
    """Drive a probe through the drivers' Session (identify/session.py): start(); then every
    server message as bytes received. StartTLS is answered with tls_ready(tls_info). Returns
    (last step, what was sent)."""
    session = Session(probe, probe.ctx.transport)
    sent: list[bytes] = []
    replies = list(replies)
    while True:
        if session.done:
            return session.result, sent
        step = session.action
        if isinstance(step, StartTLS):
            session.tls_ready(tls_info or {"version": "TLSv1.3"})
            continue
        if isinstance(step, Send):
            sent.append(step.data)
            session.sent()
        if not replies:
            return step, sent
        session.received(replies.pop(0))


# --- SSH ----------------------------------------------------------------------------------
OPENSSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"  # real
OPENSSH_LISTS = [  # real name-lists of OpenSSH 9.2p1's KEXINIT (kex list trimmed)
    b"sntrup761x25519-sha512@openssh.com,curve25519-sha256,ecdh-sha2-nistp256,"
    b"kex-strict-s-v00@openssh.com",
    b"ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256",
    b"chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
    b"chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
    b"umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
    b"umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
    b"none,zlib@openssh.com", b"none,zlib@openssh.com", b"", b""]


def kexinit(lists: list[bytes], padding: int = 4) -> bytes:
    payload = b"\x14" + bytes(range(16)) + b"".join(struct.pack(">I", len(x)) + x for x in lists)
    payload += b"\x00" + b"\x00\x00\x00\x00"  # first_kex_packet_follows, reserved
    body = bytes([padding]) + payload + b"\x00" * padding
    return struct.pack(">I", len(body)) + body


def test_ssh_openssh_banner_then_kexinit():
    probe = ssh.SSHProbe(ctx(103))
    assert ssh.SSHProbe.claims_banner(OPENSSH_BANNER)
    verdict, sent = play(probe, [OPENSSH_BANNER, kexinit(OPENSSH_LISTS)])
    assert sent == [ssh.CLIENT_ID]
    assert isinstance(verdict, Verdict) and verdict.confidence == 1.0
    assert (verdict.protocol, verdict.product, verdict.version) == ("ssh", "OpenSSH", "9.2p1")
    assert verdict.extra["host_key_types"] == ["ssh-ed25519", "ecdsa-sha2-nistp256",
                                               "rsa-sha2-512", "rsa-sha2-256"]
    assert verdict.extra["os"] == "Debian" and verdict.extra["protocol_version"] == "2.0"
    assert "curve25519-sha256" in verdict.extra["kex"]
    assert verdict.evidence == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"


def test_ssh_kexinit_in_pieces_and_with_the_banner():
    probe = ssh.SSHProbe(ctx(22))
    assert isinstance(probe.feed(OPENSSH_BANNER), Send)
    packet = kexinit(OPENSSH_LISTS)
    assert isinstance(probe.feed(packet[:3]), Wait)
    assert isinstance(probe.feed(packet[:100]), Wait)
    assert probe.feed(packet).confidence == 1.0
    # dropbear sends banner and KEXINIT together: decided without a Send
    both = ssh.SSHProbe(ctx(22)).feed(b"SSH-2.0-dropbear_2022.83\r\n" + packet)
    assert isinstance(both, Verdict) and both.product == "Dropbear sshd"
    assert both.version == "2022.83"


def test_ssh_lines_before_the_version_and_cut_short_banner():
    probe = ssh.SSHProbe(ctx(22))
    assert isinstance(probe.feed(b"Welcome\r\nSSH-1.99-Cisco-1.25\r\n"), Send)
    verdict = probe.finish(b"")
    assert verdict.product == "Cisco SSH" and verdict.extra["protocol_version"] == "1.99"
    assert isinstance(ssh.SSHProbe(ctx(22)).feed(b"SS"), Wait)
    cut = ssh.SSHProbe(ctx(22)).finish(b"SSH-2.0-OpenSSH_8.4")
    assert isinstance(cut, Verdict) and cut.confidence < 1.0 and cut.version == "8.4"


@pytest.mark.parametrize("banner", [b"220 mail ESMTP Exim\r\n", b"+OK Dovecot ready.\r\n",
                                    b"\x00\x01\x02", b"SSH-garbage\r\n", b"HTTP/1.1 200 OK\r\n"])
def test_ssh_rejects_other_banners(banner):
    assert isinstance(ssh.SSHProbe(ctx(22)).feed(banner), NoMatch)


# --- HTTP ---------------------------------------------------------------------------------
NGINX_200 = (  # real (nginx 1.22.1 serving the test page)
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 15:22:23 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: 101\r\nConnection: close\r\n"
    b"ETag: \"6b045a0a-65\"\r\nAccept-Ranges: bytes\r\n\r\n"
    b"<!DOCTYPE html><html><head><title>portatlas test page</title></head>"
    b"<body><p>hello</p></body></html>\n")
NGINX_PLAIN_ON_TLS = (  # real: plain HTTP sent to nginx's HTTPS port
    b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n"
    b"Content-Length: 255\r\nConnection: close\r\n\r\n<html>\r\n<head><title>400 The plain "
    b"HTTP request was sent to HTTPS port</title></head>\r\n")
NGINX_H2C_TO_HTTP1 = bytes.fromhex(  # real: nginx 'listen ... http2' (h2c) answering GET /
    "000012040000000000000300000080000400010000000500ffffff00000408000000000"
    "07fff0000000008070000000000000000000000000001")
NGINX_H2C_SETTINGS = bytes.fromhex(  # real: its answer to the preface
    "000012040000000000000300000080000400010000000500ffffff000004080000000000"
    "7fff0000000000040100000000")


def test_http_nginx_page():
    probe = http.HTTPProbe(ctx(57))
    request = probe.start()
    assert request.data.startswith(b"GET / HTTP/1.1\r\nHost: 198.18.0.2:57\r\n")
    assert isinstance(probe.feed(NGINX_200[:20]), Wait)
    assert isinstance(probe.feed(NGINX_200[:200]), Wait)  # headers done, title not yet
    verdict = probe.feed(NGINX_200)
    assert (verdict.protocol, verdict.product, verdict.version) == ("http", "nginx", "1.22.1")
    assert verdict.extra["title"] == "portatlas test page" and verdict.extra["status"] == 200
    assert verdict.confidence == 1.0 and "Server: nginx/1.22.1" in verdict.evidence


def test_http_400_from_a_tls_port_is_tentative():
    verdict = http.HTTPProbe(ctx(443)).feed(NGINX_PLAIN_ON_TLS)
    assert verdict.confidence < 0.8 and "TLS" in verdict.extra["note"]


def test_http_server_header_products():
    assert http.server_product("Apache/2.4.57 (Debian)") == ("Apache httpd", "2.4.57", "Debian")
    assert http.server_product("Microsoft-IIS/10.0")[:2] == ("Microsoft IIS httpd", "10.0")
    assert http.server_product("Jetty(9.4.53.v20231009)")[:2] == ("Jetty", "9.4.53.v20231009")
    assert http.server_product("gunicorn")[:2] == ("Gunicorn", None)


def test_http_h2c_and_alpn():
    verdict = http.HTTPProbe(ctx(8081)).feed(NGINX_H2C_TO_HTTP1)
    assert verdict.protocol == "http" and "h2c" in verdict.extra["http2"]
    h2 = http.H2CProbe(ctx(8081))
    assert h2.start().data.startswith(http.H2_PREFACE)
    settings = h2.feed(NGINX_H2C_SETTINGS)
    assert settings.extra["h2_settings"]["max_concurrent_streams"] == 128
    assert isinstance(http.H2CProbe(ctx(80)).feed(NGINX_PLAIN_ON_TLS), NoMatch)
    tls_ctx = ctx(443, in_tls=True, tls={"alpn": "h2"}, server_name="www.portatlas.test")
    inside = http.HTTPProbe(tls_ctx)
    assert b"Host: www.portatlas.test\r\n" in inside.start().data
    assert inside.feed(NGINX_200).extra["http2"] == "ALPN h2"


@pytest.mark.parametrize("reply", [b"SSH-2.0-OpenSSH_9.2\r\n", b"RTSP/1.0 200 OK\r\n\r\n",
                                   b"SIP/2.0 200 OK\r\n\r\n", b"-ERR wrong number\r\n",
                                   b"HTTP/9 what\r\n\r\n"])
def test_http_rejects(reply):
    assert isinstance(http.HTTPProbe(ctx(80)).feed(reply), NoMatch)


# --- TLS ----------------------------------------------------------------------------------
def test_tls_probe_hands_over_inside():
    probe = tls.TLSProbe(ctx(993, server_name="imap.portatlas.test"))
    step = probe.start()
    assert isinstance(step, StartTLS) and step.alpn == ("h2", "http/1.1")
    assert step.server_name == "imap.portatlas.test"
    inside = probe.tls_ready({"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                              "certificate": {"subject": "CN=imap.portatlas.test"}})
    assert isinstance(inside, IdentifyInside)
    assert inside.fallback.protocol == "tls" and inside.fallback.version == "TLSv1.3"
    assert isinstance(probe.tls_failed("reset"), NoMatch)


# --- SMTP ---------------------------------------------------------------------------------
EXIM_GREETING = b"220 mail.portatlas.test ESMTP Exim 4.96 Mon, 23 Nov 2026 15:22:30 +0000\r\n"
EXIM_EHLO = (b"250-mail.portatlas.test Hello portatlas [198.18.0.1]\r\n250-SIZE 52428800\r\n"
             b"250-8BITMIME\r\n250-PIPELINING\r\n250-PIPECONNECT\r\n250-CHUNKING\r\n"
             b"250-STARTTLS\r\n250-SMTPUTF8\r\n250 HELP\r\n")  # real
EXIM_STARTTLS = b"220 TLS go ahead\r\n"  # real
VSFTPD_GREETING = b"220 (vsFTPd 3.0.3)\r\n"  # real
VSFTPD_530 = b"530 Please login with USER and PASS.\r\n"  # real: its answer to EHLO and HELO


def test_smtp_exim_with_starttls():
    probe = smtp.SMTPProbe(ctx(2525))
    assert smtp.SMTPProbe.claims_banner(EXIM_GREETING)
    verdict, sent = play(probe, [EXIM_GREETING, EXIM_EHLO, EXIM_STARTTLS])
    assert sent == [smtp.EHLO, b"STARTTLS\r\n"]
    assert (verdict.protocol, verdict.product, verdict.version) == ("smtp", "Exim", "4.96")
    assert verdict.extra["hostname"] == "mail.portatlas.test"
    assert "PIPELINING" in verdict.extra["extensions"] and verdict.extra["starttls"] is True


def test_smtp_multiline_greeting_in_pieces_and_helo_fallback():
    probe = smtp.SMTPProbe(ctx(25))
    greeting = b"220-mx.example.org ESMTP Postfix (Debian/GNU)\r\n220 no UCE\r\n"  # made
    assert isinstance(probe.feed(greeting[:30]), Wait)
    assert probe.feed(greeting) == Send(smtp.EHLO)
    assert probe.feed(b"502 5.5.2 Error: command not recognized\r\n") == Send(smtp.HELO)
    verdict = probe.feed(b"250 mx.example.org\r\n")
    assert verdict.product == "Postfix" and verdict.extra["esmtp"] is False


def test_smtp_is_not_ftp():
    verdict, sent = play(smtp.SMTPProbe(ctx(21)), [VSFTPD_GREETING, VSFTPD_530, VSFTPD_530])
    assert isinstance(verdict, NoMatch) and sent == [smtp.EHLO, smtp.HELO]
    assert not smtp.SMTPProbe.claims_banner(VSFTPD_GREETING)


# --- MTP (RFC 780) --------------------------------------------------------------------------
MTP_GREETING = b"220 ISIF.ARPA Mail Transfer Protocol (RFC 780) service ready\r\n"  # made
MTP_215 = b"215 T Text-first scheme is preferred\r\n"
MTP_HELP = (b"214-The following commands are recognized:\r\n214-   MAIL MSND MSOM MSAM MRSQ "
            b"MRCP SEND SOML SAML RSET\r\n214    VRFY EXPN HELP NOOP QUIT TURN\r\n")


def test_mtp_rfc780_server():
    probe = mtp.MTPProbe(ctx(57))
    assert mtp.MTPProbe.claims_banner(MTP_GREETING)
    verdict, sent = play(probe, [MTP_GREETING, MTP_215, MTP_HELP])
    assert sent == [mtp.MRSQ_QUERY, mtp.HELP]
    assert verdict.protocol == "mtp" and verdict.confidence == 1.0
    assert verdict.extra["preferred_scheme"] == "T (text first)"
    assert {"MRSQ", "MRCP"} <= set(verdict.extra["commands"])


def test_mtp_not_named_on_a_220_greeting_and_rejected_commands():
    # changed deliberately (issue 11): this used to be a tentative MTP verdict (0.7); a text
    # service that greets with 220 and rejects unknown commands is not evidence of MTP
    verdict, sent = play(mtp.MTPProbe(ctx(57)), [
        b"220 HOST.ARPA MTP ready\r\n", b"502 MRSQ not implemented\r\n",
        b"500 HELO? Syntax error, command unrecognized\r\n", b"214 MAIL RSET HELP NOOP QUIT\r\n"])
    assert sent == [mtp.MRSQ_QUERY, mtp.HELO, mtp.HELP]
    assert isinstance(verdict, NoMatch) and "220" in verdict.reason


def test_mtp_named_when_help_lists_the_mr_commands():
    verdict, sent = play(mtp.MTPProbe(ctx(57)), [
        b"220 HOST.ARPA MTP ready\r\n", b"502 MRSQ not implemented\r\n",
        b"500 HELO? Syntax error\r\n", b"214 MAIL MRSQ MRCP RSET HELP NOOP QUIT\r\n"])
    assert verdict.protocol == "mtp" and verdict.confidence >= 0.8


def test_mtp_is_not_smtp():
    exim = [EXIM_GREETING, b"500 unrecognized command\r\n",  # real Exim answers
            b"250 mail.portatlas.test Hello portatlas.invalid [127.0.0.1]\r\n"]
    verdict, sent = play(mtp.MTPProbe(ctx(57)), exim)
    assert isinstance(verdict, NoMatch) and "SMTP" in verdict.reason
    assert not mtp.MTPProbe.claims_banner(EXIM_GREETING)


def test_numeric_reply_parser():
    reply = numeric_reply(MTP_HELP)
    assert reply.complete and reply.code == 214 and len(reply.lines) == 3
    assert numeric_reply(b"21").complete is False
    assert numeric_reply(b"hello") is None
    assert split_product("OpenSSH_9.2p1") == ("OpenSSH", "9.2p1")


# --- FTP ----------------------------------------------------------------------------------
VSFTPD_FEAT = (b"211-Features:\r\n AUTH TLS\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n PBSZ\r\n"
               b" PROT\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n211 End\r\n")  # real


def test_ftp_vsftpd_with_auth_tls():
    probe = ftp.FTPProbe(ctx(2121))
    assert ftp.FTPProbe.claims_banner(VSFTPD_GREETING)
    verdict, sent = play(probe, [VSFTPD_GREETING, VSFTPD_FEAT,
                                 b"234 Proceed with negotiation.\r\n"])
    assert sent == [b"FEAT\r\n", b"AUTH TLS\r\n"]
    assert (verdict.product, verdict.version) == ("vsftpd", "3.0.3")
    assert "AUTH TLS" in verdict.extra["features"] and verdict.extra["auth_tls"] is True


def test_ftp_is_not_smtp():
    verdict, sent = play(ftp.FTPProbe(ctx(25)), [EXIM_GREETING, b"500 unrecognized command\r\n",
                                                 b"500 unrecognized command\r\n"])
    assert isinstance(verdict, NoMatch) and sent == [b"FEAT\r\n", b"SYST\r\n"]


# --- POP3 / IMAP --------------------------------------------------------------------------
DOVECOT_POP3 = b"+OK Dovecot (Debian) ready.\r\n"  # real
DOVECOT_CAPA = (b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
                b"STLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n")  # real
DOVECOT_IMAP = (b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
                b"STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n")  # real


def test_pop3_dovecot_with_stls():
    verdict, sent = play(pop3.POP3Probe(ctx(110)), [
        DOVECOT_POP3, DOVECOT_CAPA, b"+OK Begin TLS negotiation now.\r\n"])
    assert sent == [b"CAPA\r\n", b"STLS\r\n"]
    assert verdict.product == "Dovecot" and "SASL PLAIN" in verdict.extra["capabilities"]
    assert verdict.extra["stls"] is True


def test_pop3_in_pieces_and_capa_refused():
    probe = pop3.POP3Probe(ctx(110))
    assert isinstance(probe.feed(b"+O"), Wait)
    assert probe.feed(b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n") == Send(b"CAPA\r\n")
    verdict = probe.feed(b"-ERR unknown command\r\n")
    assert verdict.protocol == "pop3" and verdict.confidence == 0.9


def test_imap_dovecot_capabilities_in_greeting():
    verdict, sent = play(imap.IMAPProbe(ctx(1430)), [DOVECOT_IMAP,
                                                     b"pa2 OK Begin TLS negotiation now.\r\n"])
    assert sent == [b"pa2 STARTTLS\r\n"]
    assert verdict.product == "Dovecot" and "IDLE" in verdict.extra["capabilities"]
    assert verdict.extra["starttls"] is True and verdict.extra["greeting"] == "Dovecot (Debian) ready."


def test_imap_asks_for_capabilities_when_not_greeted_with_them():
    inside = ctx(993, in_tls=True)
    verdict, sent = play(imap.IMAPProbe(inside), [
        b"* OK IMAP4rev1 Service Ready\r\n",
        b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\npa1 OK done\r\n"])
    assert sent == [b"pa1 CAPABILITY\r\n"]  # no STARTTLS inside TLS
    assert verdict.extra["capabilities"] == ["IMAP4rev1", "STARTTLS", "AUTH=PLAIN"]


@pytest.mark.parametrize("cls", [pop3.POP3Probe, imap.IMAPProbe])
def test_mail_readers_reject_smtp(cls):
    assert isinstance(cls(ctx(25)).feed(EXIM_GREETING), NoMatch)


# --- Telnet / IRC / XMPP / RTSP / SIP -------------------------------------------------------
TELNETD = b"\xff\xfb%\xff\xfb&\xff\xfd\x18\xff\xfd \xff\xfd#\xff\xfd'\xff\xfd$"  # real
NGIRCD = (b":irc.portatlas.test 001 pa1 :Welcome to the Internet Relay Network pa1\r\n"
          b":irc.portatlas.test 002 pa1 :Your host is irc.portatlas.test, running version "
          b"ngircd-26.1 (x86_64/pc/linux-gnu)\r\n"
          b":irc.portatlas.test 004 pa1 irc.portatlas.test ngircd-26.1 abBcCFiIoqrRswx "
          b"abehiIklmMnoOPqQrRstvVz\r\n")  # real
PROSODY = (b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
           b" version='1.0' xmlns='jabber:client' xml:lang='en' id='58a4' from='portatlas.test'>"
           b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>"
           b"SCRAM-SHA-1</mechanism></mechanisms><starttls xmlns='urn:ietf:params:xml:ns:xmpp-"
           b"tls'/></stream:features>")  # real
KAMAILIO = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP portatlas.invalid;branch=z9hG4bK1;rport=45842;"
            b"received=127.0.0.1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>;tag=bf86\r\n"
            b"Call-ID: CALLID@portatlas.invalid\r\nCSeq: 1 OPTIONS\r\n"
            b"Server: kamailio (5.6.3 (x86_64/linux))\r\nContent-Length: 0\r\n\r\n")  # real


def test_telnet_negotiation():
    assert telnet.TelnetProbe.claims_banner(TELNETD)
    verdict = telnet.TelnetProbe(ctx(23)).feed(TELNETD)
    assert verdict.protocol == "telnet"
    assert verdict.extra["negotiation"][:3] == ["WILL authentication", "WILL encryption",
                                                "DO terminal-type"]
    assert isinstance(telnet.TelnetProbe(ctx(23)).feed(b"\xff\x07junk"), NoMatch)
    assert telnet.TelnetProbe(ctx(23)).feed(b"router1 login: ").confidence < 0.8


def test_irc_ngircd_and_ping():
    probe = irc.IRCProbe(ctx(6667))
    assert probe.start().data.startswith(b"NICK pa")
    assert isinstance(probe.feed(NGIRCD[:60]), Wait)
    verdict = probe.feed(NGIRCD)
    assert (verdict.protocol, verdict.product, verdict.version) == ("irc", "ngIRCd", "26.1")
    pinged = irc.IRCProbe(ctx(6667))
    pinged.start()
    assert pinged.feed(b":irc NOTICE * :*** Looking up your hostname\r\nPING :1234\r\n") == \
        Send(b"PONG :1234\r\n")
    assert irc.IRCProbe.claims_banner(b":irc.example NOTICE AUTH :*** Looking up\r\n")
    assert not irc.IRCProbe.claims_banner(EXIM_GREETING)


def test_memcacheds_bare_error_lines_are_not_irc():
    """memcached answers NICK and USER (and an HTTP request) with a bare ERROR per line: not
    IRC, neither as a banner claim nor as the probe's answer (it was named irc in a lab run);
    IRC's own ERROR message carries its trailing text."""
    reply = b"ERROR\r\nERROR\r\n"
    assert not irc.IRCProbe.claims_banner(reply)
    probe = irc.IRCProbe(ctx(1900))
    probe.start()
    assert isinstance(probe.feed(reply), NoMatch)
    assert isinstance(irc.IRCProbe(ctx(1900)).finish(reply), NoMatch)
    closing = b"ERROR :Closing link: (pa1@198.18.0.1) [Registration timeout]\r\n"
    assert irc.IRCProbe.claims_banner(closing)
    assert irc.IRCProbe(ctx(6667)).finish(closing).protocol == "irc"


def test_xmpp_prosody():
    probe = xmpp.XMPPProbe(ctx(5222, server_name="portatlas.test"))
    assert b"to='portatlas.test'" in probe.start().data
    assert isinstance(probe.feed(PROSODY[:120]), Wait)
    verdict = probe.feed(PROSODY)
    assert verdict.extra["from"] == "portatlas.test" and verdict.extra["features"] == ["starttls"]
    assert verdict.extra["sasl_mechanisms"] == ["SCRAM-SHA-1"]
    assert isinstance(xmpp.XMPPProbe(ctx(5222)).feed(NGINX_200), NoMatch)


def test_rtsp_options():
    probe = rtsp.RTSPProbe(ctx(554))
    assert probe.start().data.startswith(b"OPTIONS rtsp://198.18.0.2:554/ RTSP/1.0\r\nCSeq: 1")
    verdict = probe.feed(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: GStreamer RTSP server\r\n"
                         b"Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n")  # made
    assert verdict.protocol == "rtsp" and verdict.extra["methods"][0] == "OPTIONS"
    assert verdict.product == "GStreamer RTSP server"
    assert isinstance(rtsp.RTSPProbe(ctx(554)).feed(NGINX_200), NoMatch)


@pytest.mark.parametrize("cls", [sip.SIPTCPProbe, sip.SIPUDPProbe])
def test_sip_kamailio(cls):
    probe = cls(ctx(5060, cls.transport))
    probe.call_id = "CALLID"
    request = probe.start().data
    assert request.startswith(b"OPTIONS sip:") and f"SIP/2.0/{cls.transport.upper()}".encode() in request
    assert isinstance(probe.feed(b"SIP/2.0 100 Trying\r\n\r\n"), Wait)
    verdict = probe.feed(KAMAILIO)
    assert (verdict.product, verdict.version, verdict.confidence) == ("Kamailio", "5.6.3", 1.0)


# --- rsync / Redis / memcached ---------------------------------------------------------------
def test_rsync_lists_modules():
    probe = rsync.RsyncProbe(ctx(873))
    verdict, sent = play(probe, [b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n",
                                 b"pub            \tportatlas test share\n@RSYNCD: EXIT\n"])
    assert sent == [b"@RSYNCD: 31.0\n#list\n"]
    assert verdict.extra["protocol_version"] == "32.0" and "sha512" in verdict.extra["digests"]
    assert verdict.extra["modules"] == [{"module": "pub", "comment": "portatlas test share"}]


INFO = (b"# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"
        b"os:Linux 6.1.0 x86_64\r\narch_bits:64\r\ntcp_port:6379\r\n")


def test_redis_pong_and_info():
    reply = b"+PONG\r\n$%d\r\n%s\r\n" % (len(INFO), INFO)
    probe = redis.RedisProbe(ctx(8080))
    assert probe.start().data == redis.REQUEST
    assert isinstance(probe.feed(reply[:20]), Wait)
    verdict = probe.feed(reply)
    assert (verdict.product, verdict.version, verdict.confidence) == ("Redis", "7.0.15", 1.0)
    assert verdict.extra["redis_mode"] == "standalone"


@pytest.mark.parametrize("reply,key", [
    (b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n", "auth"),
    (b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n",
     "protected_mode")])  # real
def test_redis_refusals_still_redis(reply, key):
    verdict = redis.RedisProbe(ctx(6379)).feed(reply)
    assert verdict.product == "Redis" and key in verdict.extra
    assert redis.RedisProbe.claims_banner(reply)


def test_memcached_and_the_neighbours():
    verdict = memcached.MemcachedProbe(ctx(4000)).feed(b"VERSION 1.6.18\r\n")  # real
    assert (verdict.product, verdict.version) == ("memcached", "1.6.18")
    redis_answer = b"-ERR unknown command 'version', with args beginning with: \r\n"  # real
    assert isinstance(memcached.MemcachedProbe(ctx(4000)).feed(redis_answer), NoMatch)
    assert isinstance(redis.RedisProbe(ctx(11211)).feed(b"ERROR\r\nERROR\r\n"), NoMatch)  # real
