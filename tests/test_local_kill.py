"""`portatlas free PORT` and `portatlas local PORT --kill`: show who, ask, SIGTERM, SIGKILL after
the grace period, refuse PID 1 and portatlas itself, and say what was done. Real processes in a
namespace of the test's own; each test checks they are really gone (or really still there)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import jsonschema
import pytest

from support.netns import Netns
from test_local_helpers import SCHEMA, needs_netns, sock, start

pytestmark = [needs_netns, pytest.mark.netns]


@pytest.fixture()
def ns(atlas_db):
    with Netns("paki") as ns:
        yield ns


def listening(ns: Netns, port: int) -> bool:
    return f":{port} " in ns.run(["ss", "-tulnH"]).stdout


def gone(proc: subprocess.Popen, timeout: float = 10) -> int:
    return proc.wait(timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_free_with_yes_ends_the_holder_and_frees_the_port(ns):
    proc, pids = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 7101)]})
    r = ns.portatlas("free", "7101", "--yes", env={"NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    assert gone(proc) == -signal.SIGTERM
    assert "port 7101 is held by:" in r.stdout and str(pids[0]) in r.stdout
    assert f"sent SIGTERM to pid {pids[0]} (python" in r.stdout and "it exited after" in r.stdout
    assert "port 7101 (tcp/udp) is free now" in r.stdout
    assert not listening(ns, 7101)


def test_a_process_ignoring_sigterm_gets_sigkill_after_the_grace_period(ns):
    proc, pids = start(ns, {"sockets": [sock("udp", 6, "::", 7102)], "ignore_term": True})
    r = ns.portatlas("local", "7102", "--kill", "--yes", "--grace", "0.5", env={"NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    assert gone(proc) == -signal.SIGKILL
    assert "still running after 0.5 s" in r.stderr
    assert f"sent SIGTERM then SIGKILL to pid {pids[0]}" in r.stdout
    assert not listening(ns, 7102)


def test_a_forked_server_loses_parent_and_child(ns):
    proc, pids = start(ns, {"sockets": [sock("tcp", 6, "::", 7103, v6only=0)], "fork": True})
    assert len(pids) == 2
    r = ns.portatlas("free", "7103/tcp", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/free"})
    assert doc["freed"] is True and doc["confirmed"] is True and doc["still_held"] == []
    assert sorted(o["pid"] for o in doc["outcomes"]) == sorted(pids)
    assert all(o["result"] == "exited" and o["signals"] == ["SIGTERM"] for o in doc["outcomes"])
    gone(proc)
    assert not any(alive(p) for p in pids)


def test_answering_no_leaves_it_running_and_yes_ends_it(ns):
    proc, pids = start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 7104)]})
    r = ns.run([sys.executable, "-m", "portatlas", "free", "7104"], input="n\n", check=False)
    assert r.returncode == 1
    assert "End pid" in r.stderr and "[y/N]" in r.stderr and "nothing done" in r.stderr
    assert alive(pids[0]) and listening(ns, 7104)
    r = ns.run([sys.executable, "-m", "portatlas", "free", "7104"], input="", check=False)
    assert r.returncode == 1 and alive(pids[0])  # no answer at all (EOF) is a no
    r = ns.run([sys.executable, "-m", "portatlas", "free", "7104"], input="y\n", check=False)
    assert r.returncode == 0, r.stderr
    assert gone(proc) == -signal.SIGTERM


def test_nothing_to_free_and_bad_input(ns):
    r = ns.portatlas("free", "7199", "--yes")
    assert r.returncode == 1 and "nothing listens on port 7199" in r.stderr
    for args, message in ((["free", "http"], "not a port"), (["free", "70000"], "out of range"),
                          (["free", "7000-7010", "--yes"], "needs one PORT"),
                          (["local", "--kill"], "needs one PORT"),
                          (["local", "7000", "--yes"], "--yes only goes with --kill"),
                          (["free", "7000", "--grace", "-1"], "--grace")):
        r = ns.portatlas(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and r.stderr.startswith("portatlas: error:")


# PID 1 of a fresh PID namespace holds a port and asks portatlas to free it.
AS_PID_1 = r"""
import json, os, socket, subprocess, sys
assert os.getpid() == 1
s = socket.socket(); s.bind(("127.0.0.1", 7105)); s.listen()
r = subprocess.run([sys.executable, "-m", "portatlas", "free", "7105", "--yes"],
                   capture_output=True, text=True)
print(json.dumps({"rc": r.returncode, "out": r.stdout, "err": r.stderr}))
"""


def test_refuses_pid_1(ns):
    r = ns.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", AS_PID_1],
               check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["rc"] == 4
    assert "refusing to end PID 1" in result["err"] and "init process" in result["err"]
    (row,) = [line.split() for line in result["out"].splitlines() if line.startswith("tcp")]
    assert row[1] == "127.0.0.1:7105" and row[4] == "1"  # it showed who holds the port first


# portatlas used as a library by the very process that holds the port.
AS_ITSELF = r"""
import socket
from portatlas.local import kill, listeners
s = socket.socket(); s.bind(("127.0.0.1", 7106)); s.listen()
chosen = kill.targets(listeners(port=7106))
try:
    kill.end(chosen, grace=0.1)
except kill.Refused as exc:
    print("refused:", exc)
"""


def test_refuses_to_end_itself(ns):
    r = ns.run([sys.executable, "-c", AS_ITSELF], check=False)
    assert r.returncode == 0, r.stderr
    assert "refused: refusing to end pid" in r.stdout and "portatlas itself" in r.stdout


def test_a_reused_pid_is_never_signalled(ns):
    """The target is checked against the start time shown to the user: a different process
    under the same pid is left alone."""
    proc, pids = start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 7107)]})
    code = (
        "from portatlas.local import kill, listeners\n"
        "chosen = kill.targets(listeners(port=7107))\n"
        "chosen[0].process.start_time -= 1  # as if the pid now belonged to another process\n"
        "print([o.result for o in kill.end(chosen, grace=0.1)])\n")
    r = ns.run([sys.executable, "-c", code], check=False)
    assert r.stdout.strip() == "['replaced']", r.stderr
    assert alive(pids[0]) and listening(ns, 7107)
    proc.kill()
