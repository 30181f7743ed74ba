#!/usr/bin/env python3
"""Load benchmark of `portatlas serve` with wrk, on the loopback of a private network namespace.

Run (as root, needs Debian's wrk): .venv/bin/python benchmarks/bench_web.py [--duration 10]

Target (docs/web.md): /ports/{n} at 64 connections sustains >= 1,500 requests/s with p99 <= 50 ms
on a 2-core machine. wrk and the server share those 2 cores, so wrk gets 1 thread.

Measured in the same run, as peers:
  /healthz          the smallest JSON answer of the same server: the framework's floor
  /ports/{n} (one)  a single port, so every request is the same cached page
  /ports/{n} (many) rotating over 512 ports (popular ones and a spread): the target
  /api/ports/{n}    the JSON of the same rotation
each with 1 worker (the default) and with 2 workers. Ratios are to /healthz of the same
server. Run it a few times: other work on the machine moves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))
SHARED = REPO.parent / "shared" / "data"

from support.netns import Netns, available  # noqa: E402

LUA_ROTATE = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""
# Paced: every connection waits before its next request, so the whole run offers about
# RATE requests/s (wrk's latency excludes the wait). Measures latency at the target load
# rather than at saturation.
LUA_PACE = """
delay = function()
  return %d
end
"""


def build_db(folder: Path) -> Path:
    db = folder / "portatlas.sqlite3"
    from portatlas.kb.build import build

    build(db, str(SHARED / "iana" / "service-names-port-numbers.xml"))
    return db


def ports_to_rotate(db: Path, count: int = 512) -> list[int]:
    from portatlas.atlas import Atlas

    atlas = Atlas(db, autobuild=False)
    popular = atlas.store.nmap_top("tcp", count // 2)
    spread = list(range(0, 65536, 65536 // (count - len(popular))))
    atlas.close()
    return list(dict.fromkeys(popular + spread))[:count]


def parse_wrk(text: str) -> dict[str, float]:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {"rps": rps, "p50_ms": ms(*p50.groups()), "p99_ms": ms(*p99.groups()),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def run_wrk(ns: Netns, url: str, duration: int, connections: int, script: Path | None) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", str(script)]
    result = ns.run(cmd + [url], timeout=duration + 60)
    return parse_wrk(result.stdout)


def serve(ns: Netns, db: Path, feedback: Path, workers: int, port: int):
    env = dict(os.environ, PORTATLAS_DB=str(db), PORTATLAS_FEEDBACK_DB=str(feedback))
    proc = ns.popen([sys.executable, "-m", "portatlas", "serve", "--port", str(port),
                     "--workers", str(workers), "--json"], env=env, stdout=subprocess.PIPE,
                    text=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the server did not start")
    return proc, json.loads(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (10)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--workers", default="1,2", help="worker counts to measure (1,2)")
    ap.add_argument("--rate", type=int, default=1500, help="target request rate (1500)")
    args = ap.parse_args()
    if not available():
        raise SystemExit("needs root and iproute2 (network namespaces)")
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("needs wrk (apt-get install wrk)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = build_db(folder)
        ports = ports_to_rotate(db)
        scripts = {}
        for name, prefix in (("html", "/ports/"), ("json", "/api/ports/")):
            script = folder / f"rotate-{name}.lua"
            script.write_text(LUA_ROTATE % ", ".join(f'"{prefix}{p}"' for p in ports))
            scripts[name] = script
        # aim 15% above the target: the pause comes on top of each request's own latency
        pause_ms = int(args.connections * 1000 / (args.rate * 1.15))
        paced = folder / "rotate-paced.lua"
        paced.write_text(scripts["html"].read_text() + LUA_PACE % pause_ms)
        scripts["paced"] = paced
        print(f"portatlas serve under wrk: {args.connections} connections, {args.duration}s "
              f"each, {os.cpu_count()} cores shared by wrk (1 thread) and the server")
        print(f"{'workers':>7}  {'what':<24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  "
              f"{'vs healthz':>10}  errors")
        summary = []
        for workers in [int(w) for w in args.workers.split(",")]:
            with Netns("bench") as ns:
                proc, info = serve(ns, db, folder / f"feedback-{workers}.sqlite3", workers, 8357)
                base = info["url"].rstrip("/")
                # warm every cache (each page is rendered once per database build, then
                # served from memory): several passes over the rotation, both kinds
                run_wrk(ns, base + "/", 6, 16, scripts["html"])
                run_wrk(ns, base + "/", 4, 16, scripts["json"])
                cases = [("/healthz", base + "/healthz", None),
                         ("/ports/25 (one page)", base + "/ports/25", None),
                         (f"/ports/N ({len(ports)} ports)", base + "/", scripts["html"]),
                         (f"/api/ports/N ({len(ports)})", base + "/", scripts["json"]),
                         (f"/ports/N paced ~{args.rate}/s", base + "/", scripts["paced"])]
                floor = None
                for label, url, script in cases:
                    r = run_wrk(ns, url, args.duration, args.connections, script)
                    if floor is None:
                        floor = r["rps"]
                    errors = r["non_2xx"] or r["socket_errors"] or 0
                    print(f"{workers:>7}  {label:<24} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                          f"{r['p99_ms']:>8.2f}  {r['rps'] / floor:>9.2f}x  {errors}")
                    if label.startswith("/ports/N"):
                        summary.append((workers, label, r))
                proc.terminate()
        print()
        for workers, label, r in summary:
            ok = r["rps"] >= args.rate and r["p99_ms"] <= 50
            how = "paced" if "paced" in label else "saturated"
            print(f"target with {workers} worker(s), {how:>9}: {r['rps']:.0f} req/s, p99 "
                  f"{r['p99_ms']:.1f} ms -> {'MET' if ok else 'NOT MET'} "
                  f"(>= {args.rate} req/s with p99 <= 50 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
