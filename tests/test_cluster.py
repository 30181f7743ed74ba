"""`portatlas scan --cluster`: a real `dask scheduler` and real `dask worker` processes, each
in a network namespace of its own with its own route to the targets (support.cluster_lab).

The one-machine scan of the same targets (run in a worker's namespace, no cluster) is the
reference: the cluster's answer must equal it port for port, also when a worker is killed
in the middle of the scan.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from support import netns

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

distributed = pytest.importorskip("distributed")

from support.cluster_lab import (  # noqa: E402
    TARGET_NET, TARGET_NET6, ClusterLab, comparable, differences)

OPEN = [22, 80, 443, 8080]
SSH = 2222  # a greeting listener, for identification
PORTS = "1-150,443,3306,8080"
# short waits for the DROP-ped ports: the veths answer in microseconds
FAST = ["--initial-timeout", "0.3", "--max-timeout", "0.5"]
TARGETS = [f"{TARGET_NET}.0/27", f"{TARGET_NET6}1-{TARGET_NET6}4"]


@pytest.fixture(scope="module")
def lab(atlas_db):
    with ClusterLab(workers=3, env={"PORTATLAS_DB": str(atlas_db)}) as lab:
        lab.listen(OPEN)
        lab.listen([SSH], banner="SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n")
        lab.udp_respond([7, 1234], [f"{TARGET_NET}.{i}" for i in range(1, 5)])
        lab.firewall(
            ["-A", "INPUT", "-d", f"{TARGET_NET}.5", "-p", "tcp", "-j", "DROP"],
            ["-A", "INPUT", "-d", f"{TARGET_NET}.6", "-p", "tcp", "--dport", "8080", "-j",
             "REJECT", "--reject-with", "icmp-port-unreachable"],
            ["-A", "INPUT", "-d", f"{TARGET_NET}.7", "-p", "tcp", "--dport", "3306", "-j", "DROP"],
            ["-A", "INPUT", "-d", f"{TARGET_NET}.8", "-p", "tcp", "--dport", "100:120", "-j",
             "REJECT", "--reject-with", "icmp-host-unreachable"],
            # silent to everything, pings included: host discovery finds it down
            ["-A", "INPUT", "-d", f"{TARGET_NET}.9", "-j", "DROP"],
        )
        yield lab


def ndjson(text: str) -> tuple[dict, list, dict]:
    ports, hosts, summary = {}, [], None
    for line in text.splitlines():
        d = json.loads(line)
        if d["type"] == "port":
            key = (d["address"], d["port"], d["transport"])
            assert key not in ports, f"port {key} streamed twice"
            ports[key] = (d["state"], d["reason"])
        elif d["type"] == "host":
            hosts.append(d)
        else:
            summary = d
    return ports, hosts, summary


@pytest.fixture(scope="module")
def reference(lab):
    """The one-machine scan, from worker 0's namespace."""
    proc = lab.portatlas_in(lab.workers[0].ns, "scan", *TARGETS, "-p", PORTS, *FAST, "--json",
                            "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["ports"]["open"] > 100  # the lab is what it should be
    return report


def test_cluster_equals_one_machine(lab, reference):
    proc = lab.cluster_scan(*TARGETS, "-p", PORTS, *FAST, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert comparable(report) == comparable(reference), differences(report, reference)
    assert report["summary"] == reference["summary"]
    cluster = report["options"]["cluster"]
    assert cluster["scheduler"] == lab.address
    used = [w for w in cluster["workers"] if w["shards"]]
    assert len(used) == 3, cluster  # every worker took part
    # every probe once; the down host (.9) has none
    assert sum(w["probes"] for w in used) == 35 * 153


def test_local_cluster_equals_one_machine(lab, reference):
    # --cluster local:N on "one big machine": a worker's namespace, whose loopback holds the
    # local scheduler and workers
    proc = lab.portatlas_in(lab.workers[1].ns, "scan", *TARGETS, "-p", PORTS, *FAST, "--json",
                            "--no-progress", "--cluster", "local:2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert comparable(report) == comparable(reference), differences(report, reference)
    assert report["options"]["cluster"]["scheduler"] == "local:2"
    assert len(report["options"]["cluster"]["workers"]) == 2


def test_ndjson_streams_every_port_once(lab, reference):
    proc = lab.cluster_scan(*TARGETS, "-p", PORTS, *FAST, "--ndjson", "--no-progress",
                            "--shards", "7", "--shard-seed", "12345")
    assert proc.returncode == 0, proc.stderr
    ports, hosts, summary = ndjson(proc.stdout)
    assert len(ports) == 35 * 153  # the down host (.9) has no port lines
    assert len(hosts) == 36
    assert summary["ports"] == reference["summary"]["ports"]
    expect = {}
    for h in reference["hosts"]:
        for p in h["ports"]:
            expect[(h["address"], p["port"], p["transport"])] = (p["state"], p["reason"])
    for key, value in expect.items():
        assert ports[key] == value


def test_ping_scan_on_the_cluster(lab):
    """-sn: the hosts themselves are dealt out as shards; the down host is found down."""
    args = [f"{TARGET_NET}.0/27", "-sn", "--json", "--no-progress"]
    one = lab.portatlas_in(lab.workers[2].ns, "scan", *args)
    many = lab.cluster_scan(*args)
    assert one.returncode == 0 and many.returncode == 0, (one.stderr, many.stderr)
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    assert comparable(a) == comparable(b), differences(a, b)
    assert b["summary"]["hosts_down"] == 1 and b["summary"]["hosts_up"] == 31
    down = [h for h in b["hosts"] if h["status"] == "down"]
    assert down[0]["address"] == f"{TARGET_NET}.9"


def test_udp_and_tcp_on_the_cluster(lab):
    """UDP runs in the shards too: replies, ICMP port unreachable, and silence."""
    # default timeouts: UDP has no RTT sample before its first reply
    args = [f"{TARGET_NET}.1-{TARGET_NET}.4", "--tcp", "--udp", "-p", "7,9,22,1234", "--json",
            "--no-progress"]
    one = lab.portatlas_in(lab.workers[0].ns, "scan", *args)
    many = lab.cluster_scan(*args, "--shards", "5")
    assert one.returncode == 0 and many.returncode == 0, (one.stderr, many.stderr)
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    assert comparable(a) == comparable(b), differences(a, b)
    states = {(h["address"], p["port"], p["transport"]): p["state"]
              for h in b["hosts"] for p in h["ports"]}
    assert states[(f"{TARGET_NET}.1", 7, "udp")] == "open"
    assert states[(f"{TARGET_NET}.1", 1234, "udp")] == "open"
    assert states[(f"{TARGET_NET}.1", 9, "udp")] == "closed"


def test_identify_runs_on_the_workers(lab):
    args = [f"{TARGET_NET}.1", f"{TARGET_NET}.2", "-p", f"81,{SSH}", "--identify", *FAST,
            "--json", "--no-progress"]
    one = lab.portatlas_in(lab.workers[1].ns, "scan", *args)
    many = lab.cluster_scan(*args)
    assert one.returncode == 0 and many.returncode == 0, (one.stderr, many.stderr)
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    assert comparable(a) == comparable(b), differences(a, b)
    services = [p["service"] for h in b["hosts"] for p in h["ports"] if p["state"] == "open"]
    assert len(services) == 2
    assert all(s["protocol"] == "ssh" and s["product"] == "OpenSSH" for s in services), services


def test_worker_without_a_route_is_reported_not_filtered(lab, reference):
    lost = lab.add_worker(route=False)
    try:
        proc = lab.cluster_scan(*TARGETS, "-p", PORTS, *FAST, "--json", "--no-progress")
    finally:
        lab.stop_worker(lost)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    warning = [line for line in proc.stderr.splitlines() if lost.address in line]
    assert len(warning) == 1 and "no route" in warning[0], proc.stderr
    assert warning[0].startswith("portatlas: warning: ")
    entry = [w for w in report["options"]["cluster"]["workers"]
             if w["address"].startswith(lost.address)]
    assert entry and entry[0]["state"] == "no-route" and entry[0]["shards"] == 0
    assert any("no route" in n for n in report["notes"])
    # its share was scanned by the others: the same answer as one machine, nothing filtered
    # for want of a route
    assert comparable(report) == comparable(reference), differences(report, reference)


def test_worker_killed_mid_scan(lab, reference):
    # slow the workers down (--rate) so that the scan is still running when one dies
    proc = lab.popen_client("scan", *TARGETS, "-p", PORTS, *FAST, "--ndjson", "--no-progress",
                            "--rate", "1500", "--shards", "24", "--cluster", lab.address)
    victim = lab.workers[0]
    first = proc.stdout.readline()  # the first shard is in: the scan is under way
    assert first, proc.stderr.read()
    os.kill(victim.pid, signal.SIGKILL)
    # read on through the same buffered file: communicate() would skip what readline()
    # already buffered
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0, err
    ports, hosts, summary = ndjson(first + out)
    expect = {(h["address"], p["port"], p["transport"]): (p["state"], p["reason"])
              for h in reference["hosts"] for p in h["ports"]}
    missing = sorted(set(expect) - set(ports))
    assert len(ports) == 35 * 153, (missing[:20], summary["notes"], err)  # no gap
    assert summary["ports"] == reference["summary"]["ports"]
    expect = {(h["address"], p["port"], p["transport"]): (p["state"], p["reason"])
              for h in reference["hosts"] for p in h["ports"]}
    assert {k: ports[k] for k in expect} == expect
    assert any("left during the scan" in n for n in summary["notes"]), summary["notes"]
    # put the cluster back to three workers for what follows
    victim.proc.wait(timeout=10)
    victim.ns.close()
    lab.workers.remove(victim)
    lab.add_worker()


def test_ctrl_c_gives_partial_results(lab):
    proc = lab.popen_client("scan", *TARGETS, "-p", PORTS, *FAST, "--json", "--no-progress",
                            "--rate", "300", "--shards", "30", "--cluster", lab.address)
    time.sleep(6)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    counts = report["summary"]["ports"]
    assert counts.get("unscanned", 0) > 0
    # every port accounted for exactly once (the down host's too, unless a finished shard
    # already settled it down)
    assert sum(counts.values()) in (35 * 153, 36 * 153)


@pytest.mark.parametrize("package, words", [
    ('__version__ = "0.0.1-other"\n', "has portatlas 0.0.1-other, this client"),
    ('raise ModuleNotFoundError("No module named \'portatlas\'")\n', "has no portatlas"),
], ids=["other-version", "no-portatlas"])
def test_worker_with_another_or_no_portatlas_is_refused(lab, tmp_path, package, words):
    # a package earlier on the worker's path stands for another install (or none)
    fake = tmp_path / "portatlas"
    fake.mkdir()
    (fake / "__init__.py").write_text(package)
    odd = lab.add_worker(env={"PYTHONPATH": str(tmp_path)})
    try:
        proc = lab.cluster_scan(f"{TARGET_NET}.1", "-p", "22", "--json", "--no-progress")
    finally:
        lab.stop_worker(odd)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portatlas: error: "), proc.stderr
    assert words in lines[0] and odd.address in lines[0], lines[0]


def test_scheduler_down_is_one_line(lab):
    # nothing listens on that port of the hub: the scheduler is not running
    proc = lab.portatlas_in(lab.client, "scan", f"{TARGET_NET}.1", "-p", "22", "--cluster",
                            "tcp://198.18.59.1:8799", "--json")
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("portatlas: error: cannot reach the Dask scheduler at "
                               "tcp://198.18.59.1:8799: Connection refused")
    assert proc.stdout == ""


def _read_with_deadline(stream, deadline_s: float, *, line: bool) -> str | None:
    """One line (or everything up to EOF) of a pipe, or None when `deadline_s` passes first:
    a stuck client fails the test instead of hanging the suite."""
    import threading

    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline() if line
                                                        else stream.read()), daemon=True)
    reader.start()
    reader.join(deadline_s)
    return box[0] if box else None


def test_scheduler_lost_mid_scan_is_one_line(atlas_db):
    """A lab of its own (a scheduler and two workers), so that nothing an earlier test left
    on the shared lab's workers (abandoned shards, a killed worker) can hold this scan up;
    every read is bounded, and the client is stopped by PID if it overruns."""
    with ClusterLab(workers=2, env={"PORTATLAS_DB": str(atlas_db)}) as own:
        own.listen(OPEN)
        proc = own.popen_client("scan", *TARGETS, "-p", PORTS, *FAST, "--ndjson",
                                "--no-progress", "--rate", "1000", "--shards", "24",
                                "--cluster", own.address)
        try:
            first = _read_with_deadline(proc.stdout, 120, line=True)  # the scan is under way
            assert first, "no first NDJSON line in 120 s"
            os.kill(own.scheduler.pid, signal.SIGKILL)
            rest = _read_with_deadline(proc.stdout, 120, line=False)
            assert rest is not None, "the client went on for 120 s after the scheduler died"
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        err = proc.stderr.read()
        assert proc.returncode == 4, err
        lines = err.strip().splitlines()
        assert lines == [f"portatlas: error: lost the Dask scheduler at {own.address} during "
                         "the scan"], err
