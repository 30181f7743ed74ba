"""Fallback source: the operating system's services file (/etc/services)."""

from __future__ import annotations

from typing import IO

from portatlas.errors import DataError
from portatlas.kb.records import Registry, record_key, refuse_controls
from portatlas.model import TRANSPORTS, Entry


def parse_services_file(stream: IO[bytes], *, label: str = "/etc/services") -> Registry:
    """Lines of 'name port/proto [aliases...] [# comment]'; malformed lines are errors."""
    registry = Registry(source_format="services")
    seen: set[tuple] = set()
    for number, raw_line in enumerate(stream, 1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{label} line {number}: not UTF-8") from None
        refuse_controls(line.rstrip("\r\n"), f"{label} line {number}")
        body, _, comment = line.partition("#")
        fields = body.split()
        if not fields:
            continue
        if len(fields) < 2 or "/" not in fields[1]:
            raise DataError(f"{label} line {number}: expected 'name port/protocol'")
        port_text, _, proto = fields[1].partition("/")
        proto = proto.lower()
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) \
                or int(port_text) > 65535 or not (proto.isascii() and proto.isalpha()):
            raise DataError(f"{label} line {number}: bad port/protocol {fields[1]!r}")
        if proto not in TRANSPORTS:
            continue  # AppleTalk (ddp) and other non-IP entries some services files carry
        port = int(port_text)
        description = comment.strip()
        aliases = fields[2:]
        if aliases:
            description = (description + " " if description else "") + f"(aliases: {', '.join(aliases)})"
        entry = Entry(fields[0], port, port, proto, description, source="etc-services")
        key = record_key(entry)
        if key in seen:
            registry.duplicates += 1  # an exact repeat is stored once
            continue
        seen.add(key)
        registry.entries.append(entry)
    if not registry.entries:
        raise DataError(f"{label}: no services found")
    return registry
