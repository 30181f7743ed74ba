#!/usr/bin/env python3
"""Memory of `portatlas serve` under a stream of distinct range requests (issue 12, failure 1).

Run (as root): .venv/bin/python benchmarks/bench_web_memory.py [--requests 5000]

A real server process in a private network namespace; one client (a thread moved into the
namespace) sends --requests distinct wide range requests over a kept-alive connection, half
/api/ranges/LO-HI and half /ranges/LO-HI, each range 8,000-16,384 ports wide (the heaviest
answers). The server's resident memory (VmRSS of its process) is read before (after a short
warm-up), during, and after, and printed. Before the fix every distinct answer stayed cached
(about 15 MB per /api/ranges answer, 1.4 MB per page); now the cache is bounded by bytes.

Targets (docs/web.md, "Memory"): flat, i.e. the second half of the stream adds at most
FLAT_MIB to the RSS reached halfway; and bounded, i.e. the peak is within BOUND_MIB of the
warmed-up server (the 48 MiB answer cache, plus the working memory of building the largest
answer and the allocator's slack). Measured in the same run as a peer: the same number of
/healthz requests (the framework's own growth) on a fresh server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))
SHARED = REPO.parent / "shared" / "data"

from support.netns import Netns, available  # noqa: E402
from support.web import thread_in_netns  # noqa: E402

BOUND_MIB = 96  # the answer cache (48 MiB) + building the largest answer + allocator slack
FLAT_MIB = 8    # what the second half of the stream may add
PORT = 8357


def build_db(folder: Path) -> Path:
    from portatlas.kb.build import build

    db = folder / "portatlas.sqlite3"
    build(db, str(SHARED / "iana" / "service-names-port-numbers.xml"))
    return db


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start(ns: Netns, db: Path, folder: Path) -> subprocess.Popen:
    env = dict(os.environ, PORTATLAS_DB=str(db), NO_COLOR="1")
    proc = ns.popen([sys.executable, "-m", "portatlas", "serve", "--port", str(PORT), "--json",
                     "--feedback-db", str(folder / "fb.sqlite3")], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("serve did not start: " + proc.stderr.read()[:2000])
    json.loads(line)
    return proc


def stream(ns: Netns, pid: int, paths: list[str], every: int) -> list[tuple[int, float, float]]:
    """Send every path over one kept-alive connection; (done, RSS MiB, seconds) samples."""
    samples = []
    started = time.monotonic()
    with thread_in_netns(ns.name):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        for done, path in enumerate(paths, 1):
            conn.request("GET", path, headers={"Host": f"127.0.0.1:{PORT}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: HTTP {response.status}")
            if done % every == 0 or done == len(paths):
                samples.append((done, rss_mib(pid), time.monotonic() - started))
        conn.close()
    return samples


def distinct_ranges(count: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    paths = []
    while len(paths) < count:
        span = rng.randint(8000, 16384)
        lo = rng.randint(0, 65535 - span + 1)
        hi = lo + span - 1
        if (lo, hi) in seen:
            continue
        seen.add((lo, hi))
        paths.append(f"/api/ranges/{lo}-{hi}" if len(paths) % 2 == 0 else f"/ranges/{lo}-{hi}")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    if not available():
        print("needs root and ip netns", file=sys.stderr)
        return 2
    every = max(1, args.requests // 10)
    with tempfile.TemporaryDirectory(prefix="pa12-bench-") as tmp:
        folder = Path(tmp)
        db = build_db(folder)
        results = {}
        for label, paths in (("distinct ranges", distinct_ranges(args.requests)),
                             ("/healthz (peer)", ["/healthz"] * args.requests)):
            with Netns("pa12") as ns:
                proc = start(ns, db, folder)
                warm = ["/api/ranges/0-16383", "/ranges/0-16383", "/", "/ports/57"] * 5
                stream(ns, proc.pid, warm, len(warm))
                before = rss_mib(proc.pid)
                samples = stream(ns, proc.pid, paths, every)
                after = samples[-1][1]
                results[label] = (before, after, samples)
                proc.terminate()
                proc.wait(timeout=30)
        print(f"portatlas serve, {args.requests} requests each, one kept-alive connection")
        print(f"{'stream':<18} {'RSS before':>11} {'RSS after':>10} {'growth':>8} {'seconds':>8}")
        for label, (before, after, samples) in results.items():
            print(f"{label:<18} {before:>8.1f} MiB {after:>6.1f} MiB {after - before:>+6.1f} MiB "
                  f"{samples[-1][2]:>7.1f}")
        before, after, samples = results["distinct ranges"]
        print("distinct ranges, RSS as the stream goes: " + ", ".join(
            f"{done}: {rss:.0f}" for done, rss, _ in samples) + " MiB")
        peak = max(rss for _, rss, _ in samples)
        growth = peak - before
        half = [rss for done, rss, _ in samples if done <= args.requests // 2][-1]
        late = max(rss for done, rss, _ in samples if done > args.requests // 2) - half
        bounded, flat = growth <= BOUND_MIB, late <= FLAT_MIB
        peer = results["/healthz (peer)"]
        print(f"peak growth {growth:+.1f} MiB ({'within' if bounded else 'ABOVE'} the bound of "
              f"{BOUND_MIB} MiB); second half of the stream {late:+.1f} MiB "
              f"({'flat' if flat else 'NOT flat'}: at most {FLAT_MIB} MiB); "
              f"healthz peer {peer[1] - peer[0]:+.1f} MiB")
        return 0 if bounded and flat else 1


if __name__ == "__main__":
    sys.exit(main())
