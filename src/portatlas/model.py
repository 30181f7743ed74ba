"""The domain model shared by the API, the CLI and the web UI.

Plain classes with __slots__ rather than dataclasses: this module sits on the start-up path
of every lookup, and importing dataclasses (and the inspect module it pulls in) costs several
milliseconds that a one-shot `portatlas 57` cannot afford.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

TRANSPORTS = ("tcp", "udp", "sctp", "dccp")

# status values of a registry entry
ASSIGNED = "assigned"
UNASSIGNED = "unassigned"
RESERVED = "reserved"
DEASSIGNED = "deassigned"


class Person:
    """An assignee or contact from the registry's <people> section."""

    __slots__ = ("id", "name", "org", "email", "uri")

    def __init__(self, id: str, name: str | None = None, org: str | None = None,
                 email: str | None = None, uri: str | None = None) -> None:
        self.id = id
        self.name = name
        self.org = org
        self.email = email
        self.uri = uri

    @property
    def display(self) -> str:
        label = self.name or self.org or self.id.replace("_", " ")
        if self.name and self.org:
            label = f"{self.name} ({self.org})"
        return label

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "org": self.org, "email": self.email,
                "uri": self.uri}

    def __repr__(self) -> str:
        return f"Person({self.id!r})"


_RFC_URL = "https://www.rfc-editor.org/rfc/{}"
_DRAFT_URL = "https://datatracker.ietf.org/doc/{}/"


class Reference:
    """A registry reference: an RFC, an Internet-Draft, a URI or free text."""

    __slots__ = ("kind", "value", "section")

    def __init__(self, kind: str, value: str, section: str | None = None) -> None:
        self.kind = kind  # rfc | draft | uri | text | note | person
        self.value = value
        self.section = section

    @property
    def label(self) -> str:
        if self.kind == "rfc":
            label = self.value.upper().replace("RFC", "RFC ", 1) if self.value.lower().startswith("rfc") else self.value
        else:
            label = self.value
        if self.section:
            label += f", section {self.section}"
        return label

    @property
    def url(self) -> str | None:
        value = self.value
        if self.kind == "rfc" and value.lower().startswith("rfc") and value[3:].isdigit():
            url = _RFC_URL.format(value.lower())
            return url + (f"#section-{self.section}" if self.section else "")
        if self.kind == "draft":
            # Drafts that became RFCs are cited as "RFC-ietf-wg-name-NN"; the datatracker
            # knows them by their draft name.
            name = value
            if name.lower().startswith("rfc-"):
                name = "draft-" + name[4:]
            if name.rsplit("-", 1)[-1].isdigit():
                name = name.rsplit("-", 1)[0]
            return _DRAFT_URL.format(name.lower())
        if self.kind == "uri" and (value.startswith("http://") or value.startswith("https://")):
            return value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "section": self.section,
                "label": self.label, "url": self.url}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Reference) and self.kind == other.kind
                and self.value.lower() == other.value.lower() and self.section == other.section)

    def __hash__(self) -> int:
        return hash((self.kind, self.value.lower(), self.section))

    def __repr__(self) -> str:
        return f"Reference({self.kind!r}, {self.value!r})"


class Entry:
    """One record of the service name and port number registry (or a fallback source)."""

    __slots__ = ("service", "port_lo", "port_hi", "transport", "description", "assignee",
                 "contact", "registered", "modified", "references", "service_code",
                 "unauthorized", "notes", "status", "alias_of", "previously", "source")

    def __init__(self, service: str | None, port_lo: int | None, port_hi: int | None,
                 transport: str | None, description: str = "", *,
                 assignee: Person | None = None, contact: Person | None = None,
                 registered: str | None = None, modified: str | None = None,
                 references: tuple[Reference, ...] = (), service_code: str | None = None,
                 unauthorized: str | None = None, notes: str | None = None,
                 status: str | None = None, alias_of: str | None = None,
                 previously: str | None = None, source: str = "iana") -> None:
        self.service = service
        self.port_lo = port_lo
        self.port_hi = port_hi
        self.transport = transport
        self.description = description
        self.assignee = assignee
        self.contact = contact
        self.registered = registered
        self.modified = modified
        self.references = references
        self.service_code = service_code
        self.unauthorized = unauthorized
        self.notes = notes
        self.status = status or derive_status(service, description, notes)
        self.alias_of = alias_of
        self.previously = previously
        self.source = source

    @property
    def ports(self) -> str:
        if self.port_lo is None:
            return ""
        if self.port_lo == self.port_hi:
            return str(self.port_lo)
        return f"{self.port_lo}-{self.port_hi}"

    @property
    def is_range(self) -> bool:
        return self.port_lo is not None and self.port_hi != self.port_lo

    def key(self) -> tuple:
        """Identity of a record across sources: (service, ports, transport)."""
        return ((self.service or "").lower(), self.port_lo, self.port_hi, self.transport)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "ports": self.ports or None,
            "port_lo": self.port_lo,
            "port_hi": self.port_hi,
            "transport": self.transport,
            "description": self.description,
            "status": self.status,
            "assignee": self.assignee.to_dict() if self.assignee else None,
            "contact": self.contact.to_dict() if self.contact else None,
            "registered": self.registered,
            "modified": self.modified,
            "references": [r.to_dict() for r in self.references],
            "service_code": self.service_code,
            "unauthorized_use": self.unauthorized,
            "notes": self.notes,
            "alias_of": self.alias_of,
            "previously": self.previously,
            "source": self.source,
        }

    def __repr__(self) -> str:
        return f"Entry({self.service!r}, {self.ports!r}, {self.transport!r})"


def derive_status(service: str | None, description: str, notes: str | None) -> str:
    """Assigned, unassigned, reserved or de-assigned, from the record's own words."""
    text = (description or "").strip().lower()
    if notes and "de-assigned" in notes.lower():
        return DEASSIGNED
    if not service and text.startswith("unassigned"):
        return UNASSIGNED
    if not service and text.startswith("reserved"):
        return RESERVED
    return ASSIGNED


class RangeClass:
    """Which of RFC 6335's three ranges a port falls in, and what that means in practice."""

    __slots__ = ("name", "lo", "hi", "meaning")

    def __init__(self, name: str, lo: int, hi: int, meaning: str) -> None:
        self.name = name
        self.lo = lo
        self.hi = hi
        self.meaning = meaning

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lo": self.lo, "hi": self.hi, "meaning": self.meaning}


SYSTEM = RangeClass(
    "system", 0, 1023,
    "System (well-known) ports, assigned by IETF review. Binding one needs root or "
    "CAP_NET_BIND_SERVICE on Linux (unless net.ipv4.ip_unprivileged_port_start is lowered) "
    "and root on the BSDs; macOS since 10.14 lets any user bind them on the wildcard address.")
USER = RangeClass(
    "user", 1024, 49151,
    "User (registered) ports, assigned by IANA on request. Any user may bind them; a "
    "registration is a claim of use, not a guarantee of what listens.")
DYNAMIC = RangeClass(
    "dynamic", 49152, 65535,
    "Dynamic/private ports, never assigned. Operating systems hand them out as ephemeral "
    "source ports (Linux uses 32768-60999 by default, Windows and macOS 49152-65535), so a "
    "listener here is usually temporary or deliberately obscure.")


def range_class(port: int) -> RangeClass:
    if port <= 1023:
        return SYSTEM
    if port <= 49151:
        return USER
    return DYNAMIC


def group_by_transport(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Entries keyed by transport; an entry without a transport counts for every transport."""
    grouped: dict[str, list[Entry]] = {}
    for entry in entries:
        for transport in (entry.transport,) if entry.transport else TRANSPORTS:
            grouped.setdefault(transport, []).append(entry)
    return {t: grouped[t] for t in TRANSPORTS if t in grouped}


def distinct_entries(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per service/description/ports: the tcp and udp twins of a record collapse."""
    seen, out = set(), []
    for entry in entries:
        key = (entry.service, entry.description, entry.ports)
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


def overall_status(entries: Iterable[Entry]) -> str:
    """The status of a port/transport: assigned wins, then de-assigned, reserved, unassigned."""
    seen = {e.status for e in entries}
    for status in (ASSIGNED, DEASSIGNED, RESERVED):
        if status in seen:
            return status
    return UNASSIGNED
