#!/usr/bin/env python3
"""Identification on the whole lab (issue 11): portatlas side by side with Debian's
`nmap -sV` (TCP) and `nmap -sU -sV` (UDP), in one run (needs root).

The lab is tests/support/lab_nmap.py: the older identification tests' servers ("text" and
"binary" hosts) and the issue-11 lab ("new" host, 29 more Debian daemons), each host label in
its own network namespace, all reached from one client namespace over veth pairs
(198.18.250-252.0/24). Nothing else is contacted.

Both tools get exactly the lab's ports, one command per (host, transport), run one after the
other; wall time is measured around whole commands (interpreter start-up included):

    nmap -sV -Pn -n -p PORTS ADDR            nmap -sU -sV -Pn -n -p PORTS ADDR
    portatlas scan ADDR --tcp -p PORTS --identify --json [--portatlas-arg ...]
    portatlas scan ADDR --udp -p PORTS --identify --json

Judged against the truth (nmap's vocabulary; support.lab_nmap.Row.names):
  protocol right   the name given is one of the row's names
  wrong name       a name was given and it is not one of them ("unknown" is never wrong)
  product right    (rows with a known product) the reported product+version contains it
  wrong product    (rows with a known product) a product was reported and it is not that one
nmap's names from its port table (method="table", no probe matched) count as no name.

Targets (issue 11): protocol right on >= as many ports as nmap, product right on >= as many,
zero wrong names, portatlas total time <= 1/10 of nmap's. Exit status 0 when all are met.

    sudo .venv/bin/python benchmarks/bench_identify_lab.py [--only new|old] [--markdown]
        [--nmap-cache FILE] [--json FILE] [--report JSON] [--portatlas-arg=...] [--keep]

--nmap-cache reuses nmap's verdicts (not its time) from an earlier run when FILE exists, and
writes them there otherwise: nmap takes minutes, portatlas seconds, so while developing the
engine one runs nmap once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support import lab_nmap  # noqa: E402
from support.lab_nmap import judge, product_right  # noqa: E402
from support.netns import available  # noqa: E402

NMAP_TIMEOUT = 1800
PORTATLAS_TIMEOUT = 600


def timed(cmd: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, NO_COLOR="1"))
    return time.perf_counter() - start, proc


def groups(lab: lab_nmap.Lab) -> list[tuple[str, str, list[int]]]:
    """(address, transport, ports) for every host and transport of the lab."""
    out: dict[tuple[str, str], set[int]] = {}
    for row in lab.rows:
        out.setdefault((lab.address(row), row.transport), set()).add(row.port)
    return [(a, t, sorted(p)) for (a, t), p in sorted(out.items())]


# ---- nmap -------------------------------------------------------------------------------------

def run_nmap(lab: lab_nmap.Lab, xml_dir: Path) -> tuple[dict[str, float], dict]:
    times = {"tcp": 0.0, "udp": 0.0}
    found: dict[str, dict] = {}
    for address, transport, ports in groups(lab):
        kind = ["-sU", "-sV"] if transport == "udp" else ["-sV"]
        cmd = lab.client.argv(["nmap", *kind, "-Pn", "-n", "-p", ",".join(map(str, ports)),
                               "-oX", "-", address])
        print(f"  {' '.join(cmd[4:])}", file=sys.stderr)
        secs, proc = timed(cmd, NMAP_TIMEOUT)
        if proc.returncode != 0:
            raise SystemExit(f"nmap failed: {proc.stderr.strip()}")
        (xml_dir / f"nmap-{address}-{transport}.xml").write_text(proc.stdout)
        times[transport] += secs
        for port in ET.fromstring(proc.stdout).iter("port"):
            service = port.find("service")
            state = port.find("state").get("state")
            entry: dict = {"state": state}
            if service is not None:
                entry.update({k: service.get(k) for k in
                              ("name", "tunnel", "product", "version", "extrainfo", "method")})
            found[f"{address}/{port.get('portid')}/{port.get('protocol')}"] = entry
    return times, found


def nmap_name(entry: dict) -> str | None:
    """nmap's answer as a name, or None when it did not identify (port-table guesses and
    names ending in '?' are nmap saying it does not know)."""
    name = entry.get("name")
    if not name or entry.get("method") != "probed" or name.endswith("?"):
        return None
    if entry.get("state") not in ("open", "open|filtered"):
        return None
    return name


def nmap_text(entry: dict) -> str:
    if not entry:
        return "?"
    name = entry.get("name") or ""
    if entry.get("tunnel"):
        name = f"{entry['tunnel']}/{name}"
    if entry.get("method") == "table":
        name += "?"
    prod = " ".join(p for p in (entry.get("product"), entry.get("version")) if p)
    state = "" if entry.get("state") == "open" else f"[{entry.get('state')}] "
    return f"{state}{name} {prod}".strip()


# ---- portatlas --------------------------------------------------------------------------------

def run_portatlas(lab: lab_nmap.Lab, extra: list[str]) -> tuple[dict[str, float], dict]:
    times = {"tcp": 0.0, "udp": 0.0}
    found: dict[str, dict] = {}
    for address, transport, ports in groups(lab):
        cmd = lab.client.argv([sys.executable, "-m", "portatlas", "scan", address,
                               f"--{transport}", "-p", ",".join(map(str, ports)), "--identify",
                               "--json", "--no-progress", *extra])
        secs, proc = timed(cmd, PORTATLAS_TIMEOUT)
        times[transport] += secs
        if proc.returncode not in (0, 1):
            raise SystemExit(f"portatlas failed ({proc.returncode}): {proc.stderr.strip()}")
        report = json.loads(proc.stdout)
        for host in report["hosts"]:
            for port in host["ports"]:
                found[f"{host['address']}/{port['port']}/{port['transport']}"] = {
                    "state": port["state"], "service": port.get("service")}
    return times, found


def ours_name(entry: dict) -> tuple[set[str], str | None]:
    """The names portatlas gave (protocol and service name) and its product+version."""
    verdict = (entry or {}).get("service") or {}
    if verdict.get("outcome") != "identified":
        return set(), None
    names = {n for n in (verdict.get("protocol"), verdict.get("service")) if n}
    prod = " ".join(p for p in (verdict.get("product"), verdict.get("version")) if p) or None
    return names, prod


def ours_text(entry: dict) -> str:
    verdict = (entry or {}).get("service") or {}
    if not verdict:
        return (entry or {}).get("state", "?")
    if verdict.get("outcome") != "identified":
        return verdict.get("outcome", "?")
    name = verdict.get("service") or verdict.get("protocol") or "?"
    prod = " ".join(p for p in (verdict.get("product"), verdict.get("version")) if p)
    return f"{name} {prod}".strip()


# ---- judging ----------------------------------------------------------------------------------

def report(raw: dict, markdown: bool) -> tuple[dict, list[dict]]:
    """Judge a run (`raw`: what the tools said, as saved by --json) and print the table and
    the counts; returns (summary, per-port records)."""
    by_key = {(r.host, r.port, r.transport): r for r in lab_nmap.ROWS}
    rows = [by_key[tuple(k)] for k in raw["rows"]]
    nmap, ours, addresses = raw["nmap"], raw["portatlas"], raw["addresses"]
    table, tally = [], {k: 0 for k in ("nmap_proto", "ours_proto", "nmap_wrong", "ours_wrong",
                                        "nmap_prod", "ours_prod", "with_product",
                                        "nmap_badprod", "ours_badprod")}
    records = []
    for row in rows:
        key = f"{addresses[row.host]}/{row.port}/{row.transport}"
        theirs, mine = nmap.get(key, {}), ours.get(key, {})
        n_name = nmap_name(theirs)
        n_verdict = judge(row, {n_name} if n_name else set())
        n_prod = " ".join(p for p in (theirs.get("product"), theirs.get("version")) if p) or None
        o_names, o_prod = ours_name(mine)
        o_verdict = judge(row, o_names)
        n_prod_ok, o_prod_ok = product_right(row, n_prod), product_right(row, o_prod)
        tally["nmap_proto"] += n_verdict == "right"
        tally["ours_proto"] += o_verdict == "right"
        tally["nmap_wrong"] += n_verdict == "wrong"
        tally["ours_wrong"] += o_verdict == "wrong"
        tally["with_product"] += bool(row.product)
        tally["nmap_prod"] += n_prod_ok
        tally["ours_prod"] += o_prod_ok
        # a product named where the truth has one, and not it (e.g. PostgreSQL for PgBouncer)
        tally["nmap_badprod"] += bool(row.product and n_prod and not n_prod_ok)
        tally["ours_badprod"] += bool(row.product and o_prod and not o_prod_ok)
        mark = {"right": "", "none": " (-)", "wrong": " (WRONG)"}
        truth = row.service + (f" · {row.product.split('|')[0]}" if row.product else "")
        table.append([f"{row.port}/{row.transport}" + (" tls" if row.tls else ""), row.host,
                      row.started, truth, nmap_text(theirs) + mark[n_verdict],
                      ours_text(mine) + mark[o_verdict]])
        records.append({"host": row.host, "port": row.port, "transport": row.transport,
                        "truth": row.service, "product": row.product, "nmap": theirs,
                        "portatlas": mine, "nmap_judged": n_verdict, "portatlas_judged": o_verdict,
                        "nmap_product_right": n_prod_ok, "portatlas_product_right": o_prod_ok})

    headers = ["port", "host", "package", "truth", "nmap -sV", "portatlas"]
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for line in table:
            print("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |")
    else:
        widths = [max(len(r[i]) for r in table + [headers]) for i in range(len(headers))]
        for line in [headers] + table:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    nmap_times, ours_times = raw["nmap_times"], raw["portatlas_times"]
    n_total = nmap_times["tcp"] + nmap_times["udp"]
    o_total = ours_times["tcp"] + ours_times["udp"]
    ratio = o_total / n_total if n_total else float("nan")
    total, wp = len(rows), tally["with_product"]
    print()
    print(f"listeners: {total} ({sum(r.transport == 'udp' for r in rows)} UDP, "
          f"{sum(r.tls for r in rows)} behind TLS); with a known product: {wp}")
    print(f"{'':22}{'nmap':>12}{'portatlas':>12}")
    print(f"{'protocol right':22}{tally['nmap_proto']:>12}{tally['ours_proto']:>12}")
    print(f"{'product right':22}{tally['nmap_prod']:>12}{tally['ours_prod']:>12}")
    print(f"{'wrong names':22}{tally['nmap_wrong']:>12}{tally['ours_wrong']:>12}")
    print(f"{'wrong products':22}{tally['nmap_badprod']:>12}{tally['ours_badprod']:>12}")
    print(f"{'time TCP (s)':22}{nmap_times['tcp']:>12.1f}{ours_times['tcp']:>12.1f}")
    print(f"{'time UDP (s)':22}{nmap_times['udp']:>12.1f}{ours_times['udp']:>12.1f}")
    print(f"{'total time (s)':22}{n_total:>12.1f}{o_total:>12.1f}")
    print(f"ratio portatlas / nmap: {ratio:.3f} (target <= 0.1)"
          + (" [nmap times from the cache]" if raw.get("nmap_cached") else ""))
    met = {"protocol": tally["ours_proto"] >= tally["nmap_proto"],
           "product": tally["ours_prod"] >= tally["nmap_prod"],
           "no wrong names": tally["ours_wrong"] == 0, "time": ratio <= 0.1}
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    return {"tally": tally, "ratio": ratio, "targets": met}, records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("new", "old"), help="only the new or the old servers")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--nmap-cache", type=Path, help="reuse/save nmap's verdicts here")
    ap.add_argument("--json", type=Path, help="write every verdict and figure here")
    ap.add_argument("--report", type=Path, metavar="JSON",
                    help="only print the table and counts of an earlier --json run")
    ap.add_argument("--portatlas-arg", action="append", default=[],
                    help="extra argument for portatlas scan (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.report:
        try:
            raw = json.loads(args.report.read_text())["raw"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"bench_identify_lab: error: cannot read {args.report}: {exc}")
        summary, _ = report(raw, args.markdown)
        return 0 if all(summary["targets"].values()) else 1
    if not available():
        raise SystemExit("needs root and ip netns")
    servers = {"new": lab_nmap.NEW, "old": lab_nmap.OLD}.get(args.only, lab_nmap.LAB)
    tmp = Path(tempfile.mkdtemp(prefix="pa11l-bench-lab-"))
    try:
        print(f"starting {len(servers)} servers ...", file=sys.stderr)
        with lab_nmap.start_lab(tmp / "servers", servers) as lab:
            print(f"  {len(lab.rows)} listeners up in {lab.started:.1f} s; hosts "
                  + ", ".join(f"{h}={a}" for h, a in lab.addresses.items()), file=sys.stderr)
            cached = bool(args.nmap_cache and args.nmap_cache.exists())
            if cached:
                saved = json.loads(args.nmap_cache.read_text())
                nmap_times, nmap = saved["times"], saved["found"]
                print(f"nmap: verdicts and times from {args.nmap_cache}", file=sys.stderr)
            else:
                print("nmap -sV / -sU -sV ...", file=sys.stderr)
                nmap_times, nmap = run_nmap(lab, tmp)
                if args.nmap_cache:
                    args.nmap_cache.write_text(json.dumps({"times": nmap_times, "found": nmap,
                                                           "addresses": lab.addresses}))
            print("portatlas scan --identify ...", file=sys.stderr)
            ours_times, ours = run_portatlas(lab, args.portatlas_arg)
            raw = {"rows": [[r.host, r.port, r.transport] for r in lab.rows],
                   "addresses": dict(lab.addresses), "nmap": nmap, "portatlas": ours,
                   "nmap_times": nmap_times, "portatlas_times": ours_times,
                   "nmap_cached": cached, "portatlas_args": args.portatlas_arg}
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    summary, records = report(raw, args.markdown)
    if args.json:
        args.json.write_text(json.dumps({**summary, "rows": records, "raw": raw,
                                         "addresses": raw["addresses"],
                                         "nmap_times": nmap_times,
                                         "portatlas_times": ours_times}, indent=1))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
