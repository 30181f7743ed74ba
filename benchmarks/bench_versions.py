#!/usr/bin/env python3
"""Two versions of portatlas side by side, in the same loops: is the newer one no slower?

    git worktree add --detach /tmp/pa-old <COMMIT>
    sudo .venv/bin/python benchmarks/bench_versions.py --old-src /tmp/pa-old/src [--rounds N]

Both run with this venv's interpreter; the old one gets PYTHONPATH=<old-src> (and a database
of its own, built by its own code on the first run), the new one this checkout's src/. The
rounds alternate the commands, so background load hits both alike. Measured:
  - cold `portatlas 57` and `portatlas 57 --no-local --no-history` (and `python -c pass`);
  - `portatlas local --json` with 10,000 listening sockets in a namespace (bench_local's
    socket mix), against `ss -tulpn`; the new version also with `--no-exposure` (what the
    old one did, before issue 14 added reachability);
  - the 65,535-port sweep of a namespace host (`scan -p -`), against `nmap -sT -T4 -p-`.
Wall time medians and CPU time (user + system of the command and its children) medians are
printed; CPU time is the steadier figure on a loaded machine. Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_local import LISTENER  # noqa: E402
from support.netns import Netns  # noqa: E402
from support.scan_lab import Lab  # noqa: E402

PY = sys.executable
SWEEP_OPEN = [7, 22, 80, 443, 3306, 8080, 31337, 40001, 50000, 60999, 65535]


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and everything it ran)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # from this checkout: both versions find the registry in ../shared beside it
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=600, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"bench_versions: {argv[-3:]} failed: {proc.stderr.decode()[-300:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compare(title: str, commands: dict[str, tuple[list[str], dict[str, str]]], rounds: int,
            peer: str) -> None:
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, env) in commands.items():
            wall, cpu = run_once(argv, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base = statistics.median(walls[peer])
    print(f"\n{title} ({rounds} rounds, alternating)")
    for name in commands:
        w, c = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"  {name:40s} median {w * 1e3:8.1f} ms  min {min(walls[name]) * 1e3:8.1f} ms  "
              f"CPU {c * 1e3:8.1f} ms  {w / base:5.2f}x {peer}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-src", required=True, type=Path,
                    help="the src/ folder of the older checkout (a git worktree)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cold-runs", type=int, default=30)
    args = ap.parse_args()
    if not (args.old_src / "portatlas" / "__init__.py").is_file():
        print(f"bench_versions: error: no portatlas package under {args.old_src}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench_versions: error: needs root (network namespaces)", file=sys.stderr)
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="pa-versions-")
    base = dict(os.environ, NO_COLOR="1")
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what users run: cached bytecode
    old = dict(base, PYTHONPATH=str(args.old_src), PORTATLAS_DB=f"{tmp.name}/old.sqlite3")
    new = dict(base, PYTHONPATH=str(REPO / "src"), PORTATLAS_DB=f"{tmp.name}/new.sqlite3")
    for env in (old, new):  # each version builds its own database (and bytecode) once
        run_once([PY, "-m", "portatlas", "57", "--no-local"], env)

    lookup = ["-m", "portatlas", "57"]
    compare("cold start", {
        "python -c pass": ([PY, "-c", "pass"], base),
        "old portatlas 57": ([PY, *lookup], old),
        "new portatlas 57": ([PY, *lookup], new),
        "old portatlas 57 --no-local --no-history": ([PY, *lookup, "--no-local", "--no-history"], old),
        "new portatlas 57 --no-local --no-history": ([PY, *lookup, "--no-local", "--no-history"], new),
    }, args.cold_runs, "python -c pass")

    with Netns("pa-versions") as ns:
        holders = [ns.popen([PY, "-c", LISTENER, str(20000 + i * 2500), "2500"],
                            stdout=subprocess.PIPE, text=True) for i in range(4)]
        for h in holders:
            if h.stdout.readline().strip() != "ready":
                raise SystemExit("bench_versions: a listener process failed to start")
        local = [PY, "-m", "portatlas", "local", "--json"]
        compare("local --json, 10,000 sockets", {
            "ss -tulpn": (ns.argv(["ss", "-tulpn"]), base),
            "old local --json": (ns.argv(local), old),
            "new local --json": (ns.argv(local), new),
            "new local --json --no-exposure": (ns.argv([*local, "--no-exposure"]), new),
        }, args.rounds, "ss -tulpn")

    with Lab() as lab:
        lab.listen(SWEEP_OPEN)
        scan = [PY, "-m", "portatlas", "scan", lab.ip, "-p", "-", "--json", "--no-progress"]
        compare("all 65,535 TCP ports of a namespace host", {
            "nmap -sT -T4 -p-": (lab.s.argv(["nmap", "-sT", "-T4", "-p", "1-65535", "-n", "-Pn",
                                             "-oX", "-", lab.ip]), base),
            "old scan -p -": (lab.s.argv(scan), old),
            "new scan -p -": (lab.s.argv(scan), new),
            "new scan -p - -Pn": (lab.s.argv([*scan, "-Pn"]), new),
        }, args.rounds, "nmap -sT -T4 -p-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
