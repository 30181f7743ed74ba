"""TLS on any port: the driver performs the handshake (SNI, ALPN h2 + http/1.1) and this
probe hands over to the identification of what speaks inside (HTTPS, IMAPS, POP3S, SMTPS...).

The handshake facts (version, cipher, ALPN, certificate with expiry and self-signed flags)
come from portatlas.identify.tls; when nothing inside is recognised the answer is plain
'tls' with those facts.
"""

from __future__ import annotations

from typing import Any

from ..base import IdentifyInside, NoMatch, Probe, StartTLS, Step, Verdict, register


@register
class TLSProbe(Probe):
    name = "tls"
    transport = "tcp"
    ports = frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 2376, 3269, 4433,
                       4443, 5061, 5223, 5671, 6697, 8443, 8883, 9443, 10443})
    services = frozenset({"https", "imaps", "pop3s", "submissions", "urd", "ldaps", "ftps",
                          "ftps-data", "telnets", "ircs", "ircs-u", "domain-s", "sips",
                          "secure-mqtt", "amqps", "nntps", "https-alt", "pcsync-https",
                          "docker-s", "xmpps-client", "ssl-ldap", "ms-wbt-server-tls"})
    rarity = 8
    read_budget = 65536

    def start(self) -> Step:
        return StartTLS(self.ctx.server_name, ("h2", "http/1.1"))

    def tls_ready(self, info: dict[str, Any]) -> Step:
        extra = {"alpn": info.get("alpn")} if info.get("alpn") else {}
        cert = info.get("certificate") or {}
        evidence = f"TLS handshake: {info.get('version')} {info.get('cipher')}"
        if cert.get("subject"):
            evidence += f", certificate {cert['subject']}"
        return IdentifyInside(Verdict("tls", None, info.get("version"), extra, 0.9, evidence))

    def tls_failed(self, reason: str) -> Step:
        return NoMatch(reason)
