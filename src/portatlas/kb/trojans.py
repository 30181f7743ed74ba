"""Historic trojan/backdoor port associations (a TSV: protocol, port, names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from portatlas.errors import DataError

CAVEAT = ("Historic list (late 1990s to mid 2000s): some malware was once reported to use "
          "this port. It says nothing about whether a listener here is malicious.")


def read_trojans(stream: IO[bytes], *, label: str = "trojan list") -> Iterator[tuple[str, int, list[str]]]:
    """Yields (transport, port, names)."""
    lines = iter(stream)
    header = next(lines, b"").decode("utf-8", "replace").rstrip("\r\n").split("\t")
    if header != ["protocol", "port", "names"]:
        raise DataError(f"{label}: unexpected header {header!r}")
    for number, raw in enumerate(lines, 2):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] not in ("tcp", "udp") or not fields[1].isdigit():
            raise DataError(f"{label} line {number}: expected 'tcp|udp<TAB>port<TAB>names'")
        port = int(fields[1])
        if port > 65535:
            raise DataError(f"{label} line {number}: port out of range")
        yield fields[0], port, [n.strip() for n in fields[2].split(", ") if n.strip()]
