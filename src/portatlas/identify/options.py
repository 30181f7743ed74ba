"""Identification options, in a module of their own: the CLI builds them while parsing
arguments, before anything heavy (asyncio, ssl) is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Options:
    """How hard to try. Times in seconds."""

    timeout: float = 5.0          # per port: everything together
    probe_timeout: float = 1.5    # per probe: connect excluded, its whole conversation
    connect_timeout: float = 2.0
    banner_wait: float = 0.4      # passive read before active probes
    parallel: int = 4             # probes at once on one port
    server_name: str | None = None  # SNI and Host header (default: the host if a name)
    tls: bool = True              # try TLS (implicit and STARTTLS)
    registered: tuple[str, ...] | None = None  # registry hints; None = ask the database
    only: tuple[str, ...] | None = None        # restrict to these probe names
    nmap: bool = True              # run nmap's service probes (when the database is found)
    nmap_db: str | None = None     # path of nmap-service-probes (else $PORTATLAS_NMAP_DB,
                                   # else /usr/share/nmap/nmap-service-probes)
    intensity: int = 7             # nmap's --version-intensity: probes of rarity <= this
    nmap_parallel: int = 6         # nmap TCP probes at once per port (UDP: 4 x this)
    nmap_probes: bool | str = False  # old option: a path here means nmap_db
    atlas: Any = None              # an Atlas for registry hints (else the default database)
