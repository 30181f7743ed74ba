#!/usr/bin/env python3
"""portatlas scan of networks side by side with Debian's nmap, in one run (needs root).

  (1) a /24 with 6 live hosts on the scanner's link, --top 100:
      portatlas scan NET/24 --top 100   vs   nmap -sT -T4 --top-ports 100 NET/24
      target: at most nmap's wall time, the same hosts up and the same port states
  (2) a /22 with 2% live, part on the link and part behind a router (a routed /24 where the
      router's ARP fails for dead addresses, and a routed /23 blackholed behind a second
      router): both with their default host discovery, --top 100;
      target: at most nmap's wall time, same result

The network is tests/support/scan_network.py (namespaces, veth pairs inside them). Rounds
alternate the two tools; medians and their ratio are printed. Wall time is measured around
the whole command (interpreter start-up, output included). Both write XML (-oX -, --xml)
and are compared by one parser: the set of hosts up and every port state of those hosts.

    sudo .venv/bin/python benchmarks/bench_scan_network.py [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support.scan_lab import nmap_states  # noqa: E402
from support.scan_network import Network  # noqa: E402


def timed(cmd: list[str], timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, NO_COLOR="1"))
    return time.perf_counter() - start, proc


def hosts_up(xml_text: str) -> set[str]:
    root = ET.fromstring(xml_text)
    out = set()
    for host in root.iter("host"):
        status = host.find("status")
        if status is not None and status.get("state") == "up":
            out.add(host.find("address").get("addr"))
    return out


def scanned_ports(xml_text: str) -> str:
    info = ET.fromstring(xml_text).find("scaninfo")
    return info.get("services") if info is not None else ""


def run_tool(net: Network, tool: str, targets: list[str]) -> tuple[float, dict]:
    if tool == "nmap":
        cmd = ["nmap", "-sT", "-T4", "--top-ports", "100", "-n", "-oX", "-", *targets]
    else:
        cmd = [sys.executable, "-m", "portatlas", "scan", *targets, "--top", "100", "--xml"]
    secs, proc = timed(net.s.argv(cmd))
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return secs, {"up": hosts_up(proc.stdout), "ports": nmap_states(proc.stdout),
                  "scanned": scanned_ports(proc.stdout)}


def scenario(name: str, net: Network, targets: list[str], rounds: int) -> dict:
    times: dict[str, list[float]] = {"portatlas": [], "nmap": []}
    results: dict[str, list[dict]] = {"portatlas": [], "nmap": []}
    for r in range(rounds):
        for tool in (("portatlas", "nmap") if r % 2 == 0 else ("nmap", "portatlas")):
            secs, res = run_tool(net, tool, targets)
            times[tool].append(secs)
            results[tool].append(res)
    pa, nm = results["portatlas"], results["nmap"]
    same_every_round = all(a["up"] == b["up"] and a["ports"] == b["ports"] for a, b in zip(pa, nm))
    diff_hosts = sorted(pa[0]["up"] ^ nm[0]["up"])
    diff_ports = sorted(k for k in set(pa[0]["ports"]) | set(nm[0]["ports"])
                        if pa[0]["ports"].get(k) != nm[0]["ports"].get(k))
    open_count = sum(1 for v in pa[0]["ports"].values() if v == "open")
    med_pa, med_nm = statistics.median(times["portatlas"]), statistics.median(times["nmap"])
    return {"scenario": name, "rounds": rounds, "targets": targets,
            "portatlas_s": [round(x, 3) for x in times["portatlas"]],
            "nmap_s": [round(x, 3) for x in times["nmap"]],
            "portatlas_median_s": round(med_pa, 3), "nmap_median_s": round(med_nm, 3),
            "ratio": round(med_pa / med_nm, 3), "target": "<= 1.0x",
            "hosts_up": len(pa[0]["up"]), "open_ports": open_count,
            "same_port_list": pa[0]["scanned"] == nm[0]["scanned"],
            "identical_to_nmap_every_round": same_every_round,
            "first_round_differences": {"hosts": diff_hosts[:10], "ports": [list(k) for k in diff_ports[:10]]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("24", "22"))
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_scan_network: needs root (network namespaces)", file=sys.stderr)
        return 2
    db = os.environ.setdefault("PORTATLAS_DB", "/tmp/pa13-bench.sqlite3")
    if not Path(db).exists():  # --top 100 from nmap-services frequencies, as nmap's
        from portatlas.kb.build import build

        build(Path(db), str(REPO.parent / "shared" / "data" / "iana" / "service-names-port-numbers.xml"))
    out = []
    if args.only in (None, "24"):
        with Network(base=164, live_onlink=6) as net:
            out.append(scenario("/24, 6 live hosts on the link, --top 100", net,
                                [f"198.18.{net.base}.0/24"], args.rounds))
    if args.only in (None, "22"):
        with Network(base=168, plan="bench22") as net:
            out.append(scenario("/22, 2% live, on the link and routed, --top 100", net,
                                [f"198.18.{net.base}.0/22"], args.rounds))
    for s in out:
        print(f"\n{s['scenario']}  ({s['rounds']} rounds, alternating)")
        print(f"  portatlas scan --top 100     median {s['portatlas_median_s']:.3f} s   {s['portatlas_s']}")
        print(f"  nmap -sT -T4 --top-ports 100 median {s['nmap_median_s']:.3f} s   {s['nmap_s']}")
        print(f"  ratio portatlas/nmap {s['ratio']:.2f}  (target {s['target']})")
        print(f"  hosts up {s['hosts_up']}, open ports {s['open_ports']}; same port list: "
              f"{s['same_port_list']}; identical to nmap every round: "
              f"{s['identical_to_nmap_every_round']}")
        if not s["identical_to_nmap_every_round"]:
            print(f"  first round differences: {s['first_round_differences']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
