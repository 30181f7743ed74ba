"""What the XML and CSV importers share: raw records, people, and their turning into Entries."""

from __future__ import annotations

import re
from typing import Any

from portatlas.errors import DataError
from portatlas.model import TRANSPORTS, Entry, Person, Reference

_ALIAS = re.compile(r'alias to "([^"]+)"', re.I)
_PREVIOUSLY = re.compile(r"previously\s+([A-Za-z0-9][\w.+/-]*)", re.I)
_BRACKET = re.compile(r"\[([^\[\]]+)\]")
_RFC = re.compile(r"^RFC(\d+)$", re.I)


class RawRecord:
    """A record as read, before people and references are resolved."""

    __slots__ = ("name", "protocol", "number", "description", "assignee", "contacts", "xrefs",
                 "date", "updated", "service_code", "unauthorized", "note", "where")

    def __init__(self, date: str | None = None, updated: str | None = None) -> None:
        self.name = ""
        self.protocol = ""
        self.number = ""
        # description/note/unauthorized: a string, or a list of strings and (kind, data) tokens
        self.description: Any = ""
        self.assignee: str | None = None
        self.contacts: list[str] = []
        self.xrefs: list[tuple[str, str, str | None]] = []
        self.date = date
        self.updated = updated
        self.service_code: str | None = None
        self.unauthorized: Any = None
        self.note: Any = None
        self.where = ""


class Registry:
    """A parsed registry release: entries, people, and the release's own date."""

    def __init__(self, source_format: str) -> None:
        self.source_format = source_format
        self.title: str | None = None
        self.updated: str | None = None
        self.records: list[RawRecord] = []
        self.people_raw: list[dict[str, Any]] = []
        self.people: dict[str, Person] = {}
        self.entries: list[Entry] = []
        # where the records came from, for messages ("file.xml record 12")
        self.label: str | None = None
        self.duplicates = 0

    @property
    def newest_record_date(self) -> str | None:
        dates = [d for e in self.entries for d in (e.registered, e.modified) if d]
        return max(dates) if dates else None


def person_from_raw(raw: dict[str, Any]) -> Person:
    uri = raw.get("uri") or None
    email = None
    if uri and uri.lower().startswith("mailto:"):
        # IANA writes "&" for "@" to keep addresses away from harvesters
        email = uri[7:].replace("&", "@")
    return Person(raw.get("id", ""), raw.get("name") or None, raw.get("org") or None, email, uri)


def _person(people: dict[str, Person], pid: str | None) -> Person | None:
    if not pid:
        return None
    person = people.get(pid)
    if person is None:
        person = Person(pid)
        people[pid] = person
    return person


def render_text(value: Any, people: dict[str, Person]) -> str | None:
    """Flatten note text: inline person references become names, others their label."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        parts: list[str] = []
        for piece in value:
            if isinstance(piece, tuple):
                kind, data = piece
                if kind == "person":
                    person = people.get(data)
                    parts.append(person.display if person else data.replace("_", " "))
                elif kind == "rfc":
                    parts.append(f"[{data.upper()}]")
                else:
                    parts.append(data)
            else:
                parts.append(piece)
        text = "".join(parts)
    # one line per line of the source, without the XML's indentation or blank lines
    text = "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return text or None


def parse_ports(number: str, where: str) -> tuple[int | None, int | None]:
    number = number.strip()
    if not number:
        return None, None
    lo_text, sep, hi_text = number.partition("-")
    # ASCII digits only: int() would also read '٥٧' (Arabic-Indic) or '５７' as 57
    if not (_ascii_number(lo_text) and (not sep or _ascii_number(hi_text))):
        raise DataError(f"{where}: bad port number {number!r}")
    lo = int(lo_text)
    hi = int(hi_text) if sep else lo
    if not (0 <= lo <= hi <= 65535):
        raise DataError(f"{where}: port number out of range {number!r}")
    return lo, hi


def _ascii_number(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


# Characters no registry text has: C0 controls other than tab/newline/CR, DEL, C1 controls.
# The XML parser refuses C0 controls itself; the CSV and services importers and any C1
# control are checked here, so a terminal escape or a NUL never gets into the database.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def refuse_controls(text: str, where: str) -> None:
    """DataError if `text` holds a control character (named by its code and column)."""
    match = _CONTROL.search(text)
    if match:
        raise DataError(f"{where}: control character U+{ord(match.group()):04X} at column "
                        f"{match.start() + 1} (refused: registry text never has one)")


def record_key(entry: Entry) -> tuple:
    """Everything an entry says: two records with the same key are the same record."""
    return (entry.service, entry.port_lo, entry.port_hi, entry.transport, entry.description,
            entry.assignee.id if entry.assignee else None,
            entry.contact.id if entry.contact else None, entry.registered, entry.modified,
            tuple((r.kind, r.value, r.section) for r in entry.references), entry.service_code,
            entry.unauthorized, entry.notes)


def reference_from_token(token: str) -> Reference:
    """A CSV reference such as 'RFC6335', 'RFC-ietf-x-12', 'http://…' or a person id."""
    token = token.strip()
    match = _RFC.match(token)
    if match:
        return Reference("rfc", f"rfc{int(match.group(1))}")
    lower = token.lower()
    if token.isdigit():
        return Reference("note", token)  # a footnote of the registry
    if lower.startswith(("rfc-", "draft-")):
        return Reference("draft", token)
    if lower.startswith(("http://", "https://", "ftp://")):
        return Reference("uri", token)
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", token) and "_" in token:
        return Reference("person", token)
    return Reference("text", " ".join(token.split()))


def build_entries(registry: Registry) -> None:
    """Resolve people and references, validate, and fill registry.entries."""
    people = registry.people
    for raw in registry.people_raw:
        for value in raw.values():
            if isinstance(value, str):
                refuse_controls(value, f"{registry.label or 'registry'} person {raw.get('id')!r}")
        person = person_from_raw(raw)
        if person.id:
            people[person.id] = person
    entries = registry.entries
    source = f"iana-{registry.source_format}"
    seen: set[tuple] = set()
    for index, raw in enumerate(registry.records, 1):
        where = raw.where or f"record {index}"
        if registry.label and not raw.where:
            where = f"{registry.label} {where}"
        transport = raw.protocol.strip().lower() or None
        if transport is not None and transport not in TRANSPORTS:
            raise DataError(f"{where}: unknown transport {raw.protocol!r}")
        lo, hi = parse_ports(raw.number, where)
        service = raw.name.strip() or None
        notes = render_text(raw.note, people)
        description = render_text(raw.description, people) or ""
        if not service and lo is None:
            raise DataError(f"{where}: record has neither a service name nor a port number")
        refs: list[Reference] = []
        for text in (raw.assignee, *raw.contacts):
            if text:
                refuse_controls(text, where)
        for kind, data, section in raw.xrefs:
            refuse_controls(data, where)
            if kind == "rfc" and data.lower().startswith("rfc"):
                refs.append(Reference("rfc", data.lower(), section))
            elif kind == "draft" and data.lower().startswith("rfc") and data[3:].isdigit():
                refs.append(Reference("rfc", data.lower(), section))
            else:
                refs.append(Reference(kind, data, section))
        contact = _person(people, raw.contacts[0] if raw.contacts else None)
        assignee = _person(people, raw.assignee) or contact
        alias = _ALIAS.search(notes or "")
        previously = _PREVIOUSLY.search(notes or "")
        for text in (raw.name, raw.number, raw.protocol, description, notes,
                     raw.service_code, raw.date, raw.updated):
            if text:
                refuse_controls(text, where)
        entry = Entry(
            service, lo, hi, transport, description,
            assignee=assignee, contact=contact,
            registered=raw.date or None, modified=raw.updated or None,
            references=tuple(refs), service_code=raw.service_code or None,
            unauthorized=render_text(raw.unauthorized, people), notes=notes,
            alias_of=alias.group(1) if alias else None,
            previously=previously.group(1) if previously else None,
            source=source,
        )
        if entry.unauthorized:
            refuse_controls(entry.unauthorized, where)
        key = record_key(entry)
        if key in seen:
            registry.duplicates += 1  # an exact repeat is stored once
            continue
        seen.add(key)
        entries.append(entry)
