"""One verdict from two sources: a portatlas protocol module and nmap's match lines. Pure.

The rules (docs/identify.md, "One verdict"):
 1. A full protocol exchange parsed by a portatlas module (confidence >= TENTATIVE) beats a
    regular expression: the module names the protocol. nmap fills only what it left empty
    (product, version, info, hostname, os, device, CPE) and only when nmap names the same
    service family.
 2. Except for carriers: when the module recognised only the carrier (HTTP, TLS) and nmap's
    hard match names the service carried (ipp, http-proxy, upnp...), the service is named
    (protocol = nmap's name, extra.carrier = the module's protocol).
 3. A soft match never overrides a hard one, nor a module's confident verdict.
 4. Without a confident module verdict, nmap's hard match names the port (confidence 0.85),
    else its soft match (0.8), else the module's tentative verdict if it reaches
    MIN_NAMED, else the port is open-unidentified, with what was seen - except that when
    at least ECHO_MIN portatlas modules' requests came back unchanged (session.py's
    reflections), and that was what most modules tried got, the port is `echo`.
Every verdict carries `basis`: which source decided, and how.

And one rule over all of them, applied to every final verdict (`not_the_carrier`, called
by identify._Job for every path, merged or not): the carrier is never the service. TLS
found with nothing identified inside (the TLS module's fallback, or an nmap line that names
only `ssl`/`dtls`) is "open-unidentified" with the TLS facts and why the inside is unknown
(e.g. the port's time ran out), never a verdict `tls`. Under time pressure the engine
answers less, never wrong.
"""

from __future__ import annotations

from typing import Any

from portatlas.identify.base import IDENTIFIED, TENTATIVE, UNIDENTIFIED, Verdict
from portatlas.identify.session import REFLECTED

HARD_CONFIDENCE = 0.85  # an nmap hard match on the reply to its own probe
SOFT_CONFIDENCE = 0.8   # an nmap soft match
MIN_NAMED = 0.6         # below this a module's guess is not a verdict: open-unidentified
ECHO_MIN = 2            # different requests sent back unchanged before a port is `echo`
ECHO_CONFIDENCE = 0.85

# our protocol name -> the nmap service names of the same family (same protocol spoken)
FAMILIES: dict[str, tuple[str, ...]] = {
    "http": ("http", "https"), "tls": ("ssl",), "ssh": ("ssh",), "smtp": ("smtp", "smtps"),
    "ftp": ("ftp", "ftps"), "imap": ("imap", "imaps"), "pop3": ("pop3", "pop3s"),
    "redis": ("redis",), "memcached": ("memcached",), "rsync": ("rsync",),
    "telnet": ("telnet",), "irc": ("irc", "ircs"), "xmpp": ("jabber", "xmpp", "xmpp-client"),
    "rtsp": ("rtsp",), "sip": ("sip",), "mysql": ("mysql",),
    "postgresql": ("postgresql", "pgbouncer", "pgpool"),
    "mongodb": ("mongodb", "mongod"), "mqtt": ("mqtt",), "amqp": ("amqp",),
    "ldap": ("ldap", "ldaps"), "rdp": ("ms-wbt-server",), "smb": ("microsoft-ds", "netbios-ssn"),
    "vnc": ("vnc",), "dns": ("domain",), "ntp": ("ntp",), "snmp": ("snmp",),
    "mtp": ("mtp",), "ssdp": ("upnp", "ssdp"), "netbios-ns": ("netbios-ns",),
    "h2c": ("http",),
}
# nmap service name -> our protocol name, where the two vocabularies differ
OUR_NAMES = {"domain": "dns", "ms-wbt-server": "rdp", "jabber": "xmpp", "microsoft-ds": "smb",
             "ssl": "tls", "mongod": "mongodb", "https": "http"}
# protocols that carry other services: nmap's more specific name wins over them
CARRIERS = frozenset({"http", "tls", "h2c"})
# names (ours and nmap's) of a security layer only: never the name of a port's service
CARRIER_ONLY = frozenset({"tls", "ssl", "dtls"})


def family(protocol: str | None) -> tuple[str, ...]:
    """nmap's names for our protocol, with their 'ssl/' forms (nmap's name for the same
    service when its reply shows TLS was expected)."""
    if not protocol:
        return ()
    names = FAMILIES.get(protocol, (protocol,))
    return names + tuple("ssl/" + n for n in names)


def our_name(service: str) -> str:
    """Our protocol name for an nmap service name ('ssl/http' -> 'http': the service; the
    TLS part is the carrier)."""
    if service.startswith("ssl/"):
        service = service[4:]
    return OUR_NAMES.get(service, service)


def module_could_name(service: str, module_names: set[str]) -> bool:
    """Could one of these portatlas modules confirm nmap's service (so it is worth waiting
    for its full exchange)?"""
    return any(service in family(name) for name in module_names)


def module_basis(verdict: Verdict) -> dict[str, Any]:
    how = verdict.reason or ("protocol exchange parsed" if verdict.confidence >= 0.95 else
                             "greeting and answer recognised" if verdict.confidence >= TENTATIVE
                             else "weak signs only")
    name = verdict.extra.get("carrier") or verdict.protocol
    return {"by": "portatlas", "module": name, "detail": how,
            "text": f"portatlas {name} module: {how}"}


def nmap_basis(hit: Any, path: str) -> dict[str, Any]:
    via = "" if hit.line_probe == hit.probe else f" (a {hit.line_probe} line, by fallback)"
    kind = "softmatch" if hit.soft else "match"
    inside = " inside TLS" if getattr(hit, "tunnel", None) else ""
    return {"by": "nmap", "probe": hit.probe, "line": hit.line, "file": path,
            "soft": hit.soft, "line_probe": hit.line_probe,
            "text": f"nmap probe {hit.probe}{inside}, {kind} line {hit.line} of {path}{via}"}


def _fill(verdict: Verdict, hit: Any) -> None:
    fields = hit.fields
    verdict.product = verdict.product or fields.get("product")
    verdict.version = verdict.version or fields.get("version")
    for key in ("info", "hostname", "os", "device"):
        if fields.get(key) and not verdict.extra.get(key):
            verdict.extra[key] = fields[key]
    if hit.cpe and not verdict.extra.get("cpe"):
        verdict.extra["cpe"] = list(hit.cpe)


def from_hit(hit: Any, path: str, tls: dict[str, Any] | None = None) -> Verdict:
    """A verdict from an nmap match alone."""
    verdict = Verdict(our_name(hit.service), confidence=SOFT_CONFIDENCE if hit.soft
                      else HARD_CONFIDENCE, tls=tls)
    _fill(verdict, hit)
    verdict.extra["nmap"] = hit.to_dict()
    if getattr(hit, "tunnel", None) == "ssl" and verdict.protocol not in CARRIER_ONLY:
        verdict.extra["carrier"] = "tls"  # found inside TLS: the carrier, as in rule 2
    verdict.basis = nmap_basis(hit, path)
    verdict.reason = verdict.basis["text"]
    return verdict


def merge(module: Verdict | None, engine: Any, path: str | None) -> Verdict | None:
    """The one verdict (see the module text). `engine` is an EngineResult or None; `module`
    the portatlas driver's verdict (None when it was cancelled). Returns None only when both
    are None."""
    hard = engine.hard if engine is not None else None
    soft = engine.soft if engine is not None else None
    tls = engine.tls if engine is not None else None
    if module is not None and module.outcome == IDENTIFIED and module.protocol \
            and module.confidence >= TENTATIVE:
        module.basis = module.basis or module_basis(module)
        if hard is not None:
            if hard.service in family(module.protocol):
                _fill(module, hard)
                module.extra["nmap"] = hard.to_dict()
                module.basis["filled_by"] = nmap_basis(hard, path or "?")["text"]
            elif module.protocol in CARRIERS and hard.service != "ssl":
                carrier = module.protocol
                module.extra["carrier"] = carrier
                module.protocol = our_name(hard.service)
                if hard.product:  # the carrier's product is the server, not the service
                    if module.product:
                        module.extra.setdefault("carrier_product", module.product)
                    module.product, module.version = hard.product, hard.version
                _fill(module, hard)
                module.extra["nmap"] = hard.to_dict()
                module.basis = {**nmap_basis(hard, path or "?"), "carrier": carrier,
                                "module_detail": module.basis["text"]}
                module.basis["text"] += f" (over {carrier}, recognised by the portatlas module)"
                module.reason = module.basis["text"]
            else:
                module.extra["nmap_disagrees"] = hard.to_dict()
        return module
    if hard is not None:
        refuted = _refuted_by(module, hard.service)
        if refuted is None:
            verdict = from_hit(hard, path or "?", tls)
            return _carry_context(verdict, module)
        module.extra["nmap_unconfirmed"] = hard.to_dict()
        module.reason += (f"; nmap's line {hard.line} says {hard.service}, but the portatlas "
                          f"{refuted} module's exchange failed ({module.extra['probes'][refuted]})"
                          ": not named")
        return module
    if soft is not None and not (module is not None and module.outcome == IDENTIFIED
                                 and module.confidence >= MIN_NAMED
                                 and soft.service not in family(module.protocol)):
        verdict = from_hit(soft, path or "?", tls)
        if module is not None and module.outcome == IDENTIFIED \
                and soft.service in family(module.protocol):
            module.basis = module_basis(module)
            _fill(module, soft)
            return module
        return _carry_context(verdict, module)
    weak = engine.weak if engine is not None else None
    if module is None:
        if weak is None:
            return None
        module = Verdict(None, outcome=UNIDENTIFIED, confidence=0.0,
                         reason="sends data nothing recognised")
    if module.outcome == IDENTIFIED and module.confidence < MIN_NAMED:
        module = unidentified_from_guess(module)
    if module.outcome == UNIDENTIFIED:
        echo = echo_verdict(module)
        if echo is not None:
            return echo
    if module.outcome == IDENTIFIED:
        module.basis = module.basis or module_basis(module)
    elif weak is not None:
        module.extra["nmap_weak"] = weak.to_dict()
        module.reason += (f"; nmap's line {weak.line} ({weak.service}) matches, but it asks "
                          "for almost no literal bytes: not named")
    return module


def echo_verdict(module: Verdict) -> Verdict | None:
    """`echo` when ECHO_MIN or more modules' requests came back unchanged, and they are most
    of the modules tried; else None."""
    tried = module.extra.get("probes") or {}
    reflected = sorted(name for name, why in tried.items() if why == REFLECTED)
    if len(reflected) < ECHO_MIN or 2 * len(reflected) <= len(tried):
        return None
    text = (f"portatlas: {len(reflected)} probes' requests came back unchanged "
            f"({', '.join(reflected[:6])}): an echo service")
    verdict = Verdict("echo", confidence=ECHO_CONFIDENCE, evidence=module.evidence,
                      reason=text, extra={"reflected": reflected, "portatlas_probes": tried})
    verdict.basis = {"by": "portatlas", "module": "session", "detail": "reflections",
                     "text": text}
    return verdict


def _refuted_by(module: Verdict | None, service: str) -> str | None:
    """The portatlas module of `service`'s family that talked to the port and failed (a full
    exchange that failed outweighs a regular expression), or None."""
    if module is None or module.outcome != UNIDENTIFIED:
        return None
    for name, why in (module.extra.get("probes") or {}).items():
        if service in family(name) and not str(why).startswith("could not connect"):
            return name
    return None


def _carry_context(verdict: Verdict, module: Verdict | None) -> Verdict:
    if module is not None and module.outcome == UNIDENTIFIED:
        verdict.evidence = module.evidence
        for key in ("behaviour", "probes"):
            if key in module.extra:
                verdict.extra.setdefault("portatlas_" + key, module.extra[key])
    elif module is not None and module.outcome == IDENTIFIED:
        verdict.extra["portatlas_guess"] = {"protocol": module.protocol,
                                            "confidence": round(module.confidence, 2)}
        verdict.evidence = module.evidence
    return verdict


def unidentified_from_guess(module: Verdict) -> Verdict:
    guess = {"protocol": module.protocol, "confidence": round(module.confidence, 2)}
    return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0, evidence=module.evidence,
                   reason=f"only weak signs of {module.protocol} (confidence "
                          f"{module.confidence:.2f} < {MIN_NAMED}): not named",
                   extra={"guess": guess, "behaviour": "text"})


def names_carrier_only(verdict: Verdict) -> bool:
    """Does this verdict name nothing but the TLS/DTLS layer?"""
    return verdict.outcome == IDENTIFIED and (verdict.protocol or "").lower() in CARRIER_ONLY


def not_the_carrier(verdict: Verdict, why: str | None = None) -> Verdict:
    """The carrier is never the service: a verdict naming only TLS (or DTLS) becomes
    open-unidentified, keeping the TLS facts, the evidence that TLS was completed (or seen in
    nmap's reply) and why the service inside is unknown (`why`, e.g. the port's time ran out;
    else what the inner search saw). Any other verdict is returned as it is."""
    if not names_carrier_only(verdict):
        return verdict
    layer = "DTLS" if (verdict.protocol or "").lower() == "dtls" else "TLS"
    extra = dict(verdict.extra)
    nmap_hit = extra.pop("nmap", None)
    for key in ("cpe", "info", "hostname", "os", "device"):
        extra.pop(key, None)  # facts of the carrier's line, kept inside nmap_carrier
    if nmap_hit is not None:
        extra["nmap_carrier"] = nmap_hit
    cert = (verdict.tls or {}).get("certificate") or {}
    if verdict.tls:
        seen = f"{layer} handshake completed ({verdict.tls.get('version')}"
        subject = cert.get("subject") or cert.get("subject_cn")
        seen += f", certificate {subject})" if subject else ")"
    elif nmap_hit is not None:
        seen = (f"answers nmap's {nmap_hit.get('probe')} probe with a {layer} record "
                f"(line {nmap_hit.get('line')})")
    else:
        seen = f"speaks {layer}"
    inside = extra.get("inside") or {}
    if not why:
        why = inside.get("reason") or "no probe inside recognised it"
    reason = f"{seen}; the service inside {layer} was not identified: {why}"
    extra["carrier"] = layer.lower()
    extra["behaviour"] = "tls-inside-unknown"
    extra.setdefault("inside", {})
    extra["inside"] = {**extra["inside"], "identified": False, "why": why}
    basis = {"by": "none", "text": reason, "carrier": layer.lower()}
    if verdict.basis and verdict.basis.get("text"):
        basis["carrier_by"] = verdict.basis["text"]
    return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0, evidence=verdict.evidence,
                   tls=verdict.tls, reason=reason, extra=extra, basis=basis)
