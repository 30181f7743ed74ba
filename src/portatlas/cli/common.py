"""What every command's argument parser shares."""

from __future__ import annotations

import argparse
from typing import NoReturn

from portatlas.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (via UsageError) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def parser(prog: str, description: str) -> Parser:
    p = Parser(prog=prog, description=description)
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/json.md)")
    p.add_argument("--db", metavar="PATH", help="database file (default: $PORTATLAS_DB or "
                   "~/.local/share/portatlas/portatlas.sqlite3)")
    return p


def open_atlas(db: str | None):
    """The Atlas for a CLI run; a first-time build announces itself on stderr."""
    import sys

    from portatlas.atlas import Atlas

    return Atlas(db, notify=lambda msg: print(msg, file=sys.stderr))
