"""VNC (the RFB protocol): the server speaks first with 'RFB 003.008\\n'. We answer with the same
or an older version and read the security types it offers (None, VNC authentication,
VeNCrypt...), or the reason it refuses us ('Too many security failures').
"""

from __future__ import annotations

import re
import struct

from ..base import (NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence,
                    register)
from ._wire import text

_BANNER = re.compile(rb"^RFB (\d{3})\.(\d{3})\n")
SECURITY_TYPES = {0: "invalid", 1: "None", 2: "VNC", 5: "RA2", 6: "RA2ne", 16: "Tight",
                  17: "Ultra", 18: "TLS", 19: "VeNCrypt", 20: "GTK-VNC SASL", 21: "MD5",
                  22: "xvp", 30: "Apple Remote Desktop", 35: "Apple (Mac OS X)"}
VERSION_PRODUCTS = {(3, 889): "Apple Remote Desktop"}


@register
class VncProbe(Probe):
    name = "vnc"
    transport = "tcp"
    ports = frozenset({5900, 5901, 5902, 5800})
    services = frozenset({"rfb", "vnc", "vnc-server"})
    server_first = True
    rarity = 20
    read_budget = 1024

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.version: tuple[int, int] | None = None
        self.banner = b""
        self.reply = b""

    @classmethod
    def claims_banner(cls, banner: bytes) -> bool:
        return _BANNER.match(banner) is not None

    def feed(self, data: bytes) -> Step:
        if self.version is None:
            if len(data) < 12:
                return Wait() if b"RFB ".startswith(data[:4]) else NoMatch("not an RFB banner")
            found = _BANNER.match(data)
            if not found:
                return NoMatch("not an RFB banner")
            self.version = (int(found.group(1)), int(found.group(2)))
            self.banner = data[:12]
            if len(data) > 12:
                return self._verdict(None)  # more than a banner: do not answer, just report
            major, minor = self.version
            reply = b"RFB 003.008\n" if (major, minor) >= (3, 8) else (
                b"RFB 003.007\n" if (major, minor) == (3, 7) else b"RFB 003.003\n")
            self.reply = reply
            return Send(reply)
        return self._security(data, final=False)

    def finish(self, data: bytes) -> Step:
        if self.version is None:
            return NoMatch("no RFB banner")
        return self._security(data, final=True)

    def _security(self, data: bytes, final: bool) -> Step:
        if self.reply == b"RFB 003.003\n":
            # version 3.3: the server picks one type, a 32-bit number
            if len(data) < 4:
                return self._verdict(None) if final else Wait()
            chosen = struct.unpack(">I", data[:4])[0]
            return self._verdict({"security_types": [SECURITY_TYPES.get(chosen, str(chosen))]})
        if not data:
            return self._verdict(None) if final else Wait()
        count = data[0]
        if count == 0:
            if len(data) < 5:
                return self._verdict(None) if final else Wait()
            size = min(struct.unpack(">I", data[1:5])[0], 256)
            if len(data) < 5 + size and not final:
                return Wait()
            return self._verdict({"refused": text(data[5:5 + size], 256)})
        if len(data) < 1 + count and not final:
            return Wait()
        types = [SECURITY_TYPES.get(t, str(t)) for t in data[1:1 + count]]
        return self._verdict({"security_types": types})

    def _verdict(self, facts: dict | None) -> Verdict:
        assert self.version is not None
        major, minor = self.version
        extra: dict = {"rfb_version": f"{major}.{minor}"}
        extra.update(facts or {})
        product = VERSION_PRODUCTS.get(self.version)
        return Verdict("vnc", product, None, extra, 1.0, escape_evidence(self.banner))
