"""Importer for IANA's service-names-port-numbers.csv (the form most people download).

The CSV has no <people> section: assignees and contacts are bare ids ("[Jon_Postel]"), so
names are derived from the ids unless a person table from an XML release is passed in.
"""

from __future__ import annotations

import csv
import io
import re
from typing import IO

from portatlas.errors import DataError
from portatlas.kb.records import (RawRecord, Registry, build_entries, reference_from_token,
                                 refuse_controls)
from portatlas.model import Person

HEADER = ["Service Name", "Port Number", "Transport Protocol", "Description", "Assignee",
          "Contact", "Registration Date", "Modification Date", "Reference", "Service Code",
          "Unauthorized Use Reported", "Assignment Notes"]
_TOKEN = re.compile(r"\[([^\[\]]+)\]")
_PERSON_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_MAX_FIELD = 1 << 20  # a registry field is a few hundred bytes; refuse absurd ones
# One CSV record as RFC 4180 writes it: quoted fields ("" for a quote inside) or unquoted
# fields without any quote, separated by commas, ending with a line break or the file.
_FIELD = r'(?:"(?:[^"]|"")*"|[^",\r\n]*)'
_RECORD = re.compile(_FIELD + "(?:," + _FIELD + r")*(?:\r?\n)?")


def _person_id(cell: str) -> str | None:
    match = _TOKEN.search(cell)
    if match:
        return match.group(1).strip()
    return cell.strip() or None


def _note_tokens(text: str) -> list:
    """Split note text into strings and ('person', id) tokens, like the XML importer does."""
    pieces: list = []
    last = 0
    for match in _TOKEN.finditer(text):
        token = match.group(1)
        if token.lower().startswith(("http://", "https://")):
            # the XML has these as inline URIs; drop the brackets so both read the same
            pieces.append(text[last:match.start()])
            pieces.append(token)
            last = match.end()
            continue
        if token.upper().startswith("RFC") or not _PERSON_ID.match(token) or "_" not in token:
            continue
        pieces.append(text[last:match.start()])
        pieces.append(("person", token))
        last = match.end()
    pieces.append(text[last:])
    return pieces


def parse_registry_csv(stream: IO[bytes], *, label: str = "CSV",
                       people: dict[str, Person] | None = None) -> Registry:
    """Parse the registry CSV from a binary stream; raises DataError on any broken row."""
    raw_lines: list[str] = []

    def lines_kept(source: IO[str]):
        # the csv module does not say whether a field was quoted: keep the raw text of each
        # record so that a quote inside an unquoted field (a"b) can be refused below
        for line in source:
            raw_lines.append(line)
            yield line

    try:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        reader = csv.reader(lines_kept(text), strict=True)
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{label}: unreadable CSV ({exc})") from None
    if header is None:
        raise DataError(f"{label}: empty file")
    if [h.strip() for h in header] != HEADER:
        raise DataError(f"{label}: unexpected header (not IANA's registry CSV): {','.join(header)[:120]}")
    registry = Registry(source_format="csv")
    if people:
        registry.people.update(people)
    try:
        raw_lines.clear()
        for row in reader:
            where = f"{label} line {reader.line_num}"
            record_text = "".join(raw_lines)
            raw_lines.clear()
            if '"' in record_text and not _RECORD.fullmatch(record_text):
                raise DataError(f"{where}: stray quote (a \" inside a field that is not quoted)")
            refuse_controls(record_text, where)
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(HEADER):
                raise DataError(f"{where}: expected {len(HEADER)} fields, found {len(row)}")
            if any(len(cell) > _MAX_FIELD for cell in row):
                raise DataError(f"{where}: field too long")
            (name, number, protocol, description, assignee, contact, registered, modified,
             reference, service_code, unauthorized, notes) = row
            raw = RawRecord(date=registered.strip() or None, updated=modified.strip() or None)
            raw.where = where
            raw.name, raw.number, raw.protocol = name, number, protocol
            raw.description = description
            raw.assignee = _person_id(assignee)
            contact_id = _person_id(contact)
            raw.contacts = [contact_id] if contact_id else []
            for token in _TOKEN.findall(reference):
                ref = reference_from_token(token)
                raw.xrefs.append((ref.kind, ref.value, None))
            raw.service_code = service_code.strip() or None
            raw.unauthorized = unauthorized.strip() or None
            raw.note = _note_tokens(notes) if notes.strip() else None
            registry.records.append(raw)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{label} line {reader.line_num}: broken CSV ({exc})") from None
    if not registry.records:
        raise DataError(f"{label}: no registry rows found")
    build_entries(registry)
    registry.updated = registry.newest_record_date
    return registry
