"""Every captured (or protocol-built) reply in the identification tests, with what it is.

The bytes live where they are tested (module-level constants of tests/test_identify_*.py);
this table only says, for each, which service names are right for it and what elicited it:

  GREETING      the server spoke first: it opens the reply to every TCP probe
  ("tcp", P...) the reply to those nmap probes, or to a portatlas request equivalent to them
  ("udp", P...) the same for UDP
  OWN           the reply to a portatlas request no nmap probe sends (a MongoDB-less
                RabbitMQ answering our AMQP header): nmap never judges these bytes

A name is right when it is one of the nmap service names in `truth`; no name is always
acceptable ("a wrong answer is worse than none").
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
GREETING = "greeting"
OWN = "own"

# constant -> (what elicited it, acceptable nmap service names)
TABLE: dict[str, tuple] = {
    "RABBITMQ_START": (OWN, {"amqp"}),
    "QUERY_1234": (OWN, set()),                      # a DNS query, not a reply
    "DNSMASQ_REPLY": (("udp", "DNSVersionBindReq"), {"domain"}),
    "DNSMASQ_TCP_REPLY": (("tcp", "DNSVersionBindReqTCP"), {"domain"}),
    "SLAPD_ROOT_DSE": (("tcp", "LDAPSearchReq"), {"ldap"}),
    "MEMCACHED_REPLY": (("udp", "memcached"), {"memcached"}),
    "CONNACK": (("tcp", "mqtt"), {"mqtt"}),
    "SUBACK_AND_VERSION": (OWN, {"mqtt"}),
    "MARIADB_GREETING": (GREETING, {"mysql"}),
    "TRANSMIT": (OWN, set()),                        # our own NTP timestamp
    "CHRONY_MODE4": (("udp", "NTPRequest"), {"ntp"}),
    "NTPSEC_MODE4": (("udp", "NTPRequest"), {"ntp"}),
    "NTPSEC_MODE6": (OWN, {"ntp"}),
    "ROLE_MISSING": (OWN, {"postgresql"}),
    "LOGGED_IN": (OWN, {"postgresql"}),
    "XRDP_CONFIRM": (("tcp", "TerminalServerCookie", "TerminalServer"), {"ms-wbt-server"}),
    "WINDOWS_CONFIRM": (("tcp", "TerminalServerCookie", "TerminalServer"), {"ms-wbt-server"}),
    "FAILURE": (("tcp", "TerminalServerCookie", "TerminalServer"), {"ms-wbt-server"}),
    "OLD_CONFIRM": (("tcp", "TerminalServerCookie", "TerminalServer"), {"ms-wbt-server"}),
    "SAMBA_NEGOTIATE": (("tcp", "SMBProgNeg"), {"microsoft-ds", "netbios-ssn"}),
    "NETSNMP_REPORT": (("udp", "SNMPv3GetRequest"), {"snmp"}),
    "NETSNMP_RESPONSE": (("udp", "SNMPv1public"), {"snmp"}),
    "NMBD_NODE_STATUS": (("udp", "NBTStat"), {"netbios-ns"}),
    "MINIUPNPD_REPLY": (OWN, {"upnp"}),
    "TIGERVNC_BANNER": (GREETING, {"vnc"}),
    "TIGERVNC_TYPES": (OWN, {"vnc"}),
    "OPENSSH_BANNER": (GREETING, {"ssh"}),
    "NGINX_200": (("tcp", "GetRequest"), {"http"}),
    "NGINX_PLAIN_ON_TLS": (("tcp", "GetRequest"), {"ssl/http", "http"}),
    "NGINX_H2C_TO_HTTP1": (OWN, {"http"}),
    "NGINX_H2C_SETTINGS": (OWN, {"http"}),
    "EXIM_GREETING": (GREETING, {"smtp"}),
    "EXIM_EHLO": (OWN, {"smtp"}),
    "EXIM_STARTTLS": (OWN, {"smtp"}),
    "VSFTPD_GREETING": (GREETING, {"ftp"}),
    "VSFTPD_530": (OWN, {"ftp"}),
    "MTP_GREETING": (GREETING, {"mtp"}),
    "MTP_215": (OWN, {"mtp"}),
    "MTP_HELP": (OWN, {"mtp"}),
    "VSFTPD_FEAT": (OWN, {"ftp"}),
    "DOVECOT_POP3": (GREETING, {"pop3"}),
    "DOVECOT_CAPA": (OWN, {"pop3"}),
    "DOVECOT_IMAP": (GREETING, {"imap"}),
    "TELNETD": (GREETING, {"telnet"}),
    "NGIRCD": (OWN, {"irc"}),
    "PROSODY": (OWN, {"jabber", "xmpp"}),
    "KAMAILIO": (("tcp", "SIPOptions"), {"sip"}),
    "INFO": (("tcp", "redis-server"), {"redis"}),
    # tests/captures/ (test_identify_carried.py): the lab's proxies, CUPS, Knot, inetd echo
    "SQUID_TO_PORTATLAS": (("tcp", "GetRequest"), {"http-proxy"}),
    "SQUID_TO_GETREQUEST": (("tcp", "GetRequest"), {"http-proxy"}),
    "TINYPROXY_TO_PORTATLAS": (("tcp", "GetRequest"), {"http-proxy"}),
    "TINYPROXY_TO_GETREQUEST": (("tcp", "GetRequest"), {"http-proxy"}),
    "CUPS_TO_PORTATLAS": (("tcp", "GetRequest"), {"ipp"}),
    "CUPS_TO_GETREQUEST": (("tcp", "GetRequest"), {"ipp"}),
    "KNOT_REFUSED_UDP": (("udp", "DNSVersionBindReq"), {"domain"}),
    "KNOT_REFUSED_TCP": (("tcp", "DNSVersionBindReqTCP"), {"domain"}),
    "KNOT_REFUSED_OUR_UDP": (("udp", "DNSVersionBindReq"), {"domain"}),
    "KNOT_REFUSED_OUR_TCP": (("tcp", "DNSVersionBindReqTCP"), {"domain"}),
    "INETD_ECHO_AMQP": (OWN, {"echo"}),               # our AMQP header, sent back
    "COTURN_BINDING_UDP": (OWN, {"stun"}),            # nmap 7.93 has no STUN probe
    "COTURN_BINDING_TCP": (OWN, {"stun"}),
}


def load() -> dict[str, bytes]:
    """Every upper-case bytes constant of the identification test modules (name -> bytes)."""
    found: dict[str, bytes] = {}
    for path in sorted(TESTS.glob("test_identify_*.py")):
        if path.name in ("test_identify_servers.py",):
            continue
        text = path.read_text()
        if "bytes.fromhex(" not in text and '= b"' not in text and "= (b" not in text \
                and "= _capture(" not in text:
            continue
        spec = importlib.util.spec_from_file_location(f"_corpus_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception:  # a module that needs its fixtures to import holds no constants
            continue
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, (bytes, bytearray)) and len(value) >= 2:
                found[name] = bytes(value)
    return found
