"""`portatlas local --json` written straight from a snapshot, one line per socket.

Snapshot.socket_dict() is the reference form of a socket; this writer produces the same JSON
(tests/test_local_json.py checks it on real snapshots) without building a dict per socket and
encoding it key by key: with 10,000 sockets that is most of the run time. What makes it fast:
  - fixed-vocabulary fields (transport, state, addresses...) need no escaping;
  - a process, a port's services and flags are encoded once and reused for every socket sharing
    them (one server may hold thousands of sockets);
  - one small f-string per socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from portatlas.local.model import Snapshot, Socket, exposure_of, user_name


# one encoder for every call: json.dumps with arguments builds a new encoder each time, which
# costs more than encoding a small value (and a snapshot encodes thousands of them)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def dumps(obj: Any) -> str:
    """Compact but readable JSON (", " and ": "), encoded by the C encoder."""
    return _ENCODE(obj)


def string(text: str | None) -> str:
    """A JSON string, as json.dumps(text, ensure_ascii=False) writes it. dumps escapes only
    quotes, backslashes and control characters; a printable text without quote or backslash is
    therefore written as is, which skips the encoder's per-call cost."""
    if text is None:
        return "null"
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return dumps(text)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


class SocketWriter:
    """Encodes sockets of one snapshot; caches live as long as the writer."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._process_tails: dict[int, str] = {}
        self._lists: dict[int, tuple[Any, str]] = {}
        self._users: dict[int | None, str] = {}
        self._strings: dict[str, str] = {}

    def _text(self, value: str | None) -> str:
        if value is None:
            return "null"
        found = self._strings.get(value)
        if found is None:
            found = self._strings[value] = string(value)
        return found

    def _list(self, items: list[Any], encode) -> str:
        """Encode a list shared by many sockets once (keyed by identity; the object is kept
        referenced so the identity cannot be reused while the writer lives)."""
        if not items:
            return "[]"
        key = id(items)
        found = self._lists.get(key)
        if found is None or found[0] is not items:
            found = (items, encode(items))
            self._lists[key] = found
        return found[1]

    def _processes(self, sock: Socket) -> str:
        if not sock.holders:
            return "[]"
        parts = []
        for holder in sock.holders:
            tail = self._process_tails.get(holder.pid)
            if tail is None:
                base = self.snapshot.socket_process_dict(holder.pid)
                tail = self._process_tails[holder.pid] = dumps(base)[1:]
            fd = "null" if holder.fd is None else holder.fd
            if tail == "}":
                parts.append(f'{{"pid": {holder.pid}, "fd": {fd}}}')
            else:
                parts.append(f'{{"pid": {holder.pid}, "fd": {fd}, {tail}')
        return "[" + ", ".join(parts) + "]"

    def _extras(self, extra: dict[str, Any]) -> str:
        parts = []
        for key, value in extra.items():
            found = self._lists.get(id(value))
            if found is None or found[0] is not value:
                found = self._lists[id(value)] = (value, dumps(value))
            parts.append(f"{string(key)}: {found[1]}, ")
        return "".join(parts)

    def line(self, sock: Socket) -> str:
        users = self._users
        user = users.get(sock.uid)
        if user is None:
            user = users[sock.uid] = self._text(user_name(sock.uid))
        address = sock.address
        remote = sock.remote_address
        text = (
            f'{{"transport": "{sock.transport}", "family": "{sock.family}", '
            f'"address": "{address}", "port": {sock.port}, '
            f'"interface": {self._text(sock.interface)}, "stack": "{sock.stack}", '
            f'"v6only": {_scalar(sock.v6only)}, "state": "{sock.state}", '
            f'"remote_address": {"null" if remote is None else chr(34) + remote + chr(34)}, '
            f'"remote_port": {_scalar(sock.remote_port)}, '
            f'"exposure": "{exposure_of(address, sock.interface)}", '
            f'"inode": {_scalar(sock.inode)}, "uid": {_scalar(sock.uid)}, "user": {user}, ')
        if self.snapshot.classified:
            text += (f'"services": {self._list(sock.services, _services)}, '
                     f'"expected_program": {_scalar(sock.expected_program)}, '
                     f'"flags": {self._list(sock.flags, _flags)}, ')
        extra = self.snapshot.extras.get(id(sock)) if self.snapshot.extras else None
        if extra:
            text += self._extras(extra)
        return text + f'"processes": {self._processes(sock)}}}'


def _flags(flags: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f'{{"flag": "{code}", "text": {string(text)}}}'
                           for code, text in flags) + "]"


def _services(services: list[dict[str, Any]]) -> str:
    if any(len(s) != 3 for s in services):
        return dumps(services)  # someone added fields: the general encoder knows them all
    return "[" + ", ".join(f'{{"service": {string(s["service"])}, "description": '
                           f'{string(s["description"])}, "ports": {string(s["ports"])}}}'
                           for s in services) + "]"


def socket_lines(snapshot: Snapshot, sockets: Iterable[Socket]) -> Iterator[str]:
    writer = SocketWriter(snapshot)
    return (writer.line(s) for s in sockets)


CHUNK = 32 * 1024  # characters per write: the pieces stay within a core's cache


def write_document(head: dict[str, Any], lines: Iterable[str], tail: dict[str, Any], stream) -> None:
    """{head fields, "sockets": [one line each], tail fields}, pretty at the top level. Written in
    chunks of about CHUNK characters: one string of megabytes would be copied around (each copy
    out of the processor's caches: a third of the writing time with 10,000 sockets), and one
    write per socket is a system call each when stdout is unbuffered (python -u)."""
    parts = ["{\n"]
    for key, value in head.items():
        parts.append(f"  {json.dumps(key)}: {dumps(value)},\n")
    parts.append('  "sockets": [')
    separator = "\n    "
    count = 0
    size = 0
    for line in lines:
        parts.append(separator)
        parts.append(line)
        separator = ",\n    "
        count += 1
        size += len(line)
        if size > CHUNK:
            stream.write("".join(parts))
            parts.clear()
            size = 0
    parts.append("\n  ]" if count else "]")
    for key, value in tail.items():
        parts.append(f",\n  {json.dumps(key)}: {dumps(value)}")
    parts.append("\n}\n")
    stream.write("".join(parts))
