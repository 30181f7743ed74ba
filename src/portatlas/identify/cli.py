"""What the commands share about identification: options, `local --identify`, text lines.

`portatlas check` and `portatlas scan --identify` (cli/scan.py) and `portatlas local
--identify` (cli/local.py) call into here, so the options and the words are the same
everywhere.
"""

from __future__ import annotations

import ipaddress
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
    g.add_argument("--nmap-probes", nargs="?", const=True, default=False, metavar="PATH",
                   help=argparse_suppress())


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def options_from(args: Any, atlas: Any = None):
    """Options from parsed arguments (the defaults when the parser has no such group)."""
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
    if opts.nmap:
        from portatlas.identify import nmap

        if opts.nmap_db:
            nmap.load(opts.nmap_db)  # a path the user typed must work: a one-line data error
    return opts


def nmap_note(opts: Any) -> str | None:
    """The note the commands print when nmap's database is not there (None when it is, or
    when --no-nmap was given)."""
    if not getattr(opts, "nmap", False):
        return None
    from portatlas.identify import nmap

    return None if nmap.find_db(opts.nmap_db) else nmap.missing_note(opts.nmap_db)


def lines(service: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """Extra lines under 'identified:' for a verdict dict: TLS, facts, why unidentified."""
    if not service:
        return []
    from portatlas.identify.tls import summary

    out = []
    basis = service.get("basis") or {}
    if basis.get("text") and service.get("outcome") == "identified":
        out.append(f"{indent}how:        {basis['text']}")
    if service.get("tls"):
        out.append(f"{indent}tls:        {summary(service['tls'])}")
    facts = _facts(service.get("extra") or {})
    if facts:
        out.append(f"{indent}facts:      {facts}")
    if service.get("outcome") != "identified" and service.get("reason"):
        out.append(f"{indent}why:        {service['reason']}")
    return out


def _facts(extra: dict[str, Any]) -> str:
    shown = []
    for key in ("info", "cpe", "carrier", "hostname", "title", "server", "host_key_types", "extensions", "features",
                "capabilities", "http2", "starttls", "stls", "auth_tls", "modules",
                "preferred_scheme", "behaviour"):
        value = extra.get(key)
        if value in (None, "", [], False):
            continue
        if isinstance(value, list):
            value = ", ".join(v["module"] if isinstance(v, dict) else str(v) for v in value[:8]) \
                + (" …" if len(value) > 8 else "")
        shown.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(shown)[:300]


# --- portatlas local --identify ----------------------------------------------------------------
def local_target(address: str) -> str | None:
    """Where to connect to reach a listener of this host: its own address, or the loopback of
    its family when it listens on every address. None for addresses we never connect to."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    if ip.is_multicast:
        return None
    return str(ip)


def identify_listeners(sockets: list[dict[str, Any]], opts: Any, deadline: float = 60.0) -> None:
    """Identify this host's own listening sockets (socket dicts of `portatlas local`), in
    place: each gets an 'identified' verdict dict. Only listeners of the namespace/host we
    run in are contacted (their own address, or loopback for wildcard ones)."""
    from portatlas.identify import identify_many

    targets, owners = [], []
    for sock in sockets:
        listening = sock.get("state") in ("LISTEN", "listen") or sock.get("transport") == "udp"
        target = local_target(sock.get("address") or "") if listening else None
        if target is None or not sock.get("port"):
            continue
        key = (target, int(sock["port"]), sock["transport"])
        if key not in targets:
            targets.append(key)
        owners.append((sock, targets.index(key)))
    if not targets:
        return
    batch = identify_many(targets, options=opts, deadline=deadline)
    for sock, index in owners:
        sock["identified"] = batch.results[index].to_dict()


def local_lines(sockets: list[dict[str, Any]], style: Any) -> list[str]:
    """'Identified' section of `portatlas local --identify`."""
    rows = []
    for sock in sockets:
        verdict = sock.get("identified")
        if not verdict:
            continue
        where = f"{sock['port']}/{sock['transport']}"
        if verdict["outcome"] == "identified":
            what = " ".join(p for p in (verdict.get("service") or verdict.get("protocol"),
                                        verdict.get("product"), verdict.get("version")) if p)
        else:
            what = f"{verdict['outcome']}: {verdict.get('reason', '')}"
        regs = [s.get("service") for s in sock.get("services") or [] if s.get("service")]
        note = ""
        said = {verdict.get("protocol"), verdict.get("service")} - {None}
        if regs and said and not said & set(regs) and verdict["outcome"] == "identified":
            note = style(f"  (registered: {', '.join(regs[:3])})", "yellow")
        rows.append(f"  {where:<11} {sock.get('address', ''):<24} {what}{note}")
    if not rows:
        return []
    return ["", style("Identified (what answers on each listener)", "bold"), *rows]
