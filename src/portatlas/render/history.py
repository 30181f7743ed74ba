"""Terminal lines for history data: the section of `portatlas PORT` and `portatlas history`."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any


from portatlas.render.terminal import terminal_width, wrap

_BASIS = {"registered": "registration date", "modified": "modification date",
          "note": "record's note"}
_KIND = {"present": "", "added": "added", "removed": "removed", "changed": "changed",
         "deassigned": "de-assigned", "reserved": "reserved", "assigned": "assigned again"}


def merge_transports(events: dict[str, list[dict[str, Any]]]) -> list[tuple[list[str], dict[str, Any]]]:
    """Events that are the same on several transports (tcp/udp twins) shown once."""
    merged: list[tuple[list[str], dict[str, Any]]] = []
    index: dict[tuple, int] = {}
    for transport, items in events.items():
        for event in items:
            key = _event_key(event)
            if key in index:
                merged[index[key]][0].append(transport)
            else:
                index[key] = len(merged)
                merged.append(([transport], event))
    merged.sort(key=lambda m: (_order_date(m[1]), m[1]["by_release"] or ""))
    return merged


def _event_key(event: dict[str, Any]) -> tuple:
    record = dict(event["record"])
    record.pop("transport", None)
    return (event["kind"], event["date"], event["after_release"], event["by_release"],
            repr(sorted(record.items())), repr(event.get("changes")))


def _order_date(event: dict[str, Any]) -> str:
    # events placed by their own date where known, else by the release that first showed them
    return event["date"] or event["after_release"] or ""


def when(event: dict[str, Any]) -> str:
    if event["date"]:
        basis = _BASIS.get(event["date_basis"] or "", "")
        return f"{event['date']} ({basis})" if basis else event["date"]
    if event["after_release"]:
        return f"between releases {event['after_release']} and {event['by_release']}"
    return f"already in {event['by_release']}, the oldest release imported"


def _short(value: Any, limit: int = 70) -> str:
    if value is None or value == [] or value == "":
        return "none"
    if isinstance(value, list):
        value = ", ".join(value)
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe(event: dict[str, Any]) -> str:
    record = event["record"]
    name = record["service"] or "(no service name)"
    ports = f" (ports {record['ports']})" if record["ports"] and "-" in record["ports"] else ""
    what = f"{name}: {record['description'] or '-'}{ports}"
    kind = event["kind"]
    if kind == "present":
        return what
    if kind in ("added", "removed"):
        return f"{_KIND[kind]} {what}"
    if event.get("changes"):
        parts = [f"{c['field']} {_short(c['old'], 40)} → {_short(c['new'], 40)}"
                 for c in event["changes"] if c["field"] not in ("modified", "notes")]
        if any(c["field"] == "notes" for c in event["changes"]):
            parts.append("note changed")
        return f"{_KIND.get(kind, kind)}: " + ("; ".join(parts) or "modification date only")
    return f"{_KIND.get(kind, kind)} {what}"


def timeline_lines(data: dict[str, Any], style, width: int, *, compact: bool) -> list[str]:
    events = data["registry_timeline"]
    releases = data["releases"]
    out: list[str] = []
    if not releases:
        out.append("  (this database holds no registry releases; run 'portatlas data update')")
        return out
    if not events:
        out.append(f"  No record for this port in any of the {len(releases)} releases imported.")
        return out
    merged = merge_transports(events)
    if compact and all(e["kind"] == "present" for _, e in merged) and len(releases) > 1:
        for transports, event in merged:
            out += wrap(f"{', '.join(transports)}: {describe(event)} — unchanged in all "
                        f"{len(releases)} releases imported ({releases[0]['label']} to "
                        f"{releases[-1]['label']})", width, "  ")
        return out
    for transports, event in merged:
        head = f"{style(when(event), 'bold')}  [{', '.join(transports)}]"
        out.append("  " + head)
        out += wrap(describe(event), width, "      ")
        notes = event["record"].get("notes")
        if notes and (event["kind"] != "present" or event["date_basis"] == "note"):
            out += wrap(style("registry note: ", "dim") + notes, width, "      ")
    return out


def notes_lines(notes: list[dict[str, Any]], style, width: int) -> list[str]:
    out: list[str] = []
    for note in notes:
        tag = f" [{note['category']}]" if note.get("category") else ""
        out.append(f"  {style(note['title'], 'bold')}{style(tag, 'dim')}  "
                   f"({', '.join(note['transports'])})")
        out += wrap(note["text"], width, "      ")
        out += wrap(style("sources: " + "; ".join(s["label"] for s in note["sources"]), "dim"),
                    width, "      ")
    return out


def section_lines(data: dict[str, Any], style, *, compact: bool = True) -> list[str]:
    width = terminal_width()
    releases = data["releases"]
    span = (f"{len(releases)} registry releases, {releases[0]['label']} to {releases[-1]['label']}"
            if releases else "no registry releases imported")
    out = [style("History", "bold") + style(f"  (registry timeline from {span})", "dim")]
    out += timeline_lines(data, style, width, compact=compact)
    if data["curated_history"]:
        out.append(style("Origin and history", "bold") + style("  (portatlas notes, not the registry)", "dim"))
        out += notes_lines(data["curated_history"], style, width)
    if data["de_facto_uses"]:
        out.append(style("In practice", "bold")
                   + style("  (portatlas notes on de-facto use, not the registry)", "dim"))
        out += notes_lines(data["de_facto_uses"], style, width)
    return out
