"""How a scan behaves: Ctrl-C prints what it has, a progress bar only on a terminal,
EMFILE is survived, the loopback self-connect is never "open", names and files of targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from support import netns
from support.scan_lab import Lab, parse_ndjson

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]


@pytest.fixture(scope="module")
def lab():
    with Lab() as lab:
        lab.listen([22, 80])
        lab.firewall([["-A", "INPUT", "-p", "tcp", "--dport", "1000:1999", "-j", "DROP"]])
        yield lab


def _interrupt(lab, args: list[str], after: float) -> subprocess.CompletedProcess:
    cmd = lab.s.argv([sys.executable, "-m", "portatlas", "scan", *args])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NO_COLOR="1"))
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_ctrl_c_prints_results_so_far(lab):
    # ports 1-999 answer at once; 1000-1999 are dropped and wait out 5 s timeouts
    proc = _interrupt(lab, [lab.ip, "-p", "1-1999", "--json", "--no-progress",
                            "--initial-timeout", "5", "--min-timeout", "5", "--max-timeout", "5",
                            "--workers", "1"], after=2.0)
    assert proc.returncode == 130, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["interrupted"] is True
    counts = doc["hosts"][0]["counts"]
    assert counts["open"] == 2 and counts["closed"] == 997
    assert counts["unscanned"] == 1000 and "filtered" not in counts


def test_ctrl_c_with_worker_processes(lab):
    proc = _interrupt(lab, [lab.ip, "-p", "1-20000", "--no-progress", "--workers", "2",
                            "--initial-timeout", "5", "--min-timeout", "5", "--max-timeout", "5"],
                      after=2.5)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stdout and "22/tcp" in proc.stdout
    assert "unscanned" in proc.stdout
    # no worker is left behind
    time.sleep(0.5)
    left = lab.s.run(["pgrep", "-f", "portatlas scan"], check=False).stdout.split()
    # pgrep sees the whole machine (other jobs may be scanning too): only processes inside
    # this test's scanner namespace count
    ours = set(subprocess.run(["ip", "netns", "pids", lab.s.name], capture_output=True,
                              text=True).stdout.split())
    assert not [p for p in left if p in ours and int(p) != os.getpid()]


def test_progress_bar_only_on_a_terminal(lab):
    import pty

    code = ("import os, pty, sys\n"
            "pid, fd = pty.fork()\n"
            "if pid == 0:\n"
            f"    os.execv(sys.executable, [sys.executable, '-m', 'portatlas', 'scan', '{lab.ip}',"
            " '-p', '1-3000', '--initial-timeout', '0.5', '--max-timeout', '0.5'])\n"
            "out = b''\n"
            "while True:\n"
            "    try:\n"
            "        chunk = os.read(fd, 65536)\n"
            "    except OSError:\n"
            "        break\n"
            "    if not chunk:\n"
            "        break\n"
            "    out += chunk\n"
            "os.waitpid(pid, 0)\n"
            "sys.stdout.write(out.decode(errors='replace'))\n")
    assert pty  # the scan runs on a pseudo-terminal inside the scanner namespace
    seen = lab.s.run([sys.executable, "-c", code], env=dict(os.environ, NO_COLOR="1")).stdout
    assert "scanning 1 host [" in seen and "/3,000" in seen
    piped = lab.portatlas("scan", lab.ip, "-p", "1-3000")
    assert piped.returncode == 0 and piped.stderr == ""


def test_emfile_is_survived(lab):
    """Few descriptors left: the scanner lowers its concurrency instead of failing."""
    code = f"""
import json, resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
hog = [socket.socket() for _ in range(150)]  # leave about 45 descriptors
from portatlas.scan.scanner import Scanner
from portatlas.scan.targets import parse_targets
from portatlas.scan.timing import TimingOptions
t = TimingOptions(max_concurrency=120, initial_timeout=0.3, min_timeout=0.3, max_timeout=0.3)
report = Scanner(parse_targets(["{lab.ip}"]), tcp_ports=list(range(1000, 1300)) + [22],
                 udp_ports=[], timing=t).run()
states = report.hosts[0].state_map()
print(json.dumps({{"notes": report.notes, "filtered": sum(1 for s, _ in states.values() if s == "filtered"),
                  "open": [p for (p, _), (s, _) in states.items() if s == "open"]}}))
"""
    out = json.loads(lab.s.run([sys.executable, "-c", code], timeout=120).stdout)
    assert out["filtered"] == 300 and out["open"] == [22]
    assert any("file descriptor" in n for n in out["notes"]), out["notes"]


def test_loopback_self_connect_is_never_open():
    """With one ephemeral port, connecting to it from it succeeds (TCP simultaneous open)
    although nothing listens: portatlas must call it closed."""
    with netns.Netns("pasc") as ns:
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40001"])
        for _ in range(5):
            proc = ns.portatlas("scan", "127.0.0.1", "-p", "40000-40001", "--ndjson",
                                "--no-progress")
            assert proc.returncode == 0, proc.stderr
            states = parse_ndjson(proc.stdout)["ports"]
            assert {v[0] for v in states.values()} == {"closed"}, states


def test_host_names_resolve_to_every_address():
    """`localhost` (from the hosts file) inside a namespace: its loopback, nothing else."""
    with netns.Netns("pahn") as ns:
        ns.popen([sys.executable, "-c", "import socket,time\ns=socket.socket(); "
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  "s.bind(('127.0.0.1', 7070)); s.listen(5); time.sleep(60)"])
        ns.wait_for_tcp(7070)
        proc = ns.portatlas("scan", "localhost", "-p", "7070,7071", "--ndjson", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        result = parse_ndjson(proc.stdout)
        assert result["ports"][("127.0.0.1", 7070, "tcp")] == ("open", "syn-ack")
        assert result["hosts"][0]["target"] == "localhost"
        # a name that cannot resolve: one line, nothing scanned (no route leaves this netns)
        bad = ns.portatlas("scan", "no-such-host.invalid", "-p", "22")
        assert bad.returncode in (2, 4) and bad.stdout == ""
        assert bad.stderr.startswith("portatlas: error: cannot resolve host name "
                                     "'no-such-host.invalid'") and bad.stderr.count("\n") == 1


def test_targets_file_and_cidr(lab, tmp_path):
    f = tmp_path / "targets"
    f.write_text(f"# the lab\n{lab.ip}\n{lab.ip6}  # v6 too\n")
    result = lab.scan("-iL", str(f), "-p", "22")
    assert {k: v[0] for k, v in result["ports"].items()} == {
        (lab.ip, 22, "tcp"): "open", (lab.ip6, 22, "tcp"): "open"}
    result = lab.scan(f"{lab.ip}/32", "-p", "80")
    assert result["ports"] == {(lab.ip, 80, "tcp"): ("open", "syn-ack")}


def test_rate_limit_is_honoured(lab):
    start = time.monotonic()
    result = lab.scan(lab.ip, "-p", "2000-2199", "--rate", "400")
    elapsed = time.monotonic() - start
    assert set(result["ports"].values()) == {("closed", "conn-refused")}
    assert len(result["ports"]) == 200
    assert elapsed >= 0.45  # 200 probes at 400/s after a burst of 8


def test_soft_fd_limit_is_raised(lab):
    """A low soft limit under a high hard one is raised, so 800 silent ports can be
    outstanding at once; nothing is lowered, nothing is lost."""
    code = f"""
import json, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))
from portatlas.scan.scanner import Scanner
from portatlas.scan.targets import parse_targets
from portatlas.scan.timing import TimingOptions
t = TimingOptions(max_concurrency=1000, initial_window=1000, initial_timeout=0.5,
                  min_timeout=0.5, max_timeout=0.5, base_tries=1)
report = Scanner(parse_targets(["{lab.ip}"]), tcp_ports=list(range(1000, 1800)),
                 udp_ports=[], timing=t).run()
states = report.hosts[0].state_map()
print(json.dumps({{"soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "notes": report.notes,
                  "filtered": sum(1 for s, _ in states.values() if s == "filtered"),
                  "elapsed": report.elapsed}}))
"""
    out = json.loads(lab.s.run([sys.executable, "-c", code], timeout=120).stdout)
    assert out["soft"] >= 1064 and out["notes"] == [] and out["filtered"] == 800
    assert out["elapsed"] < 3  # all 800 at once: one 0.5 s timeout, not sixteen
