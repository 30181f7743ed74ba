#!/usr/bin/env python3
"""portatlas scan side by side with Debian's nmap, in one run (needs root for namespaces).

  (1) all 65,535 TCP ports of a namespace host:  portatlas scan -p -  vs  nmap -sT -T4 -p-
      target: portatlas at most 0.7x nmap's wall time, identical results
  (2) a host behind DROP rules, 50 ms delay and 1% loss, ports 1-1000:
      portatlas vs nmap -sT -T4; target: identical to the ground truth, no slower than nmap
  (3) stretch: the raw-socket SYN mode, portatlas scan --syn -p -  vs  nmap -sS -T4 -p-

Rounds alternate the two tools so that background load hits both alike; the medians and
their ratio are printed. Wall time is measured around the whole command (interpreter start,
name parsing, output), as a user would see it.

    sudo .venv/bin/python benchmarks/bench_scan.py [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support.scan_lab import Lab, nmap_states  # noqa: E402
from support.scan_netem import Netem  # noqa: E402

OPEN_ALL = [7, 22, 80, 443, 3306, 8080, 31337, 40001, 50000, 60999, 65535]
OPEN_DROP = [22, 80, 443, 631, 993]
CLOSED_DROP = [25, 110, 143, 587]  # allowed through the firewall, nothing listening: RST


CPU: dict[str, list[float]] = {}  # tool -> CPU seconds (user + system) per run


def timed(cmd: list[str], timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, NO_COLOR="1"))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault("nmap" if "nmap" in cmd else "portatlas", []).append(cpu)
    return wall, proc


def portatlas_states(lab: Lab, address: str, spec: str, *extra: str) -> tuple[float, dict]:
    """Like nmap -oX: a compact document (--json lists ports worth listing and the rest as
    exact extraports ranges), expanded here to one state per port."""
    from portatlas.scan.ports import parse_port_spec

    cmd = lab.s.argv([sys.executable, "-m", "portatlas", "scan", address, "-p", spec,
                      "--json", "--no-progress", *extra])
    secs, proc = timed(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"portatlas failed: {proc.stderr}")
    states = {}
    for host in json.loads(proc.stdout)["hosts"]:
        for p in host["ports"]:
            states[(host["address"], p["port"], p["transport"])] = p["state"]
        for group in host["extraports"]:
            for reason in group["reasons"]:
                for port in parse_port_spec(reason["ports"]):
                    states[(host["address"], port, group["transport"])] = group["state"]
    return secs, states


def nmap_run(lab: Lab, address: str, spec: str, mode: str = "-sT") -> tuple[float, dict]:
    cmd = lab.s.argv(["nmap", mode, "-T4", "-p", spec, "-n", "-Pn", "-oX", "-", address])
    secs, proc = timed(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"nmap failed: {proc.stderr}")
    return secs, nmap_states(proc.stdout)


def compare(name: str, got: dict, truth: dict) -> int:
    wrong = {k: (got.get(k), v) for k, v in truth.items() if got.get(k) != v}
    extra = set(got) - set(truth)
    return len(wrong) + len(extra)


def scenario_all_ports(rounds: int) -> dict:
    with Lab() as lab:
        lab.listen(OPEN_ALL)
        truth = {(lab.ip, p, "tcp"): "closed" for p in range(1, 65536)}
        truth.update({(lab.ip, p, "tcp"): "open" for p in OPEN_ALL})
        pa_times, nm_times, pa_wrong, nm_wrong, same = [], [], 0, 0, True
        for _ in range(rounds):
            t, states = portatlas_states(lab, lab.ip, "-")
            pa_times.append(t)
            pa_wrong += compare("portatlas", states, truth)
            t2, nstates = nmap_run(lab, lab.ip, "1-65535")
            nm_times.append(t2)
            nm_wrong += compare("nmap", nstates, truth)
            same &= states == nstates
        return _summary("all 65,535 TCP ports, namespace host", pa_times, nm_times, pa_wrong,
                        nm_wrong, same, target="<= 0.7x")


def scenario_syn(rounds: int) -> dict:
    with Lab() as lab:
        lab.listen(OPEN_ALL)
        truth = {(lab.ip, p, "tcp"): "closed" for p in range(1, 65536)}
        truth.update({(lab.ip, p, "tcp"): "open" for p in OPEN_ALL})
        pa_times, nm_times, pa_wrong, nm_wrong, same = [], [], 0, 0, True
        for _ in range(rounds):
            t, states = portatlas_states(lab, lab.ip, "-", "--syn")
            pa_times.append(t)
            pa_wrong += compare("portatlas", states, truth)
            t2, nstates = nmap_run(lab, lab.ip, "1-65535", "-sS")
            nm_times.append(t2)
            nm_wrong += compare("nmap", nstates, truth)
            same &= states == nstates
        return _summary("stretch: SYN mode, all 65,535 TCP ports (portatlas --syn vs nmap -sS)",
                        pa_times, nm_times, pa_wrong, nm_wrong, same, target="(stretch) <= 1.0x")


def scenario_drop_delay_loss(rounds: int) -> dict:
    with Lab() as lab:
        lab.listen(OPEN_DROP)
        allowed = OPEN_DROP + CLOSED_DROP
        rules = [["-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports",
                  ",".join(map(str, allowed)), "-j", "ACCEPT"],
                 ["-A", "INPUT", "-p", "tcp", "-j", "DROP"]]
        lab.firewall(rules, v6=False)
        truth = {(lab.ip, p, "tcp"): "filtered" for p in range(1, 1001)}
        truth.update({(lab.ip, p, "tcp"): "closed" for p in CLOSED_DROP})
        truth.update({(lab.ip, p, "tcp"): "open" for p in OPEN_DROP})
        pa_times, nm_times, pa_wrong, nm_wrong, same = [], [], 0, 0, True
        with Netem(lab.t, lab.t_if, delay=0.05, loss=0.01, v6=False):
            for _ in range(rounds):
                t, states = portatlas_states(lab, lab.ip, "1-1000")
                pa_times.append(t)
                pa_wrong += compare("portatlas", states, truth)
                t2, nstates = nmap_run(lab, lab.ip, "1-1000")
                nm_times.append(t2)
                nm_wrong += compare("nmap", nstates, truth)
                same &= states == nstates
        return _summary("1,000 ports behind DROP rules, 50 ms delay, 1% loss", pa_times,
                        nm_times, pa_wrong, nm_wrong, same, target="<= 1.0x")


def _summary(name, pa, nm, pa_wrong, nm_wrong, same, target) -> dict:
    med_pa, med_nm = statistics.median(pa), statistics.median(nm)
    cpu_pa = statistics.median(CPU.pop("portatlas", [0.0])[-len(pa):])
    cpu_nm = statistics.median(CPU.pop("nmap", [0.0])[-len(nm):])
    return {"scenario": name, "rounds": len(pa),
            "portatlas_s": [round(x, 3) for x in pa], "nmap_s": [round(x, 3) for x in nm],
            "portatlas_median_s": round(med_pa, 3), "nmap_median_s": round(med_nm, 3),
            "ratio": round(med_pa / med_nm, 3), "target": target,
            "portatlas_cpu_median_s": round(cpu_pa, 3), "nmap_cpu_median_s": round(cpu_nm, 3),
            "portatlas_ports_wrong": pa_wrong, "nmap_ports_wrong": nm_wrong,
            "identical_to_nmap_every_round": same}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=("all", "drop", "syn"))
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_scan: needs root (network namespaces)", file=sys.stderr)
        return 2
    os.environ.setdefault("PORTATLAS_DB", "/tmp/pa-bench.sqlite3")
    out = []
    if args.only in (None, "all"):
        out.append(scenario_all_ports(args.rounds))
    if args.only in (None, "drop"):
        out.append(scenario_drop_delay_loss(args.rounds))
    if args.only in (None, "syn"):
        out.append(scenario_syn(args.rounds))
    for s in out:
        print(f"\n{s['scenario']}  ({s['rounds']} rounds, alternating)")
        print(f"  portatlas  median {s['portatlas_median_s']:.3f} s   {s['portatlas_s']}")
        print(f"  nmap -T4   median {s['nmap_median_s']:.3f} s   {s['nmap_s']}")
        print(f"  ratio portatlas/nmap {s['ratio']:.2f}  (target {s['target']})")
        print(f"  CPU time (user+system) median: portatlas {s['portatlas_cpu_median_s']:.3f} s, "
              f"nmap {s['nmap_cpu_median_s']:.3f} s")
        print(f"  ports differing from ground truth, all rounds: portatlas {s['portatlas_ports_wrong']}"
              f", nmap {s['nmap_ports_wrong']}; identical to nmap every round: "
              f"{s['identical_to_nmap_every_round']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
