#!/usr/bin/env python3
"""Service identification: portatlas side by side with `nmap -sV` (and `-sU -sV` for UDP),
on the whole real-server set of the identification tests, in one run (needs root).

Servers (Debian packages, started inside a network namespace; portatlas and nmap run in a
second namespace joined to it by a veth pair, i.e. a remote host):
  TCP  openssh 22 + 103, nginx 80 + 57 (HTTP) and 443 (HTTPS), redis 6379 + 8080,
       memcached 11211, vsftpd 21, exim 25 + 2525, dovecot imap 143 + pop3 110 and
       imaps 993 + pop3s 995,
       rsync 873, postgresql 5432, mosquitto 1883, dnsmasq 53/tcp
  UDP  dnsmasq 53, chrony 123, snmpd 161

Targets: portatlas must identify every service at least as well as nmap (same protocol;
the product wherever nmap names one) in at most a tenth of nmap's total wall time.
Wall time is measured around whole commands (interpreter start and imports included):
nmap -sV for the TCP ports + nmap -sU -sV for the UDP ports, versus one portatlas process
identifying all of them (portatlas.identify.identify_many), and, for information,
`portatlas scan --identify` (sweep + identification, TCP then UDP).

    sudo .venv/bin/python benchmarks/bench_identify.py [--rounds N] [--markdown] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support import servers_binary as sb  # noqa: E402
from support import servers_text as st  # noqa: E402
from support.netns import Netns, available, link  # noqa: E402

# (label, start function, keyword arguments)
SERVERS = [
    ("openssh", st.start_ssh, {"ports": (22, 103)}),
    ("nginx", st.start_nginx, {"http_ports": (80, 57), "https_ports": (443,)}),
    ("redis", st.start_redis, {"ports": (6379, 8080)}),
    ("memcached", st.start_memcached, {"ports": (11211,)}),
    ("vsftpd", st.start_vsftpd, {"ports": (21,)}),
    ("exim", st.start_exim, {"ports": (25, 2525), "smtps_port": None}),
    ("dovecot", st.start_dovecot, {"imap_ports": (143,), "pop3_ports": (110,),
                                   "imaps_port": 993, "pop3s_port": 995}),
    ("rsync", st.start_rsync, {"ports": (873,)}),
    ("postgresql", sb.start_postgresql, {"ports": (5432,)}),
    ("mosquitto", sb.start_mosquitto, {"ports": (1883,)}),
    ("dnsmasq", sb.start_dnsmasq, {"ports": (53,)}),
    ("chrony", sb.start_chrony, {"ports": (123,)}),
    ("snmpd", sb.start_snmpd, {"ports": (161,)}),
]

# (port, transport) -> (what runs there, protocol, product) — the truth
TRUTH = {
    (22, "tcp"): ("OpenSSH", "ssh", "OpenSSH"), (103, "tcp"): ("OpenSSH on 103", "ssh", "OpenSSH"),
    (80, "tcp"): ("nginx HTTP", "http", "nginx"), (57, "tcp"): ("nginx HTTP on 57", "http", "nginx"),
    (443, "tcp"): ("nginx HTTPS", "http", "nginx"),
    (6379, "tcp"): ("Redis", "redis", "Redis"), (8080, "tcp"): ("Redis on 8080", "redis", "Redis"),
    (11211, "tcp"): ("memcached", "memcached", "memcached"),
    (21, "tcp"): ("vsftpd", "ftp", "vsftpd"),
    (25, "tcp"): ("Exim", "smtp", "Exim"), (2525, "tcp"): ("Exim on 2525", "smtp", "Exim"),
    (143, "tcp"): ("Dovecot IMAP", "imap", "Dovecot"), (110, "tcp"): ("Dovecot POP3", "pop3", "Dovecot"),
    (993, "tcp"): ("Dovecot IMAPS", "imap", "Dovecot"),
    (995, "tcp"): ("Dovecot POP3S", "pop3", "Dovecot"),
    (873, "tcp"): ("rsync daemon", "rsync", None),
    (5432, "tcp"): ("PostgreSQL", "postgresql", "PostgreSQL"),
    (1883, "tcp"): ("Mosquitto", "mqtt", "Mosquitto"),
    (53, "tcp"): ("dnsmasq (TCP)", "dns", "dnsmasq"),
    (53, "udp"): ("dnsmasq", "dns", "dnsmasq"), (123, "udp"): ("chrony", "ntp", "chrony"),
    (161, "udp"): ("snmpd", "snmp", "Net-SNMP"),
}

# nmap service names -> our protocol names
NMAP_TO_OURS = {"domain": "dns", "https": "http", "http-proxy": "http", "imaps": "imap",
                "pop3s": "pop3", "ms-wbt-server": "rdp", "microsoft-ds": "smb",
                "jabber": "xmpp", "mongod": "mongodb"}

SAVE_XML: Path | None = None  # where nmap's XML is kept (the temporary directory)

IDENTIFY = r"""
import json, sys, time
from portatlas.identify import identify_many
targets = [(sys.argv[1], int(p), t) for p, t in (x.split("/") for x in sys.argv[2:])]
batch = identify_many(targets, timeout=5)
print(json.dumps([v.to_dict() for v in batch.results]))
"""


def timed(cmd: list[str], timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, NO_COLOR="1"))
    return time.perf_counter() - start, proc


def run_nmap(client: Netns, address: str, udp: bool, ports: list[int]) -> tuple[float, dict]:
    kind = ["-sU", "-sV"] if udp else ["-sV"]
    cmd = client.argv(["nmap", *kind, "-Pn", "-n", "-p", ",".join(map(str, ports)),
                       "-oX", "-", address])
    secs, proc = timed(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"nmap failed: {proc.stderr}")
    if SAVE_XML:
        (SAVE_XML / f"nmap-{'udp' if udp else 'tcp'}.xml").write_text(proc.stdout)
    found = {}
    for port in ET.fromstring(proc.stdout).iter("port"):
        service = port.find("service")
        state = port.find("state").get("state")
        key = (int(port.get("portid")), port.get("protocol"))
        if service is None:
            found[key] = {"state": state}
            continue
        found[key] = {"state": state, "name": service.get("name"),
                      "tunnel": service.get("tunnel"), "product": service.get("product"),
                      "version": service.get("version"), "method": service.get("method")}
    return secs, found


def run_portatlas(client: Netns, address: str, targets: list[tuple[int, str]]) -> tuple[float, dict]:
    cmd = client.argv([sys.executable, "-c", IDENTIFY, address,
                       *(f"{p}/{t}" for p, t in targets)])
    secs, proc = timed(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"portatlas failed: {proc.stderr}")
    return secs, {(v["port"], v["transport"]): v for v in json.loads(proc.stdout)}


def run_portatlas_scan(client: Netns, address: str, tcp: list[int], udp: list[int]) -> float:
    total = 0.0
    for flag, ports in (("--tcp", tcp), ("--udp", udp)):
        cmd = client.argv([sys.executable, "-m", "portatlas", "scan", address, flag, "-p",
                           ",".join(map(str, ports)), "--identify", "--no-progress", "--json"])
        secs, proc = timed(cmd)
        if proc.returncode != 0:
            return float("nan")
        total += secs
    return total


def nmap_protocol(found: dict) -> str | None:
    name = found.get("name")
    if not name or found.get("method") != "probed" and name.endswith("?"):
        return None
    if found.get("state") not in ("open",):
        return None
    name = name.rstrip("?")
    return NMAP_TO_OURS.get(name, name)


def same_product(ours: str | None, theirs: str | None) -> bool:
    if not theirs:
        return True
    if not ours:
        return False
    a, b = ours.lower().split()[0], theirs.lower().split()[0]
    return a in theirs.lower() or b in ours.lower()


def describe_nmap(found: dict) -> str:
    if not found or found.get("state") != "open":
        return found.get("state", "?") if found else "?"
    name = (f"{found['tunnel']}/" if found.get("tunnel") else "") + (found.get("name") or "?")
    if found.get("method") == "table":
        name += "?"  # from the port table, not from probing
    prod = " ".join(p for p in (found.get("product"), found.get("version")) if p)
    return f"{name} {prod}".strip()


def describe_ours(v: dict) -> str:
    if v["outcome"] != "identified":
        return v["outcome"]
    prod = " ".join(p for p in (v.get("product"), v.get("version")) if p)
    return f"{v.get('service') or v.get('protocol')} {prod}".strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1, help="repeat the timing (medians shown)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (server files, nmap's XML)")
    args = ap.parse_args()
    if not available():
        raise SystemExit("needs root and ip netns")
    global SAVE_XML
    tmp = Path(tempfile.mkdtemp(prefix="pa-bench-identify-"))
    SAVE_XML = tmp
    tcp = sorted(p for p, t in TRUTH if t == "tcp")
    udp = sorted(p for p, t in TRUTH if t == "udp")
    targets = sorted(TRUTH)
    with Netns("pa-bis") as server, Netns("pa-bic") as client:
        _, address = link(client, server)
        print(f"starting {len(SERVERS)} servers in {server.name} ...", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=6) as pool:
            for future in [pool.submit(fn, server, tmp / name, **kw) for name, fn, kw in SERVERS]:
                future.result()
        times: dict[str, list[float]] = {"nmap_tcp": [], "nmap_udp": [], "portatlas": [],
                                         "portatlas_scan": []}
        for n in range(args.rounds):
            print(f"round {n + 1}/{args.rounds}: nmap -sV, nmap -sU -sV, portatlas",
                  file=sys.stderr)
            secs, nmap_tcp = run_nmap(client, address, False, tcp)
            times["nmap_tcp"].append(secs)
            secs, nmap_udp = run_nmap(client, address, True, udp)
            times["nmap_udp"].append(secs)
            secs, ours = run_portatlas(client, address, targets)
            times["portatlas"].append(secs)
            times["portatlas_scan"].append(run_portatlas_scan(client, address, tcp, udp))
        nmap = {**nmap_tcp, **nmap_udp}

    rows, failures = [], 0
    for key in targets:
        label, protocol, product = TRUTH[key]
        theirs, mine = nmap.get(key, {}), ours[key]
        # right = agrees with the truth; nmap sets the bar where it is right
        nmap_protocol_ok = nmap_protocol(theirs) == protocol
        nmap_product_ok = bool(theirs.get("product")) and product is not None and \
            same_product(theirs.get("product"), product)
        our_protocol_ok = mine["outcome"] == "identified" and mine["protocol"] == protocol
        our_product_ok = product is None or same_product(mine.get("product"), product)
        at_least = (our_protocol_ok or not nmap_protocol_ok) and \
            (our_product_ok or not nmap_product_ok)
        right = our_protocol_ok and our_product_ok
        verdict = "ok" if at_least and right else ("WORSE" if not at_least else "wrong")
        failures += verdict != "ok"
        truth = f"{protocol}" + (f" ({product})" if product else "")
        rows.append([f"{key[0]}/{key[1]}", label, truth, describe_nmap(theirs),
                     describe_ours(mine), verdict])

    med = {k: statistics.median(v) for k, v in times.items() if v}
    nmap_total = med["nmap_tcp"] + med["nmap_udp"]
    ratio = med["portatlas"] / nmap_total
    headers = ["port", "service", "truth", "nmap -sV", "portatlas", ""]
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [headers]) for i in range(len(headers))]
        for row in [headers] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print()
    print(f"nmap -sV (TCP, {len(tcp)} ports):     {med['nmap_tcp']:8.2f} s")
    print(f"nmap -sU -sV (UDP, {len(udp)} ports):  {med['nmap_udp']:8.2f} s")
    print(f"nmap total:                    {nmap_total:8.2f} s")
    print(f"portatlas identify_many (all {len(targets)}): {med['portatlas']:6.2f} s"
          f"   = {ratio:.3f} x nmap  (target <= 0.1)")
    print(f"portatlas scan --identify (TCP+UDP): {med['portatlas_scan']:.2f} s"
          f"   = {med['portatlas_scan'] / nmap_total:.3f} x nmap  (for information)")
    kept = f" (nmap's XML: {tmp})" if args.keep else ""
    print(f"rounds: {args.rounds}; right and at least as good as nmap on "
          f"{len(rows) - failures}/{len(rows)} ports{kept}")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if failures == 0 and ratio <= 0.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
