"""Text of `portatlas changes`, `local --save --changes` and `local --watch --save`."""

from __future__ import annotations

from typing import Any

from portatlas.changes.diff import FACET_WORDS
from portatlas.textsafe import printable as safe


def document_lines(doc: dict[str, Any], style) -> list[str]:
    what = f"scan {doc['name']!r}" if doc["kind"] == "scan" else f"listeners on {doc['name']}"
    intervals = doc["intervals"]
    if not intervals:
        return [f"{safe(what)}: only one snapshot so far; nothing to compare yet"]
    out = [style(f"Changes of {safe(what)}", "bold")
           + (f" since {doc['since']}" if doc["since"] else "")]
    for interval in intervals:
        span = f"{_short(interval['from']['time'])} → {_short(interval['to']['time'])}"
        if not interval["changes"]:
            out.append(style(f"{span}  no changes", "dim"))
            continue
        out.append(style(span, "bold"))
        out += ["  " + change_line(c, style) for c in interval["changes"]]
    return out


_MARKS = {"appeared": ("+", "green"), "disappeared": ("-", "red"), "changed": ("~", "cyan")}


def change_line(change: dict[str, Any], style) -> str:
    mark, colour = _MARKS[change["change"]]
    label = change["label"]
    facets = change["facets"]
    if change["change"] == "changed":
        told = "; ".join(f"{_facet_word(f['facet'])}: {_value(f['before'])} → {_value(f['after'])}"
                         for f in change["fields"])
    else:
        told = "  ".join(_value(facets[f]) for f in ("status", "state", "process", "exposure",
                                                     "reachability", "identification")
                         if facets.get(f) is not None)
    return f"{style(mark, colour, 'bold')} {safe(label):<28} {safe(told)}".rstrip()


def _facet_word(facet: str) -> str:
    return FACET_WORDS.get(facet, facet)


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "none"
    if isinstance(value, dict):
        if "verdict" in value:
            return str(value["verdict"])
        shown = [str(value[k]) for k in ("service", "protocol", "product", "version")
                 if value.get(k)]
        if shown:
            return " ".join(dict.fromkeys(shown))
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    return str(value)


def _short(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z") + " UTC"
