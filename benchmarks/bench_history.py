#!/usr/bin/env python3
"""What registry history costs: `data update`, a cold `portatlas 57`, `history`, `data diff`.

Run: .venv/bin/python benchmarks/bench_history.py [--runs 15]

Peers measured in the same run, interleaved so background load hits them alike:
 - `data update` with the history contributor against the same build without it
   (first build = releases parsed; rebuild = releases read back from the replaced database);
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
b.build(sys.argv[1], sys.argv[3])
print(time.perf_counter() - t)
"""


def build_seconds(db: Path, history: bool) -> float:
    out = subprocess.run([sys.executable, "-c", BUILD, str(db), "on" if history else "off", str(XML)],
                         check=True, capture_output=True, text=True)
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
        print("data update (median of 3):")
        first, rebuild, plain = [], [], []
        for i in range(3):
            db = tmpdir / f"h{i}.sqlite3"
            first.append(build_seconds(db, True))
            rebuild.append(build_seconds(db, True))
            plain.append(build_seconds(tmpdir / f"p{i}.sqlite3", False))
        base = statistics.median(plain)
        print(summary("without history (peer)", plain))
        print(summary("with history, releases parsed", first, base))
        print(summary("with history, releases reused", rebuild, base))
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
