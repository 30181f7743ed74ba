"""The picture of the port space: the status of all 65,536 ports, and blocks of them.

Statuses come from PortAnswer.status (the same rule the CLI prints), combined over the
transports with the registry's own precedence: a port assigned on any transport counts as
assigned, then de-assigned, then reserved, else unassigned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portatlas.model import ASSIGNED, DEASSIGNED, RESERVED, UNASSIGNED, DYNAMIC, SYSTEM, USER

if TYPE_CHECKING:
    from portatlas.atlas import Atlas

# index into STATUSES is the code stored per port
STATUSES = (UNASSIGNED, ASSIGNED, RESERVED, DEASSIGNED)
_CODE = {s: i for i, s in enumerate(STATUSES)}
_PRECEDENCE = (ASSIGNED, DEASSIGNED, RESERVED)
BLOCK = 64  # ports per cell of the whole-space map: 1,024 cells


def combined_status(per_transport: dict[str, str]) -> str:
    seen = set(per_transport.values())
    for status in _PRECEDENCE:
        if status in seen:
            return status
    return UNASSIGNED


class PortSpace:
    """Per-port status codes plus per-block tallies, computed once per database build."""

    def __init__(self, atlas: "Atlas") -> None:
        codes = bytearray(65536)
        for port in range(65536):
            codes[port] = _CODE[combined_status(atlas.port(port).status)]
        self.codes = bytes(codes)
        self.blocks = [self.tally(lo, lo + BLOCK - 1) for lo in range(0, 65536, BLOCK)]

    def status(self, port: int) -> str:
        return STATUSES[self.codes[port]]

    def tally(self, lo: int, hi: int) -> dict[str, Any]:
        counts = dict.fromkeys(STATUSES, 0)
        chunk = self.codes[lo:hi + 1]
        for code, status in enumerate(STATUSES):
            counts[status] = chunk.count(code)
        return {"lo": lo, "hi": hi, **counts}

    def classes(self) -> list[dict[str, Any]]:
        return [{"name": rc.name, "lo": rc.lo, "hi": rc.hi, "meaning": rc.meaning,
                 **{k: v for k, v in self.tally(rc.lo, rc.hi).items() if k not in ("lo", "hi")}}
                for rc in (SYSTEM, USER, DYNAMIC)]


def block_shade(block: dict[str, Any]) -> str:
    """A CSS class for a block cell: how much of it is assigned, or what else dominates."""
    size = block["hi"] - block["lo"] + 1
    if block[ASSIGNED] == 0:
        if block[DEASSIGNED]:
            return "b-de"
        if block[RESERVED] * 2 >= size:
            return "b-re"
        return "b-0"
    share = block[ASSIGNED] / size
    for level, upto in enumerate((0.125, 0.25, 0.5, 0.75), 1):
        if share <= upto:
            return f"b-{level}"
    return "b-5"
