"""Parsing a series of registry releases quickly: only the records that changed are parsed.

Consecutive IANA releases differ in a few dozen of their ~14,500 records, and a record's
history record depends only on its own XML (person ids are kept as ids). So a
ReleaseParser remembers, for every `<record>` element it has parsed, the exact bytes and the
history record they gave. For the next release it:

1. checks the whole file is well-formed XML without a DOCTYPE (expat, no Python callbacks:
   ~35 ms for 4 MB) — the same safety rule the importer applies;
2. cuts the file into its header, its `<record>` elements (which must be siblings separated
   only by whitespace) and its tail (the `<people>` section);
3. hands the header, the records it has not seen and the tail to the registry importer
   itself (kb.iana_xml.parse_registry_xml), so every importer rule applies to new records;
4. reuses the remembered history record for every record it has seen.

Notes that name a person inline (`<note>... <xref type="person" .../>`) are rendered with the
person's name from the `<people>` section; such records are remembered together with that
section's bytes. Whenever the cut does not look exactly like the registry's usual layout
(comments, CDATA, nested records, or a record count that does not add up), the file is
parsed in full the ordinary way: this module is an optimisation, never a second importer.
"""

from __future__ import annotations

import io
import re
import xml.parsers.expat

from portatlas.errors import DataError
from portatlas.history import compare
from portatlas.history.releases import Release, from_registry
from portatlas.kb.sources import read_source, parse_source
from portatlas.kb.iana_xml import parse_registry_xml
from portatlas.kb.records import person_from_raw, record_key

_UNUSUAL = (b"<!--", b"<![CDATA[", b"<!DOCTYPE", b"<!ENTITY")
_RICH = re.compile(rb"<(note|description|unauthorized)[\s>].*?</\1\s*>", re.S)
_PERSON_REF = re.compile(rb'<xref\s+type="person"\s+data="([^"]*)"')
_PERSON_ID = re.compile(rb'<person\s+id="([^"]*)"\s*>')


class _Refused(Exception):
    pass


def _refuse(*_args: object) -> None:
    raise _Refused("the file declares a DOCTYPE or entities (refused)")


def check_well_formed(data: bytes, label: str) -> None:
    """Raise DataError unless `data` is well-formed XML without DOCTYPE or entities."""
    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except _Refused as exc:
        raise DataError(f"{label}: {exc}") from None
    except xml.parsers.expat.ExpatError as exc:
        raise DataError(f"{label}: not a well-formed registry XML file ({exc})") from None


def _elements(data: bytes, tag: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """(before, [each <tag>...</tag> element], after) when the elements are consecutive
    siblings separated only by whitespace; None for any other layout."""
    close = b"</" + tag + b">"
    opening = b"<" + tag
    parts = data.split(close)
    if len(parts) < 2:
        return data, [], b""
    chunks = []
    head = b""
    for i, part in enumerate(parts[:-1]):
        start = part.rfind(opening)
        if start < 0 or part[start + len(opening):start + len(opening) + 1] not in (b" ", b">", b"\n"):
            return None
        if i == 0:
            head = part[:start]
        elif part[:start].strip() or part.count(opening) != 1:
            return None  # something other than whitespace between two elements, or nesting
        chunks.append(part[start:] + close)
    if head.count(opening) or parts[-1].count(opening):
        return None
    return head, chunks, parts[-1]


def _people_named(chunk: bytes) -> list[bytes] | None:
    """Ids of the people a record names inside its note/description text; None if unsure."""
    ids: list[bytes] = []
    for match in _RICH.finditer(chunk):
        text = match.group(0)
        if b"person" in text:
            found = _PERSON_REF.findall(text)
            if not found:
                return None
            ids.extend(found)
    return ids


class ReleaseParser:
    """Parses releases one after another, reusing the records already seen (see module doc)."""

    def __init__(self) -> None:
        # record bytes (or (bytes, bytes of the people it names)) -> (history record or None
        # for a gap row, the importer's record_key of the entry)
        self._records: dict[object, tuple[tuple | None, tuple]] = {}
        self._people: dict[bytes, tuple[str, str | None, str | None]] = {}  # person bytes
        self.parsed_records = 0   # records that went through the importer
        self.reused_records = 0   # records taken from an earlier release
        self.full_parses = 0      # files parsed the ordinary way

    def parse(self, location: str) -> Release:
        """Read and parse one release file (XML or CSV); raises DataError like parse_file."""

        source = read_source(location)
        if source.format == "csv":
            return self._full(source)
        if source.format != "xml":
            raise DataError(f"{location}: not an IANA registry release (XML or CSV)")
        check_well_formed(source.data, source.location)
        release = None if any(m in source.data for m in _UNUSUAL) else self._incremental(source)
        return release or self._full(source)

    def _incremental(self, source) -> Release | None:
        cut = _elements(source.data, b"record")
        if cut is None or not cut[1]:
            return None
        header, records, tail = cut
        cut = _elements(tail, b"person")
        if cut is None:
            return None
        people_head, people, people_tail = cut
        by_id: dict[bytes, bytes] = {}
        for chunk in people:
            match = _PERSON_ID.match(chunk)
            if match is None:
                return None
            by_id[match.group(1)] = chunk
        keys: list[object] = []
        todo: list[int] = []
        needed: dict[bytes, None] = {}  # person elements the parse must see
        for i, chunk in enumerate(records):
            key: object = chunk
            if chunk not in self._records:
                named = _people_named(chunk)
                if named is None:
                    return None
                if named:
                    key = (chunk, tuple(by_id.get(pid, b"") for pid in named))
                    if key not in self._records:
                        needed.update((by_id[p], None) for p in named if p in by_id)
            keys.append(key)
            if i == 0 or key not in self._records:
                todo.append(i)
        for chunk in people:
            if chunk not in self._people:
                needed[chunk] = None
        new_people = list(needed)
        document = b"".join((header, b"\n".join(records[i] for i in todo), people_head,
                             b"\n".join(new_people), people_tail))
        registry = parse_registry_xml(io.BytesIO(document), label=source.location)
        if len(registry.entries) != len(todo) or len(registry.people_raw) != len(new_people):
            return None  # the importer merged or dropped something: no shortcut
        for i, entry in zip(todo, registry.entries):
            self._records[keys[i]] = (compare.from_entry(entry), record_key(entry))
        for chunk, raw in zip(new_people, registry.people_raw):
            person = person_from_raw(raw)
            self._people[chunk] = (person.id, person.name, person.org)
        self.parsed_records += len(todo)
        self.reused_records += len(records) - len(todo)
        registry.entries = []  # from_registry needs only the release date from it
        release = from_registry(registry, location=source.location, format="xml",
                                sha256=source.sha256)
        # as the importer does, an exact repeat of an earlier record of the file is kept once
        seen: set[tuple] = set()
        release.records = []
        for key in keys:
            record, entry_key = self._records[key]
            if entry_key in seen:
                continue
            seen.add(entry_key)
            if record is not None:
                release.records.append(record)
        release.people = {}
        for chunk in people:
            pid, name, org = self._people[chunk]
            if pid:
                release.people[pid] = (name, org)
        return release

    def _full(self, source) -> Release:
        registry = parse_source(source)
        self.full_parses += 1
        return from_registry(registry, location=source.location, format=source.format,
                             sha256=source.sha256)


def parse_series(locations: list[str]) -> list[Release | DataError]:
    """Parse release files in the given order (oldest first is fastest), sharing one cache."""
    parser = ReleaseParser()
    out: list[Release | DataError] = []
    for location in locations:
        try:
            out.append(parser.parse(location))
        except DataError as exc:
            out.append(exc)
    return out
