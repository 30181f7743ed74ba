#!/usr/bin/env python3
"""Cluster scaling: the same scan on 1, 2 and 3 Dask workers whose egress is capped.

Every worker runs in a network namespace of its own (support.cluster_lab) whose egress is
limited to --pps TCP SYNs per second by an iptables hashlimit rule (what a rate cap on one
machine's uplink does), and scans at that rate (--rate). The scan: --hosts addresses of the
target block, ports 1-1000, 10 of them open, two REJECT-ed. Each round runs the three sizes
(1 → 2 → 3 workers, the next round 3 → 2 → 1, so that background load hits all alike);
printed: medians, the speed-up over one worker, and whether every result equals the first
(port for port: state and reason).

Target: at least 2.6× at three workers, identical results.

    sudo .venv/bin/python benchmarks/bench_cluster.py [--rounds 2] [--pps 2000] [--hosts 192]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support.cluster_lab import TARGET_NET, ClusterLab  # noqa: E402

OPEN = [21, 22, 25, 53, 80, 110, 143, 443, 993, 995]
PORTS = "1-1000"


def states(report: dict) -> dict:
    from portatlas.scan.ports import parse_port_spec

    out = {}
    for h in report["hosts"]:
        for p in h["ports"]:
            out[(h["address"], p["port"], p["transport"])] = (p["state"], p["reason"])
        for e in h["extraports"]:
            for r in e["reasons"]:
                for port in parse_port_spec(r["ports"]):
                    out[(h["address"], port, e["transport"])] = (e["state"], r["reason"])
    return out


def resize(lab: ClusterLab, n: int, pps: int) -> None:
    while len(lab.workers) < n:
        lab.add_worker(egress_pps=pps)
    while len(lab.workers) > n:
        lab.stop_worker(lab.workers[-1])
    time.sleep(0.5)  # let the scheduler see a stopped worker go


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pps", type=int, default=2000, help="egress cap per worker (SYNs/s)")
    ap.add_argument("--hosts", type=int, default=192, help="target addresses (at most 254)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    targets = f"{TARGET_NET}.1-{TARGET_NET}.{args.hosts}"
    probes = args.hosts * 1000
    times: dict[int, list[float]] = {1: [], 2: [], 3: []}
    reference = None
    identical = True
    with ClusterLab(workers=0) as lab:
        lab.listen(OPEN)
        lab.firewall(["-A", "INPUT", "-p", "tcp", "--dport", "111", "-j", "REJECT",
                      "--reject-with", "icmp-port-unreachable"],
                     ["-A", "INPUT", "-p", "tcp", "--dport", "135", "-j", "REJECT",
                      "--reject-with", "icmp-admin-prohibited"])
        print(f"scan: {args.hosts} hosts x ports {PORTS} = {probes:,} probes; each worker's "
              f"egress capped at {args.pps:,} SYN/s (iptables hashlimit), --rate {args.pps}")
        for r in range(args.rounds):
            sizes = (1, 2, 3) if r % 2 == 0 else (3, 2, 1)
            for n in sizes:
                resize(lab, n, args.pps)
                start = time.perf_counter()
                proc = lab.cluster_scan(targets, "-p", PORTS, "--rate", str(args.pps), "--json",
                                        "--no-progress", timeout=900)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    print(f"scan failed on {n} workers: {proc.stderr.strip()}")
                    return 1
                report = json.loads(proc.stdout)
                got = states(report)
                if reference is None:
                    reference = got
                same = got == reference
                identical &= same
                used = sum(1 for w in report["options"]["cluster"]["workers"] if w["shards"])
                times[n].append(wall)
                print(f"round {r + 1}: {n} worker{'s' if n > 1 else ' '} {wall:7.2f} s  "
                      f"({used} used, {report['options']['cluster']['shards']} shards, "
                      f"{report['summary']['ports']}) {'same' if same else 'DIFFERENT'}",
                      flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    print()
    print("workers  median s   probes/s  speed-up")
    for n in (1, 2, 3):
        print(f"{n:7d}  {med[n]:8.2f}  {probes / med[n]:9,.0f}  {med[1] / med[n]:7.2f}x")
    verdict = med[1] / med[3] >= 2.6 and identical
    print(f"three workers: {med[1] / med[3]:.2f}x (target >= 2.6x); results identical in every "
          f"run: {identical}; {'PASS' if verdict else 'FAIL'}")
    if reference is not None:
        opened = sum(1 for s in reference.values() if s[0] == "open")
        print(f"ground truth: {opened} open ports expected {args.hosts * len(OPEN)}: "
              f"{'ok' if opened == args.hosts * len(OPEN) else 'WRONG'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians_s": med, "runs_s": times,
                                               "identical": identical}, indent=2))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
