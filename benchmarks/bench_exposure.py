#!/usr/bin/env python3
"""Scale benchmark for exposure: 10,000 listeners against a ruleset of 1,000 rules.

    sudo .venv/bin/python benchmarks/bench_exposure.py [--sockets 10000] [--rules 1000] [--rounds 11]

In a fresh namespace with 10,000 listening sockets (the socket mix of bench_local.py) and a
loaded nftables ruleset, measures alternating and in one run:
  - `portatlas local --json --no-exposure` (the peer: portatlas local without it) against
    `portatlas local --json` (with reachability for every listener). Target: the exposure
    costs at most as much again, i.e. with / without <= 2.0.
  - the same for the table output;
  - inside one process: reading the ruleset (nft, iptables-save x4, ip), parsing it, and
    assessing the 10,000 listeners.
Two rulesets of N rules each, so that the figure is not one shape's:
  services  a hand-written firewall: per service allow-lists by source subnet, then a drop
            (a few rules per port), address block-lists, UDP ranges;
  distinct  one rule per destination port, every rule a different port (the worst case for
            sharing answers between ports).
Figures are medians (and minimum) of wall time, and the median CPU time of each command with
everything it ran (user + system: less disturbed than wall time when other work shares the
cores). The commands run in turn, backwards every other round; the ratio judged is the median
of each round's with/without pair (the two ran seconds apart, under the same machine speed,
which drifts by up to 2x from minute to minute on a shared host); the ratio of the medians and
of the CPU times are printed beside it. The load average is printed with each ruleset. Needs
root.
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from support.netns import Netns  # noqa: E402
from bench_local import LISTENER  # noqa: E402

INPROCESS = r"""
import json, statistics, sys, time
from portatlas import exposure, local
from portatlas.exposure import nftjson, read
rounds = int(sys.argv[1])
snap = local.listeners()
def median(fn):
    times = []
    for _ in range(rounds):
        t = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, out
def read_all():
    read.start_all()  # as exposure.look() does: the 8 commands run at once
    try:
        return read.read_ruleset(), read.read_machine()
    finally:
        read.stop_all()
read_ms, _ = median(read_all)
code, text, _err = read._run(["nft", "-j", "list", "ruleset"])
parse_ms, rs = median(lambda: nftjson.parse(text))
look = exposure.look()
def assess():
    # a new Assessor each round: nothing cached from the round before
    a = look.assessor
    fresh = exposure.Look(exposure.Assessor(a.ruleset, a.machine, forward_targets=a.forward_targets),
                          sources=look.sources, problems=look.problems, containers=look.containers)
    return exposure.for_snapshot(snap, fresh)
assess_ms, found = median(assess)
verdicts = {}
for e in found.values():
    verdicts[e.verdict] = verdicts.get(e.verdict, 0) + 1
print(json.dumps({"read": read_ms, "parse": parse_ms, "assess": assess_ms, "rules": rs.rule_count(),
                  "listeners": len(found), "verdicts": verdicts}))
"""


def services_ruleset(n: int, first_port: int, sockets: int) -> str:
    """~n rules: per service 3 allow-lists and a drop; address blocks; UDP ranges."""
    lines = ["table inet fw {", "  chain input { type filter hook input priority 0; policy drop;",
             "    ct state established,related accept", "    ct state invalid drop",
             "    iif lo accept"]
    count = 3
    blocks = n // 10
    for i in range(blocks):
        lines.append(f"    ip saddr 198.19.{i % 250}.{(i // 250) * 16}/28 drop")
        count += 1
    service = 0
    step = max(1, sockets // max(1, (n - count) // 4))
    while count + 4 <= n:
        port = first_port + (service * step) % sockets
        for net in (f"198.18.{service % 250}.0/24", f"198.18.{(service + 1) % 250}.0/24",
                    f"2001:db8:{service:x}::/48"):
            fam = "ip6" if ":" in net else "ip"
            lines.append(f"    {fam} saddr {net} tcp dport {port} accept")
        lines.append(f"    tcp dport {port} drop")
        count += 4
        service += 1
    while count < n:
        lines.append(f"    udp dport {first_port + count * 3}-{first_port + count * 3 + 2} accept")
        count += 1
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def distinct_ruleset(n: int, first_port: int, sockets: int) -> str:
    lines = ["table inet fw {", "  chain input { type filter hook input priority 0; policy drop;"]
    step = max(1, sockets // n)
    for i in range(n):
        port = first_port + i * step
        if i % 3 == 0:
            lines.append(f"    ip saddr 198.18.{i % 250}.0/24 tcp dport {port} accept")
        elif i % 3 == 1:
            lines.append(f"    tcp dport {port} accept")
        else:
            lines.append(f"    udp dport {port} reject")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed(ns: Netns, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall time, CPU time of the command and everything it ran: nft, iptables-save, ip)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(ns.argv(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, check=True)
    return time.perf_counter() - start, _children_cpu() - cpu


def fmt(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1e3:7.1f} ms   min {min(times) * 1e3:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=1_000)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--first-port", type=int, default=20_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_exposure: needs root (network namespaces)", file=sys.stderr)
        return 2
    py = sys.executable
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(REPO / "src"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    tmp = tempfile.TemporaryDirectory(prefix="pa14-bench-")
    env["PORTATLAS_DB"] = os.environ.get("PORTATLAS_DB") or str(Path(tmp.name) / "pa.sqlite3")
    subprocess.run([py, "-m", "portatlas", "57", "--json", "--no-local"], env=env,
                   stdout=subprocess.DEVNULL, check=True)
    ok = True
    with Netns("pa14bench") as ns:
        subprocess.run(["ip", "-n", ns.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
        subprocess.run(["ip", "-n", ns.name, "addr", "add", "198.18.200.1/24", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", ns.name, "link", "set", "eth0", "up"], check=True)
        subprocess.run(["ip", "-n", ns.name, "route", "add", "default", "via", "198.18.200.254"],
                       check=True)
        share = args.sockets // args.processes
        workers = []
        for i in range(args.processes):
            count = share if i < args.processes - 1 else args.sockets - share * i
            workers.append(ns.popen([py, "-c", LISTENER, str(args.first_port + i * share), str(count)],
                                    stdout=subprocess.PIPE, text=True))
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise SystemExit("a listener process failed to start")
        for shape, build in (("services", services_ruleset), ("distinct", distinct_ruleset)):
            ns.run(["nft", "flush", "ruleset"])
            ns.run(["nft", "-f", "-"], input=build(args.rules, args.first_port, args.sockets))
            inproc = json.loads(ns.run([py, "-c", INPROCESS, str(args.rounds)], env=env).stdout)
            commands = {
                "portatlas local --json --no-exposure": [py, "-m", "portatlas", "local", "--json", "--no-exposure"],
                "portatlas local --json": [py, "-m", "portatlas", "local", "--json"],
                "portatlas local --no-exposure (table)": [py, "-m", "portatlas", "local", "--no-exposure"],
                "portatlas local (table)": [py, "-m", "portatlas", "local"],
            }
            times: dict[str, list[float]] = {name: [] for name in commands}
            cpus: dict[str, list[float]] = {name: [] for name in commands}
            order = list(commands.items())
            for round_ in range(args.rounds):
                # ABBA: every other round runs the commands backwards, so that neither side of
                # a pair always runs right after the other (the machine's speed drifts)
                for name, argv in (order if round_ % 2 == 0 else order[::-1]):
                    wall, cpu = timed(ns, argv, env)
                    times[name].append(wall)
                    cpus[name].append(cpu)
            print(f"\nruleset '{shape}' (load average {os.getloadavg()[0]:.1f}): {inproc['rules']} rules; {inproc['listeners']} listeners "
                  f"assessed; verdicts {inproc['verdicts']}")
            print(f"  wall time over {args.rounds} rounds (alternating):")
            for name, values in times.items():
                print(f"    {name:40s} {fmt(values)}   CPU median "
                      f"{statistics.median(cpus[name]) * 1e3:7.1f} ms")
            for plain, full in (("portatlas local --json --no-exposure", "portatlas local --json"),
                                ("portatlas local --no-exposure (table)", "portatlas local (table)")):
                # the ratio of each round's pair (run next to each other, so under the same
                # machine speed), then their median: the figure judged
                paired = statistics.median(f / p for f, p in zip(times[full], times[plain]))
                ratio = statistics.median(times[full]) / statistics.median(times[plain])
                verdict = "OK" if paired <= 2.0 else "OVER TARGET"
                ok = ok and paired <= 2.0
                cpu_ratio = statistics.median(cpus[full]) / statistics.median(cpus[plain])
                print(f"    with / without ({full}): {paired:.2f}x median of the rounds' ratios "
                      f"(target: at most 2.0x) -> {verdict}; ratio of the medians {ratio:.2f}x; "
                      f"CPU time {cpu_ratio:.2f}x")
            print(f"  in one process (median): read ruleset and machine {inproc['read']:.1f} ms, "
                  f"parse nft JSON {inproc['parse']:.1f} ms, assess {inproc['listeners']} "
                  f"listeners {inproc['assess']:.1f} ms")
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
