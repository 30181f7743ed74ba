"""What every command's argument parser shares."""

from __future__ import annotations

import argparse
import os
TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are strings
if TYPE_CHECKING:
    from typing import NoReturn

from portatlas.cli import open_atlas  # noqa: F401  (re-exported for the commands)
from portatlas.errors import UsageError


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter imports shutil just to ask for the width; ask os directly."""

    def __init__(self, prog: str) -> None:
        try:
            width = os.get_terminal_size().columns - 2
        except OSError:
            width = 78
        super().__init__(prog, width=max(40, min(width, 118)))


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (via UsageError) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def parser(prog: str, description: str) -> Parser:
    p = Parser(prog=prog, description=description, formatter_class=_Formatter)
    p.add_argument("--json", action="store_true", help="machine-readable output (docs/json.md)")
    p.add_argument("--db", metavar="PATH", help="database file (default: $PORTATLAS_DB or "
                   "~/.local/share/portatlas/portatlas.sqlite3)")
    return p
