"""Without root: `portatlas local` shows every socket (like ss), names the processes it may see
(the user's own), says plainly what is missing and why, and never crashes - nor do `portatlas
PORT` and `portatlas free` run as `nobody`."""

from __future__ import annotations

import json
import os
import sys

import jsonschema
import pytest

from support.netns import Netns
from test_local_helpers import AS_NOBODY, SCHEMA, local_json, needs_netns, parse_pa, parse_ss, sock, start

pytestmark = [needs_netns, pytest.mark.netns]


@pytest.fixture(scope="module")
def mixed(readable_db):
    with Netns("paun") as ns:
        _, root_pids = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 7301),
                                              sock("udp", 6, "::", 7302, v6only=0),
                                              sock("tcp", 4, "127.0.0.1", 22)]})
        _, nobody_pids = start(ns, {"sockets": [sock("tcp", 6, "::", 7310, v6only=1),
                                                sock("udp", 4, "127.0.0.1", 7311)]}, user="nobody")
        env = dict(os.environ, PORTATLAS_DB=readable_db, NO_COLOR="1")
        yield ns, env, root_pids, nobody_pids


def test_nobody_sees_every_socket_and_only_own_processes(mixed):
    ns, env, root_pids, nobody_pids = mixed
    doc = local_json(ns, env=env, user="nobody")
    jsonschema.validate(doc, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/local"})
    assert doc["privileged"] is False
    # what ss shows this same user, exactly: all sockets, processes only where ss has them
    ss_as_nobody = ns.run(AS_NOBODY + ["ss", "-tulpnH"]).stdout
    assert parse_pa(doc) == parse_ss(ss_as_nobody)
    by_port = {s["port"]: s for s in doc["sockets"]}
    assert set(by_port) == {7301, 7302, 22, 7310, 7311}
    for port in (7301, 7302, 22):
        assert by_port[port]["processes"] == []
        assert by_port[port]["user"] == "root"  # the socket's owner is still known
    for port in (7310, 7311):
        assert [p["pid"] for p in by_port[port]["processes"]] == nobody_pids
        assert by_port[port]["processes"][0]["exe"]  # own process: everything visible
    (hidden,) = [w for w in doc["warnings"] if w["code"] == "processes-hidden"]
    assert "3 of 5 sockets show no process" in hidden["text"]
    assert "root" in hidden["text"] and "sudo" in hidden["text"]
    # classification still works for the invisible ones (it needs no process)
    assert [s["service"] for s in by_port[22]["services"]] == ["ssh"]


def test_nobody_table_says_what_is_missing(mixed):
    ns, env, _, _ = mixed
    r = ns.run(AS_NOBODY + [sys.executable, "-m", "portatlas", "local"], env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert "without root" in r.stdout
    assert "(process not visible)" in r.stdout
    assert "note: 3 of 5 sockets show no process" in r.stdout
    assert "Traceback" not in r.stderr


def test_nobody_port_answer_here_section(mixed):
    ns, env, _, nobody_pids = mixed
    r = ns.run(AS_NOBODY + [sys.executable, "-m", "portatlas", "7301", "--json"], env=env, check=False)
    assert r.returncode in (0, 1), r.stderr
    here = json.loads(r.stdout)["here"]
    jsonschema.validate(here, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/here"})
    assert here["listening"] is True and here["privileged"] is False
    (s,) = here["sockets"]
    assert s["processes"] == [] and s["user"] == "root"
    assert any(w["code"] == "processes-hidden" for w in here["warnings"])
    r = ns.run(AS_NOBODY + [sys.executable, "-m", "portatlas", "7311"], env=env, check=False)
    assert f"pid {nobody_pids[0]}" in r.stdout and "user nobody" in r.stdout


def test_nobody_cannot_free_a_root_port_and_is_told_why(mixed):
    ns, env, root_pids, _ = mixed
    r = ns.run(AS_NOBODY + [sys.executable, "-m", "portatlas", "free", "7301", "--yes"],
               env=env, check=False)
    assert r.returncode == 4
    assert "cannot see" in r.stderr and "run as root" in r.stderr
    assert "Traceback" not in r.stderr
    os.kill(root_pids[0], 0)  # still alive


def test_without_a_readable_registry_sockets_are_still_listed(mixed):
    ns, env, _, _ = mixed
    broken = dict(env, PORTATLAS_DB="/root/not-readable/portatlas.sqlite3")
    doc = local_json(ns, env=broken, user="nobody")
    assert len(doc["sockets"]) == 5
    assert any(w["code"] == "no-registry" for w in doc["warnings"])
    assert all(s["services"] == [] for s in doc["sockets"])
