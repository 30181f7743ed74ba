"""Shared fixtures: the reference data beside the checkout and a database built from it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
IANA_XML = SHARED / "iana" / "service-names-port-numbers.xml"
IANA_CSV = SHARED / "iana" / "service-names-port-numbers.csv"
HISTORY = SHARED / "iana" / "history"
TROJANS = SHARED / "trojans" / "trojan-ports.tsv"

sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not IANA_XML.is_file():
        pytest.fail(f"reference data missing: {IANA_XML} (CI puts ../shared beside the checkout)")
    return SHARED


@pytest.fixture(scope="session")
def atlas_db(tmp_path_factory, shared_data) -> Path:
    """A database built once per test run from the current IANA XML, the trojan list and,
    when installed, nmap-services. Also exported as PORTATLAS_DB for subprocesses."""
    from portatlas.kb.build import build

    db = tmp_path_factory.mktemp("kb") / "portatlas.sqlite3"
    build(db, str(IANA_XML))
    os.environ["PORTATLAS_DB"] = str(db)
    return db


@pytest.fixture(scope="session")
def atlas(atlas_db):
    from portatlas.atlas import Atlas

    a = Atlas(atlas_db, autobuild=False)
    yield a
    a.close()


@pytest.fixture()
def cli(atlas_db):
    """Run the CLI in-process-like via a subprocess of this interpreter; returns CompletedProcess."""
    import subprocess

    def run(*args: str, env: dict | None = None, timeout: float = 60, input: str | None = None):
        full_env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")
        if env:
            full_env.update(env)
        return subprocess.run([sys.executable, "-m", "portatlas", *args], capture_output=True,
                              text=True, env=full_env, timeout=timeout, input=input)

    return run


@pytest.fixture(scope="module")
def readable_db(atlas_db):
    """A copy of the test database that `nobody` may read (pytest's tmp dirs are root-only)."""
    folder = tempfile.mkdtemp(prefix="pa-nobody-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "portatlas.sqlite3")
    shutil.copy(atlas_db, path)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(folder, ignore_errors=True)
