"""The cold start of `portatlas PORT` loads only what a lookup needs (docs/architecture.md,
"Start-up cost and function-level imports"): the modules named here are kept off that path on
purpose, by function-level imports with a comment saying so. Moving one of those imports to
the top of its module (or adding an import to the lookup path) makes this test name it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# stdlib modules that cost milliseconds, and portatlas modules other commands need
KEPT_OFF = ("argparse", "typing", "dataclasses", "pathlib", "json", "asyncio", "ssl", "gettext",
            "portatlas.cli.common", "portatlas.ranking",
            "portatlas.kb.build", "portatlas.kb.sources", "portatlas.kb.trojans",
            "portatlas.history.search", "portatlas.history.releases", "portatlas.scan",
            "portatlas.identify", "portatlas.exposure", "portatlas.web", "portatlas.local.procnet",
            "portatlas.local.portable", "portatlas.local.selection", "portatlas.local.reports")

PROGRAM = """
import sys, json, io
before = set(sys.modules)
import portatlas.cli
out, sys.stdout = sys.stdout, io.StringIO()
rc = portatlas.cli.main(sys.argv[1:])
sys.stdout = out
print(json.dumps({"rc": rc, "loaded": sorted(set(sys.modules) - before)}))
"""


def loaded_by(*argv: str, db) -> set[str]:
    env = dict(os.environ, PORTATLAS_DB=str(db), NO_COLOR="1")
    r = subprocess.run([sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert data["rc"] == 0
    return set(data["loaded"])


def test_a_port_lookup_loads_none_of_the_modules_kept_off_its_path(atlas_db):
    loaded = loaded_by("57", db=atlas_db)
    assert "portatlas.cli.port" in loaded and "portatlas.render.port" in loaded  # it did run
    assert not sorted(loaded & set(KEPT_OFF))


def test_help_and_version_load_no_command(atlas_db):
    for argv in (("--help",), ("--version",)):
        loaded = loaded_by(*argv, db=atlas_db)
        assert loaded <= {"__future__", "portatlas", "portatlas.cli"}, (argv, sorted(loaded))
