#!/usr/bin/env python3
"""What registry history costs: `data update`, a cold `portatlas 57`, `history`, `data diff`.

Run: .venv/bin/python benchmarks/bench_history.py [--runs 15]

Peers measured in the same run, interleaved so background load hits them alike:
 - the whole history build of all 42 releases (`data update`, history contributor on) against
   the same build without history, per release; and against parsing each release in full
   (the importer alone, what one release cost before incremental parsing);
 - the automatic first build (current + 2 older releases, "quick") against no history;
 - a rebuild (releases read back from the replaced database) and `data history` on a quick
   database;
 - cold `portatlas 57` against `portatlas 57 --no-history` and `python -c pass`.
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
XML = REPO.parent / "shared" / "data" / "iana" / "service-names-port-numbers.xml"

BUILD = """
import sys, time
from portatlas.kb import build as b
if sys.argv[2] == "off":
    b.CONTRIBUTORS[:] = [c for c in b.CONTRIBUTORS if "history" not in c.__module__]
t = time.perf_counter()
b.build(sys.argv[1], sys.argv[3], history="quick" if sys.argv[2] == "quick" else "all")
print(time.perf_counter() - t)
"""

FULL_PARSE = """
import sys, time
from portatlas.history.releases import parse_file
t = time.perf_counter()
for path in sys.argv[1:]:
    parse_file(path)
print((time.perf_counter() - t) / len(sys.argv[1:]))
"""

REBUILD = """
import sys, time
from portatlas.history.rebuild import rebuild
t = time.perf_counter()
rebuild(sys.argv[1])
print(time.perf_counter() - t)
"""


def build_seconds(db: Path, mode: str) -> float:
    """mode: off (no history), quick (automatic first build), all (every release)."""
    out = subprocess.run([sys.executable, "-c", BUILD, str(db), mode, str(XML)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def script_seconds(code: str, *args: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip().splitlines()[-1])


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed: {result.stderr.decode()[:300]}")
    return elapsed


def summary(label: str, values: list[float], base: float | None = None) -> str:
    med = statistics.median(values)
    ratio = f"  ({med / base:.2f}x)" if base else ""
    return f"  {label:<38} median {med * 1000:7.1f} ms  min {min(values) * 1000:7.1f} ms{ratio}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args()
    # byte-compile first: a user's install has .pyc files, this checkout may not
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        env = {**os.environ, "XDG_DATA_HOME": str(tmpdir / "xdg"), "NO_COLOR": "1"}
        os.environ.update(env)
        from portatlas import paths

        older = paths.history_candidates()
        print(f"data update (median of 3; {len(older)} older releases + the current one):")
        first, rebuild, plain, quick, history_cmd, full_parse = [], [], [], [], [], []
        sample = [older[i] for i in range(0, len(older), max(1, len(older) // 4))][:4]
        for i in range(3):
            db = tmpdir / f"h{i}.sqlite3"
            first.append(build_seconds(db, "all"))
            rebuild.append(build_seconds(db, "all"))
            plain.append(build_seconds(tmpdir / f"p{i}.sqlite3", "off"))
            quick_db = tmpdir / f"q{i}.sqlite3"
            quick.append(build_seconds(quick_db, "quick"))
            history_cmd.append(script_seconds(REBUILD, str(quick_db)))
            full_parse.append(script_seconds(FULL_PARSE, *sample))
        base = statistics.median(plain)
        print(summary("without history (peer)", plain))
        print(summary("quick: automatic first build (3 releases)", quick, base))
        print(summary("all releases parsed (whole history build)", first, base))
        print(summary("all releases reused (rebuild)", rebuild, base))
        print(summary("data history on a quick database", history_cmd, base))
        per_release = (statistics.median(first) - base) / max(1, len(older))
        full = statistics.median(full_parse)
        print(f"  history cost per older release: {per_release * 1000:.1f} ms incremental, "
              f"against {full * 1000:.1f} ms to parse one release in full "
              f"(peer, {len(sample)} files): {per_release / full:.2f}x")
        print(f"  database size: {(tmpdir / 'h0.sqlite3').stat().st_size // 1024} KiB with history, "
              f"{(tmpdir / 'p0.sqlite3').stat().st_size // 1024} KiB without")

        env["PORTATLAS_DB"] = str(tmpdir / "h0.sqlite3")
        py = sys.executable
        commands = {
            "python -c pass (peer)": [py, "-c", "pass"],
            "portatlas 57 --no-history (peer)": [py, "-m", "portatlas", "57", "--no-local", "--no-history"],
            "portatlas 57": [py, "-m", "portatlas", "57", "--no-local"],
            "portatlas history 57": [py, "-m", "portatlas", "history", "57"],
            "portatlas data diff oldest current": [py, "-m", "portatlas", "data", "diff", "oldest", "current"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for name, cmd in commands.items():
            timed(cmd, env)  # warm the page cache
        for _ in range(args.runs):
            for name, cmd in commands.items():
                if "diff" in name and len(times[name]) >= 5:
                    continue
                times[name].append(timed(cmd, env))
        print(f"cold command runs (median of {args.runs}; diff of 5):")
        base = statistics.median(times["portatlas 57 --no-history (peer)"])
        for name, values in times.items():
            print(summary(name, values, None if "peer" in name else base))


if __name__ == "__main__":
    main()
