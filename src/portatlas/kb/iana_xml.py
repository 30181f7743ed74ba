"""Importer for IANA's service-names-port-numbers.xml.

A streaming expat parser. Any DOCTYPE is refused outright: the registry never carries one,
and refusing it is what rules out entity expansion ("billion laughs") and external entities
(file or network reads) without relying on the parser's own limits.
"""

from __future__ import annotations

import xml.parsers.expat
from typing import IO, Any

from portatlas.errors import DataError
from portatlas.kb.records import RawRecord, Registry, build_entries

_NS = "http://www.iana.org/assignments"
_SEP = "}"


class _Refused(Exception):
    pass


def _local(tag: str) -> str:
    return tag.rsplit(_SEP, 1)[-1]


class _Parser:
    """Collects records and people from expat events."""

    def __init__(self, label: str = "XML") -> None:
        self.label = label
        self.parser: Any = None
        self.registry = Registry(source_format="xml")
        self._stack: list[str] = []
        self._text: list[str] = []
        self._record: RawRecord | None = None
        self._person: dict[str, Any] | None = None
        self._in_assignee = False
        # text pieces of a <note>/<unauthorized>/<description> with inline xrefs kept as tokens
        self._rich: list[Any] | None = None
        self._pending_text_ref = False

    # expat callbacks ---------------------------------------------------------------
    def start(self, tag: str, attrs: dict[str, str]) -> None:
        name = _local(tag)
        depth = len(self._stack)
        self._stack.append(name)
        if self._rich is not None:
            # markup inside note/description text: keep the words, turn breaks into newlines
            self._flush_rich()
            if name == "xref":
                self._xref(attrs)
            elif name in ("br", "paragraph"):
                self._rich.append("\n")
            return
        if name == "record" and depth == 1:
            self._record = RawRecord(date=attrs.get("date"), updated=attrs.get("updated"))
            # errors about this record name the file and the line it starts on
            line = self.parser.CurrentLineNumber if self.parser is not None else "?"
            self._record.where = f"{self.label} line {line} (record {len(self.registry.records) + 1})"
        elif name == "person" and self._record is None:
            self._person = {"id": attrs.get("id", "")}
        elif self._record is not None:
            if name == "assignee":
                self._in_assignee = True
            elif name == "xref":
                self._xref(attrs)
            elif name in ("note", "unauthorized", "description"):
                self._rich = []
        self._text = []

    def _flush_rich(self) -> None:
        assert self._rich is not None
        if self._text:
            self._rich.append("".join(self._text))
            self._text = []

    def end(self, tag: str) -> None:
        name = _local(tag)
        self._stack.pop()
        record = self._record
        if self._rich is not None and record is not None:
            self._flush_rich()
            if name in ("note", "unauthorized", "description"):
                setattr(record, name, self._rich)
                self._rich = None
            elif name == "paragraph":
                self._rich.append("\n")
            return
        text = "".join(self._text)
        self._text = []
        if record is not None:
            if name == "record" and len(self._stack) == 1:
                self.registry.records.append(record)
                self._record = None
            elif name == "assignee":
                self._in_assignee = False
            elif name == "xref" and self._pending_text_ref:
                self._pending_text_ref = False
                if text.strip():
                    record.xrefs.append(("text", " ".join(text.split()), None))
            elif name == "name":
                record.name = text.strip()
            elif name == "protocol":
                record.protocol = text.strip()
            elif name == "number":
                record.number = text.strip()
            elif name == "sc":
                record.service_code = text.strip()
        elif self._person is not None:
            if name == "person":
                self.registry.people_raw.append(self._person)
                self._person = None
            elif name in ("name", "org", "uri", "updated"):
                self._person[name] = text.strip()
        elif name == "updated" and len(self._stack) == 1:
            self.registry.updated = text.strip()
        elif name == "title" and len(self._stack) == 1:
            self.registry.title = text.strip()

    def chars(self, data: str) -> None:
        self._text.append(data)

    def _xref(self, attrs: dict[str, str]) -> None:
        kind, data = attrs.get("type", ""), attrs.get("data", "")
        record = self._record
        assert record is not None
        if self._rich is not None:
            # inline reference inside note text: keep it as a token, resolved later
            self._rich.append((kind, data))
            return
        if kind == "person":
            if self._in_assignee:
                record.assignee = data
            else:
                record.contacts.append(data)
        else:
            if kind == "text" and not data:
                self._pending_text_ref = True  # the reference is the element's text
                return
            record.xrefs.append((kind, data, attrs.get("section")))

    # refusals ------------------------------------------------------------------------
    def doctype(self, *args: object) -> None:
        raise _Refused("the file declares a DOCTYPE (refused: entity expansion and external entities)")

    def entity(self, *args: object) -> None:
        raise _Refused("the file declares entities (refused)")

    def external(self, *args: object) -> int:
        raise _Refused("the file references an external entity (refused)")


def parse_registry_xml(stream: IO[bytes], *, label: str = "XML") -> Registry:
    """Parse the registry from a binary stream; raises DataError on anything malformed."""
    handler = _Parser(label)
    parser = xml.parsers.expat.ParserCreate(namespace_separator=_SEP)
    handler.parser = parser
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.chars
    parser.StartDoctypeDeclHandler = handler.doctype
    parser.EntityDeclHandler = handler.entity
    parser.ExternalEntityRefHandler = handler.external
    parser.buffer_text = True
    try:
        parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
        while True:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _Refused as exc:
        raise DataError(f"{label}: {exc}") from None
    except xml.parsers.expat.ExpatError as exc:
        raise DataError(f"{label}: not a well-formed registry XML file ({exc})") from None
    registry = handler.registry
    registry.label = label
    if not registry.records:
        raise DataError(f"{label}: no registry records found (is this IANA's service-names-port-numbers.xml?)")
    build_entries(registry)
    return registry
