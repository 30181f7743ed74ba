"""The identification options the commands share (`check`, `scan --identify`, `local
--identify`): one argparse group and its translation into portatlas.identify Options.

The text lines are in portatlas.render.identify, the `local --identify` work in
portatlas.identify.listeners.
"""

from __future__ import annotations

from typing import Any

from portatlas.errors import UsageError


def add_arguments(p: Any) -> None:
    """The identification options (one group) for an argparse parser."""
    g = p.add_argument_group("identification (docs/identify.md)")
    g.add_argument("--id-timeout", type=float, metavar="S", default=5.0,
                   help="time for identifying one port, all probes together (default 5)")
    g.add_argument("--probe-timeout", type=float, metavar="S", default=1.5,
                   help="time for one probe's conversation (default 1.5)")
    g.add_argument("--banner-wait", type=float, metavar="S", default=0.4,
                   help="listen this long for a banner before probing (default 0.4)")
    g.add_argument("--sni", metavar="NAME", help="server name for TLS (SNI) and HTTP Host")
    g.add_argument("--no-tls", action="store_true", help="never try TLS or STARTTLS")
    g.add_argument("--nmap-probes", nargs="?", const=True, default=False, metavar="PATH",
                   help="refine answers with nmap's fingerprints, read at run time from "
                        "PATH (default /usr/share/nmap/nmap-service-probes)")


def options_from(args: Any, atlas: Any = None):
    """Options from parsed arguments (the defaults when the parser has no such group)."""
    from portatlas.identify.options import Options

    get = lambda name, default: getattr(args, name, default)  # noqa: E731
    opts = Options(timeout=get("id_timeout", 5.0), probe_timeout=get("probe_timeout", 1.5),
                   banner_wait=get("banner_wait", 0.4), server_name=get("sni", None),
                   tls=not get("no_tls", False), nmap_probes=get("nmap_probes", False),
                   atlas=atlas)
    for name, value in (("--id-timeout", opts.timeout), ("--probe-timeout", opts.probe_timeout)):
        if not 0 < value <= 600:
            raise UsageError(f"{name} must be between 0 and 600 seconds")
    if not 0 <= opts.banner_wait <= 60:
        raise UsageError("--banner-wait must be between 0 and 60 seconds")
    if opts.nmap_probes:
        from portatlas.identify import nmap_probes

        nmap_probes.load(opts.nmap_probes if isinstance(opts.nmap_probes, str) else None)
    return opts
