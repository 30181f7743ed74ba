"""Terminal lines for identification verdicts (the dicts of Verdict.to_dict()): the lines
under "identified:" of `check`, and the "Identified" section of `local --identify`."""

from __future__ import annotations

from typing import Any


def lines(service: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """Extra lines under 'identified:' for a verdict dict: TLS, facts, why unidentified."""
    if not service:
        return []
    from portatlas.identify.tls import summary

    out = []
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
    for key in ("hostname", "title", "server", "host_key_types", "extensions", "features",
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
