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
    g.add_argument("--nmap-db", metavar="PATH",
                   help="nmap's service-probe database, read at run time (default "
                        "$PORTATLAS_NMAP_DB, else /usr/share/nmap/nmap-service-probes)")
    g.add_argument("--no-nmap", action="store_true",
                   help="do not send nmap's probes (portatlas's own modules only)")
    g.add_argument("--intensity", type=int, metavar="0-9", default=7,
                   help="nmap's version intensity: probes of rarity <= N, besides those "
                        "hinted by the port (default 7)")
    g.add_argument("--nmap-parallel", type=int, metavar="N", default=6,
                   help="nmap probes at once per port, each on its own connection (default 6)")
    # the option of the old refinement step; a PATH given here means --nmap-db PATH
    import argparse

    g.add_argument("--nmap-probes", nargs="?", const=True, default=False, metavar="PATH",
                   help=argparse.SUPPRESS)


def options_from(args: Any, atlas: Any = None):
    """Options from parsed arguments (the defaults when the parser has no such group)."""
    # lazy: identify.options only once arguments are parsed, not for `scan --help`
    from portatlas.identify.options import Options

    get = lambda name, default: getattr(args, name, default)  # noqa: E731
    old = get("nmap_probes", False)
    opts = Options(timeout=get("id_timeout", 5.0), probe_timeout=get("probe_timeout", 1.5),
                   banner_wait=get("banner_wait", 0.4), server_name=get("sni", None),
                   tls=not get("no_tls", False), nmap=not get("no_nmap", False),
                   nmap_db=get("nmap_db", None) or (old if isinstance(old, str) else None),
                   intensity=get("intensity", 7), nmap_parallel=get("nmap_parallel", 6),
                   atlas=atlas)
    for name, value in (("--id-timeout", opts.timeout), ("--probe-timeout", opts.probe_timeout)):
        if not 0 < value <= 600:
            raise UsageError(f"{name} must be between 0 and 600 seconds")
    if not 0 <= opts.banner_wait <= 60:
        raise UsageError("--banner-wait must be between 0 and 60 seconds")
    if not 0 <= opts.intensity <= 9:
        raise UsageError("--intensity must be between 0 and 9")
    if not 1 <= opts.nmap_parallel <= 64:
        raise UsageError("--nmap-parallel must be between 1 and 64")
    if opts.nmap and opts.nmap_db:
        from portatlas.identify import nmap  # lazy: nmap's database reader only for --nmap-db PATH

        nmap.load(opts.nmap_db)  # a path the user typed must work: a one-line data error
    return opts


def nmap_note(opts: Any) -> str | None:
    """The note the commands print when nmap's database is not there (None when it is, or
    when --no-nmap was given)."""
    if not getattr(opts, "nmap", False):
        return None
    from portatlas.identify import nmap  # lazy: nmap's database reader only when nmap probes are on

    return None if nmap.find_db(opts.nmap_db) else nmap.missing_note(opts.nmap_db)
