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
    nmap_probes: bool | str = False  # True or a path: refine with nmap-service-probes
    atlas: Any = None              # an Atlas for registry hints (else the default database)
