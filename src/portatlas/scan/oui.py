"""The vendor of a MAC address, from the system's copy of the IEEE registry, read at run
time and never copied into portatlas: nmap's nmap-mac-prefixes (Debian nmap-common) or
ieee-data's oui.txt. Longest prefix wins (nmap's file has 24-, 28- and 36-bit blocks).
No file: the vendor is None ("unknown"), never a guess.
"""

from __future__ import annotations

import os

SOURCES = ("/usr/share/nmap/nmap-mac-prefixes", "/usr/share/ieee-data/oui.txt",
           "/usr/share/misc/oui.txt")
_MAX_BYTES = 16 << 20


class VendorTable:
    def __init__(self, paths: tuple[str, ...] = SOURCES) -> None:
        self.path: str | None = None
        self._prefixes: dict[str, str] = {}
        for path in paths:
            if os.path.exists(path):
                try:
                    self._load(path)
                except OSError:
                    continue
                self.path = path
                break

    def _load(self, path: str) -> None:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(_MAX_BYTES)
        table = self._prefixes
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            if "(hex)" in line:                  # oui.txt: "00-00-0C   (hex)\t\tCisco Systems, Inc"
                left, _, vendor = line.partition("(hex)")
                key = left.strip().replace("-", "").upper()
            else:                                # nmap: "00000C Cisco Systems"
                key, _, vendor = line.partition(" ")
                key = key.upper()
            vendor = vendor.strip()
            if vendor and 6 <= len(key) <= 9 and all(c in "0123456789ABCDEF" for c in key):
                table.setdefault(key, vendor)

    def vendor(self, mac: str | None) -> str | None:
        if not mac or not self._prefixes:
            return None
        digits = mac.replace(":", "").replace("-", "").upper()
        for n in (9, 7, 6):
            hit = self._prefixes.get(digits[:n])
            if hit:
                return hit
        return None


_TABLE: VendorTable | None = None


def vendor_of(mac: str | None) -> str | None:
    global _TABLE
    if _TABLE is None:
        _TABLE = VendorTable()
    return _TABLE.vendor(mac)
