#!/usr/bin/env python3
"""Scale benchmark for `portatlas local`: 10,000 listening sockets in a network namespace.

    sudo .venv/bin/python benchmarks/bench_local.py [--sockets 10000] [--rounds 9]

Measures, in one run and on the same sockets, alternating so that machine load hits both alike:
  - `ss -tulpn` (the peer) against `portatlas local --json` (target: at most 3x the wall time);
  - `portatlas local` (table), and --json with the /proc/net and psutil readers;
  - the two Linux readers in-process: netlink sock_diag against /proc/net text parsing, and the
    /proc/PID/fd scan that maps sockets to processes (what decided the default reader);
  - the "here" section of `portatlas PORT`: the cost of asking "does anything listen on PORT?"
    with 10,000 sockets present and with none, against --no-local.
Figures are medians (and minimum) of wall time; ratios use the medians. Needs root (ip netns).
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
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support.netns import Netns  # noqa: E402

# One listener process: opens its share of sockets, says "ready", then waits to be killed.
# Kinds rotate: tcp4 wildcard, tcp4 loopback, tcp6 dual-stack, tcp6 v6-only, udp4, udp6.
LISTENER = r"""
import resource, socket, sys, time
first, count = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, count + 64))
kinds = [(socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0", None),
         (socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", None),
         (socket.AF_INET6, socket.SOCK_STREAM, "::", 0),
         (socket.AF_INET6, socket.SOCK_STREAM, "::", 1),
         (socket.AF_INET, socket.SOCK_DGRAM, "0.0.0.0", None),
         (socket.AF_INET6, socket.SOCK_DGRAM, "::1", None)]
held = []
for n in range(count):
    port = first + n
    family, kind, host, v6only = kinds[port % len(kinds)]
    s = socket.socket(family, kind)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((host, port))
    if kind == socket.SOCK_STREAM:
        s.listen(8)
    held.append(s)
print("ready", flush=True)
time.sleep(3600)
"""

READERS = r"""
import statistics, sys, time
from portatlas.local import netlink, procnet, procfs
rounds = int(sys.argv[1])
def median_ms(fn):
    times = []
    for _ in range(rounds):
        t = time.perf_counter(); result = fn(); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, result
nl, socks = median_ms(netlink.dump)
pn, socks2 = median_ms(procnet.read)
inodes = {s.inode for s in socks}
scan, found = median_ms(lambda: procfs.scan_holders(inodes))
print(f"{nl:.1f} {pn:.1f} {scan:.1f} {len(socks)} {len(socks2)} {len(found.holders)}")
"""


# The "here" section's own cost inside one `portatlas PORT` run: importing it and answering.
HERE = r"""
import sys, time
from portatlas.atlas import Atlas
answer = Atlas().port(int(sys.argv[1]))
start = time.perf_counter()
from portatlas.local.here import section
data = section(answer)
print((time.perf_counter() - start) * 1e3, len(data["sockets"]))
"""


def here_cost(ns: Netns, port: int, env: dict[str, str], rounds: int) -> tuple[float, int]:
    """Median milliseconds (import + answer) over fresh interpreters, and the sockets found."""
    runs = [ns.run([sys.executable, "-c", HERE, str(port)], env=env).stdout.split()
            for _ in range(rounds)]
    return statistics.median(float(r[0]) for r in runs), int(runs[0][1])


def timed(ns: Netns, argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(ns.argv(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, check=True)
    return time.perf_counter() - start


def fmt(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1e3:7.1f} ms   min {min(times) * 1e3:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=10_000)
    ap.add_argument("--processes", type=int, default=4, help="listener processes sharing the sockets")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--first-port", type=int, default=20_000)
    ap.add_argument("--db", help="database (default: $PORTATLAS_DB or a fresh one in a temp dir)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_local: needs root (network namespaces)", file=sys.stderr)
        return 2
    py = sys.executable
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(REPO / "src"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what users run: with cached bytecode
    tmp = tempfile.TemporaryDirectory(prefix="pa-bench-")
    env["PORTATLAS_DB"] = args.db or os.environ.get("PORTATLAS_DB") or str(Path(tmp.name) / "pa.sqlite3")
    subprocess.run([py, "-m", "portatlas", "57", "--json", "--no-local"], env=env,
                   stdout=subprocess.DEVNULL, check=True)  # builds the database if needed

    with Netns("pabench") as ns, Netns("paempty") as empty:
        share = args.sockets // args.processes
        workers = []
        for i in range(args.processes):
            count = share if i < args.processes - 1 else args.sockets - share * i
            first = args.first_port + i * share
            workers.append(ns.popen([py, "-c", LISTENER, str(first), str(count)],
                                    stdout=subprocess.PIPE, text=True))
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise SystemExit("a listener process failed to start")

        ss_lines = ns.run(["ss", "-tulpnH"]).stdout.count("\n")
        pa = ns.run([py, "-m", "portatlas", "local", "--json"], env=env).stdout
        import json

        reported = json.loads(pa)["count"]
        print(f"sockets: {args.sockets} opened by {args.processes} processes; ss -tulpn shows "
              f"{ss_lines}, portatlas local --json reports {reported}")
        if reported != ss_lines:
            print("  MISMATCH: the counts differ", file=sys.stderr)

        commands = {
            "ss -tulpn": ["ss", "-tulpn"],
            "portatlas local --json": [py, "-m", "portatlas", "local", "--json"],
            "portatlas local (table)": [py, "-m", "portatlas", "local"],
            "portatlas local --json (proc)": [py, "-m", "portatlas", "local", "--json", "--backend", "proc"],
            "portatlas local --json (psutil)": [py, "-m", "portatlas", "local", "--json", "--backend", "psutil"],
            "portatlas 20000 --json --no-local": [py, "-m", "portatlas", "20000", "--json", "--no-local"],
            "portatlas 20000 --json (here)": [py, "-m", "portatlas", "20000", "--json"],
            "portatlas 19999 --json (here, no match)": [py, "-m", "portatlas", "19999", "--json"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name].append(timed(ns, argv, env))
        empty_times = {"portatlas 57 --json --no-local": [], "portatlas 57 --json (here, empty ns)": []}
        for _ in range(args.rounds):
            empty_times["portatlas 57 --json --no-local"].append(
                timed(empty, [py, "-m", "portatlas", "57", "--json", "--no-local"], env))
            empty_times["portatlas 57 --json (here, empty ns)"].append(
                timed(empty, [py, "-m", "portatlas", "57", "--json"], env))

        readers = ns.run([py, "-c", READERS, str(args.rounds)], env=env).stdout.split()
        here = {"empty namespace, port 57": here_cost(empty, 57, env, args.rounds),
                f"{args.sockets} sockets, port 19999 (no match)": here_cost(ns, 19999, env, args.rounds),
                f"{args.sockets} sockets, port {args.first_port} (match)":
                    here_cost(ns, args.first_port, env, args.rounds)}

    base = statistics.median(times["ss -tulpn"])
    print(f"\nwall time over {args.rounds} rounds (alternating), {args.sockets} sockets:")
    for name, values in times.items():
        ratio = statistics.median(values) / base
        print(f"  {name:42s} {fmt(values)}   {ratio:5.2f}x ss")
    target = statistics.median(times["portatlas local --json"]) / base
    print(f"\n  portatlas local --json / ss -tulpn = {target:.2f}x (target: at most 3x) -> "
          f"{'OK' if target <= 3 else 'OVER TARGET'}")
    print("\n'here' section of a port answer (median):")
    no_local = statistics.median(times["portatlas 20000 --json --no-local"])
    for name in ("portatlas 20000 --json (here)", "portatlas 19999 --json (here, no match)"):
        print(f"  {name:42s} +{(statistics.median(times[name]) - no_local) * 1e3:6.1f} ms "
              "over --no-local (10,000 sockets present)")
    empty_base = statistics.median(empty_times["portatlas 57 --json --no-local"])
    for name, values in empty_times.items():
        print(f"  {name:42s} {fmt(values)}")
    print(f"  here section in an empty namespace: "
          f"+{(statistics.median(empty_times['portatlas 57 --json (here, empty ns)']) - empty_base) * 1e3:.1f} ms")
    print("  measured inside the process (import of portatlas.local.here + section()), median:")
    for name, (ms, found) in here.items():
        print(f"    {name:42s} {ms:6.2f} ms  ({found} matching sockets)")
    nl, pn, scan, n1, n2, n3 = readers
    print(f"\nreaders in-process (median of {args.rounds}): netlink sock_diag {float(nl):.1f} ms "
          f"({n1} sockets), /proc/net text {float(pn):.1f} ms ({n2} sockets), "
          f"/proc/PID/fd scan {float(scan):.1f} ms ({n3} sockets mapped)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
