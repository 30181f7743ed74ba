"""Output formats: nmap XML valid against nmap.dtd and readable by ndiff, lossless JSON,
CSV, NDJSON streamed as answers arrive."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import time

import pytest

from support import netns
from support.scan_lab import Lab, nmap_states, parse_ndjson

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns.available(), reason="needs root and ip netns")]

OPEN = [22, 80, 3306]
DROP = [25, 26]
SPEC = "1-120,3306"
NMAP_DTD = "/usr/share/nmap/nmap.dtd"


@pytest.fixture(scope="module")
def lab():
    with Lab() as lab:
        lab.listen(OPEN)
        lab.firewall([["-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports",
                       ",".join(map(str, DROP)), "-j", "DROP"],
                      ["-A", "INPUT", "-p", "tcp", "--dport", "30", "-j", "REJECT"]])
        yield lab


def _run(lab, *args) -> str:
    proc = lab.portatlas("scan", *args, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_xml_is_valid_against_nmaps_dtd(lab, tmp_path):
    if shutil.which("xmllint") is None:
        pytest.fail("xmllint missing (libxml2-utils, see .ci/apt/scan.txt)")
    out = tmp_path / "scan.xml"
    out.write_text(_run(lab, lab.ip, lab.ip6, "-p", SPEC, "--xml"))
    proc = subprocess.run(["xmllint", "--noout", "--dtdvalid", NMAP_DTD, str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_xml_reads_like_nmaps_own(lab, tmp_path):
    """The same host scanned by nmap -sT and by portatlas: identical port states, and ndiff
    (which parses nmap XML) sees no difference in any port."""
    # port 30 is REJECT-ed with ICMP port unreachable: connect() sees "refused" either way,
    # so nmap -sT calls it closed; portatlas reads the ICMP error queue and says filtered
    # (what nmap -sS says). Every other port must agree.
    ours = nmap_states(_run(lab, lab.ip, "-p", SPEC, "--xml"))
    spec = "1-29,31-120,3306"
    theirs = lab.s.run(["nmap", "-sT", "-T4", "-n", "-Pn", "-p", spec, "-oX", "-", lab.ip]).stdout
    assert ours.pop((lab.ip, 30, "tcp")) == "filtered"
    assert ours == nmap_states(theirs)
    ours = _run(lab, lab.ip, "-p", spec, "--xml")
    (tmp_path / "a.xml").write_text(theirs)
    (tmp_path / "b.xml").write_text(ours)
    if shutil.which("ndiff") is None:
        pytest.fail("ndiff missing (see .ci/apt/scan.txt)")
    proc = subprocess.run(["ndiff", str(tmp_path / "a.xml"), str(tmp_path / "b.xml")],
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    # ndiff prints "-25/tcp filtered rsftp" / "+25/tcp filtered": service names differ (nmap's
    # table vs the IANA registry); states must not
    sides: dict[str, dict[str, str]] = {"-": {}, "+": {}}
    for line in proc.stdout.splitlines():
        words = line[1:].split()
        if line[:1] in sides and words and "/tcp" in words[0]:
            sides[line[0]][words[0]] = words[1]
    assert sides["-"] == sides["+"], proc.stdout
    assert "Host is up" not in proc.stdout and "198.18" in proc.stdout


def test_json_is_lossless(lab):
    """Listed ports plus the extraports ranges give back every port's state and reason."""
    from portatlas.scan.ports import parse_port_spec

    doc = json.loads(_run(lab, lab.ip, "-p", SPEC, "--json"))
    assert doc["schema"] == "portatlas.scan/1"
    (host,) = doc["hosts"]
    states = {p["port"]: (p["state"], p["reason"]) for p in host["ports"]}
    for group in host["extraports"]:
        for reason in group["reasons"]:
            for port in parse_port_spec(reason["ports"]):
                states[port] = (group["state"], reason["reason"])
    everything = parse_ndjson(_run(lab, lab.ip, "-p", SPEC, "--ndjson", "--all"))["ports"]
    assert states == {port: v for (_, port, _), v in everything.items()}
    assert states[22] == ("open", "syn-ack") and states[25] == ("filtered", "no-response")
    assert states[30] == ("filtered", "port-unreach") and states[31] == ("closed", "conn-refused")
    assert host["counts"] == {"open": 3, "closed": 115, "filtered": 3}
    assert doc["summary"]["ports"] == {"open": 3, "closed": 115, "filtered": 3}
    assert host["timing"]["tcp"]["srtt_ms"] is not None


def test_csv(lab):
    rows = list(csv.DictReader(io.StringIO(_run(lab, lab.ip, "-p", SPEC, "--csv"))))
    assert [(r["port"], r["state"]) for r in rows] == [
        ("22", "open"), ("25", "filtered"), ("26", "filtered"), ("30", "filtered"),
        ("80", "open"), ("3306", "open")]
    assert rows[0]["registered"].split()[0] == "ssh" and rows[0]["address"] == lab.ip
    every = list(csv.DictReader(io.StringIO(_run(lab, lab.ip, "-p", SPEC, "--csv", "--all"))))
    assert len(every) == 121


def test_table(lab):
    text = _run(lab, lab.ip, "-p", SPEC)
    assert "22/tcp" in text and "open" in text and "ssh" in text
    assert "not shown: 115 tcp closed" in text
    assert "25/tcp" in text and "no answer" in text


def test_ndjson_streams_while_scanning(lab):
    """Port lines arrive before the scan ends (slow DROP-ped ports still pending)."""
    cmd = lab.s.argv([sys.executable, "-m", "portatlas", "scan", lab.ip, "-p", "20-30",
                      "--ndjson", "--no-progress", "--initial-timeout", "2",
                      "--min-timeout", "2", "--max-timeout", "2", "--tries", "1"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        at_first_line = time.monotonic()
        rest = proc.stdout.read()
        finished = time.monotonic()
    finally:
        proc.wait(timeout=30)
    assert json.loads(first)["type"] == "port"
    assert finished - at_first_line > 1.0  # the DROP-ped ports took their 2 s afterwards
    lines = [json.loads(x) for x in (first + rest).splitlines()]
    assert [d["type"] for d in lines[-2:]] == ["host", "summary"]
    assert sum(1 for d in lines if d["type"] == "port") == 11
