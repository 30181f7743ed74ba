"""Optional enrichment: nmap-services open-frequency per port and transport.

Read from Debian's nmap-common install at run time; the file is never copied into the project.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from portatlas.io_limits import read_limited

NMAP_SERVICES_PATHS = ("/usr/share/nmap/nmap-services", "/usr/local/share/nmap/nmap-services")


def find_nmap_services() -> str | None:
    override = os.environ.get("PORTATLAS_NMAP_SERVICES")
    if override is not None:
        return override or None
    for path in NMAP_SERVICES_PATHS:
        if os.path.isfile(path):
            return path
    return None


MAX_NMAP_SERVICES_BYTES = 16 << 20


def read_nmap_services(path: str) -> Iterator[tuple[int, str, str, float]]:
    """Yields (port, transport, nmap's service name, open frequency 0..1)."""

    # bounded like every input (the real file is about 1 MB); a FIFO or device is refused
    data = read_limited(path, limit=MAX_NMAP_SERVICES_BYTES, what="nmap's services file",
                        error=OSError, allow_stdin=False)  # type: ignore[arg-type]
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3 or "/" not in fields[1]:
            continue
        port_text, _, proto = fields[1].partition("/")
        try:
            port, freq = int(port_text), float(fields[2])
        except ValueError:
            continue
        if 0 <= port <= 65535 and proto in ("tcp", "udp", "sctp"):
            yield port, proto, fields[0], freq
