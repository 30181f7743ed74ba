#!/usr/bin/env python3
"""Cold `portatlas 57` against `python -c pass` and whatportis, plus in-process lookup rate.

Run: .venv/bin/python benchmarks/bench_lookup.py [--runs 40]

All three commands run in the same loop (interleaved, so background load hits them alike).
whatportis (PyPI) normally downloads IANA's CSV; here it gets the local CSV through its own
import function, in a private HOME, installed into a throwaway virtualenv under
benchmarks/.peers/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "iana"
VENV_BIN = Path(sys.executable).parent
PEERS = REPO / "benchmarks" / ".peers"


def whatportis(home: Path) -> list[str]:
    venv = PEERS / "whatportis"
    if not (venv / "bin" / "whatportis").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "whatportis"], check=True)
    # feed it the local CSV through its own populate_db (it would download from IANA)
    feed = (
        "import types, whatportis.cli as c\n"
        f"data = open({str(SHARED / 'service-names-port-numbers.csv')!r}, 'rb').read()\n"
        "c.requests = types.SimpleNamespace(get=lambda url: types.SimpleNamespace(content=data))\n"
        "c.populate_db()\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", feed], check=True, env={**os.environ, "HOME": str(home)},
                   stdout=subprocess.DEVNULL)
    return [str(venv / "bin" / "whatportis"), "57"]


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {result.stderr.decode()[:300]}")
    return elapsed


def in_process_rate(db: Path, seconds: float = 2.0) -> tuple[float, float]:
    sys.path.insert(0, str(REPO / "src"))
    from portatlas.atlas import Atlas

    atlas = Atlas(db, autobuild=False).preload()
    ports = list(range(65536))
    # first pass: every port once (fills the per-port cache), then steady state
    start = time.perf_counter()
    for p in ports:
        atlas.port(p)
    first = len(ports) / (time.perf_counter() - start)
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for p in range(0, 65536, 7):
            atlas.port(p)
        count += len(range(0, 65536, 7))
    return first, count / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        db = tmp_path / "portatlas.sqlite3"
        env = {**os.environ, "PORTATLAS_DB": str(db), "HOME": str(tmp_path), "NO_COLOR": "1"}
        # measure what users get: bytecode cached (an installed package has its .pyc files)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([str(VENV_BIN / "python"), "-m", "compileall", "-q", str(REPO / "src")],
                       check=True, env=env)
        subprocess.run([str(VENV_BIN / "portatlas"), "data", "update", "--from",
                        str(SHARED / "service-names-port-numbers.xml")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        commands = {
            "python -c pass": [str(VENV_BIN / "python"), "-c", "pass"],
            "portatlas 57": [str(VENV_BIN / "portatlas"), "57"],
            "portatlas 57 --no-local --no-history": [str(VENV_BIN / "portatlas"), "57", "--no-local", "--no-history"],
            "whatportis 57": whatportis(tmp_path),
        }
        for cmd in commands.values():  # warm the page cache
            timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, env))
        print(f"cold start, {args.runs} runs each, interleaved (ms)")
        print(f"{'command':<40}{'median':>9}{'p90':>9}{'min':>9}")
        med = {}
        for name, values in times.items():
            values.sort()
            med[name] = statistics.median(values)
            print(f"{name:<40}{med[name] * 1000:9.1f}{values[int(len(values) * 0.9) - 1] * 1000:9.1f}"
                  f"{values[0] * 1000:9.1f}")
        pa = med["portatlas 57"]
        print(f"\nportatlas 57 median: {pa * 1000:.1f} ms (target <= 50 ms)")
        print(f"whatportis / portatlas: {med['whatportis 57'] / pa:.1f}x (target >= 3x)")
        print(f"portatlas - python startup: {(pa - med['python -c pass']) * 1000:.1f} ms of own work")
        first, steady = in_process_rate(db)
        print(f"\nin-process Atlas.port(): first pass over all 65,536 ports {first:,.0f}/s; "
              f"steady state {steady:,.0f}/s (target >= 200,000/s)")


if __name__ == "__main__":
    main()
