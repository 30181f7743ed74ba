"""The one sentence that puts the registry's claim beside what answers on a port:

    103/tcp is registered to gppitnp; what answers here is SSH, OpenSSH 9.2p1 (differs)

used by `portatlas check` (render.scan) and by identify.describe(), so both say the same thing
with the same matching rule.
"""

from __future__ import annotations

from typing import Any, Sequence


def matches(names: Sequence[str], service: str | None, protocol: str | None) -> bool:
    """Whether what answers is what the registry names: the same name, or a registered name
    that starts with the protocol (http answers on a port registered as http-alt)."""
    what = (service or protocol or "").lower()
    proto = (protocol or "").lower()
    for name in names:
        n = name.lower()
        if n == what or (proto and (n == proto or n.startswith(proto))):
            return True
    return False


def claim_vs_truth(where: str, names: Sequence[str], description: str | None,
                   verdict: dict[str, Any]) -> str:
    """where: '103/tcp'; names: the registered service names; description: the registry's
    words when it names no service ("any private terminal access"); verdict: a Verdict's
    to_dict()."""
    if names:
        reg = f"{where} is registered to {', '.join(names)}"
    elif description:
        reg = f"{where} is registered to \"{description}\""
    else:
        reg = f"{where} has no registered service name"
    outcome = verdict.get("outcome")
    if outcome == "identified" and verdict.get("protocol"):
        what = (verdict.get("service") or verdict["protocol"]).upper()
        product = " ".join(x for x in (verdict.get("product"), verdict.get("version")) if x)
        answer = what + (f", {product}" if product else "")
        if not (names or description):
            return f"{reg}; what answers here is {answer}"
        verb = "matches" if matches(names, verdict.get("service"), verdict["protocol"]) else "differs"
        return f"{reg}; what answers here is {answer} ({verb})"
    if outcome == "open-unidentified":
        return f"{reg}; something answers but was not recognised ({verdict.get('reason')})"
    return f"{reg}; {outcome}: {verdict.get('reason')}"
