"""Classification of real listeners against the knowledge base: registered services, whether the
program is one known for the service, and each flag with its one-line explanation."""

from __future__ import annotations

import json
import sys

import jsonschema
import pytest

from support.netns import Netns
from test_local_helpers import SCHEMA, local_json, needs_netns, sock, start

pytestmark = [needs_netns, pytest.mark.netns]


def first_plain_unassigned(atlas) -> int:
    """A user-range TCP port that IANA leaves unassigned (without an unauthorized-use note) and
    no trojan list mentions."""
    for port in range(1024, 49152):
        if atlas.port(port, "tcp").status["tcp"] == "unassigned" and not atlas.trojans(port) \
                and not any(e.unauthorized for e in atlas.entries(port, "tcp")):
            return port
    raise AssertionError("no unassigned port in the registry?")


@pytest.fixture(scope="module")
def flagged(atlas):
    unassigned = first_plain_unassigned(atlas)
    with Netns("pafl") as ns:
        # in this namespace any user may bind low ports, so `nobody` can hold port 600
        ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_unprivileged_port_start=0"])
        _, root = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 80), sock("tcp", 4, "0.0.0.0", 1023),
                                         sock("tcp", 4, "0.0.0.0", 2), sock("tcp", 4, "0.0.0.0", 79),
                                         sock("tcp", 4, "0.0.0.0", unassigned),
                                         sock("tcp", 4, "0.0.0.0", 50000),
                                         sock("udp", 4, "0.0.0.0", 31337),
                                         sock("tcp", 4, "0.0.0.0", 601)]})
        _, sshd = start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 22)], "name": "sshd"})
        _, nobody = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 600)]}, user="nobody")
        yield ns, unassigned, {"root": root, "sshd": sshd, "nobody": nobody}


def flags_by_port(doc: dict) -> dict[int, dict[str, str]]:
    return {s["port"]: {f["flag"]: f["text"] for f in s["flags"]} for s in doc["sockets"]}


def test_each_flag_and_its_explanation(flagged):
    ns, unassigned, _ = flagged
    doc = local_json(ns)
    flags = flags_by_port(doc)
    assert set(flags[1023]) == {"reserved"}
    assert "1023/tcp is reserved by IANA" in flags[1023]["reserved"]
    assert set(flags[2]) == {"deassigned", "trojan"}
    assert "was compressnet" in flags[2]["deassigned"]
    assert set(flags[79]) == {"unauthorized-use", "trojan"}
    assert "RFC4146" in flags[79]["unauthorized-use"]
    assert set(flags[unassigned]) == {"unassigned"}
    assert f"{unassigned}/tcp is unassigned" in flags[unassigned]["unassigned"]
    assert set(flags[50000]) == {"dynamic"}  # dynamic ports are never assigned: no "unassigned"
    assert "trojan" in flags[31337] and "Back Orifice" in flags[31337]["trojan"]
    assert "says nothing about this listener" in flags[31337]["trojan"]
    assert set(flags[22]) == set()
    for texts in flags.values():
        for text in texts.values():
            assert "\n" not in text  # one line each


def test_privileged_port_held_by_non_root(flagged):
    ns, _, pids = flagged
    flags = flags_by_port(local_json(ns))
    text = flags[600]["privileged-non-root"]
    assert "nobody" in text and f"pid {pids['nobody'][0]}" in text
    assert "ip_unprivileged_port_start is lowered to 0" in text
    assert "privileged-non-root" not in flags[601]  # root holds it: nothing to say
    assert "privileged-non-root" not in flags[80]


def test_registered_service_and_expected_program(flagged):
    ns, _, _ = flagged
    by_port = {s["port"]: s for s in local_json(ns)["sockets"]}
    assert [s["service"] for s in by_port[22]["services"]] == ["ssh"]
    assert by_port[22]["processes"][0]["name"] == "sshd"
    assert by_port[22]["expected_program"] is True       # sshd on ssh
    assert "http" in {s["service"] for s in by_port[80]["services"]}
    assert by_port[80]["expected_program"] is False      # python is not a known web server
    assert by_port[50000]["services"] == [] and by_port[50000]["expected_program"] is None


def test_table_lists_flags_with_explanations(flagged, atlas_db):
    ns, unassigned, _ = flagged
    r = ns.portatlas("local", "--sort", "flags", env={"NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[2].startswith("PROTO")
    # the most flags first, ties in port order: 2, 79 and 600 carry two flags each
    assert [line.split()[1] for line in lines[3:6]] == ["0.0.0.0:2", "0.0.0.0:79", "0.0.0.0:600"]
    flag_section = r.stdout.split("\nFlags\n", 1)[1]
    assert "0.0.0.0:600/tcp  privileged-non-root: 600 is a privileged port" in flag_section
    assert f"0.0.0.0:{unassigned}/tcp  unassigned:" in flag_section
    assert "http?" in r.stdout  # registered for http, held by a program not known for it
    assert "REGISTERED x? = registered for x" in r.stdout


def test_here_section_of_a_port_answer_carries_the_flags(flagged):
    ns, _, pids = flagged
    r = ns.portatlas("600", "--json", "--no-history")
    assert r.returncode == 0, r.stderr
    here = json.loads(r.stdout)["here"]
    jsonschema.validate(here, {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/here"})
    (s,) = here["sockets"]
    assert [p["pid"] for p in s["processes"]] == pids["nobody"]
    assert "privileged-non-root" in {f["flag"] for f in s["flags"]}
    text = ns.portatlas("22", "--no-history", env={"NO_COLOR": "1"}).stdout
    here_text = text.split("\nHere", 1)[1]
    assert "tcp  127.0.0.1:22  LISTEN  loopback" in here_text
    assert f"pid {pids['sshd'][0]}  sshd  user root" in here_text


def test_here_section_through_the_other_readers(flagged):
    ns, _, pids = flagged
    for backend in ("proc", "psutil"):
        env = {"PORTATLAS_LOCAL_BACKEND": backend}
        here = json.loads(ns.portatlas("600", "--json", "--no-history", env=env).stdout)["here"]
        assert here["backend"] == backend and here["listening"] is True
        assert [p["pid"] for p in here["sockets"][0]["processes"]] == pids["nobody"]
        none = json.loads(ns.portatlas("57", "--json", "--no-history", env=env).stdout)["here"]
        assert none["listening"] is False and none["sockets"] == []


def test_here_section_when_nothing_listens(flagged):
    ns, _, _ = flagged
    r = ns.portatlas("57", "--json", "--no-history")
    here = json.loads(r.stdout)["here"]
    assert here == {"port": 57, "transports": ["tcp", "udp"], "listening": False,
                    "backend": "netlink", "privileged": None, "sockets": [], "warnings": []}
    assert "Nothing listens on 57 here (tcp/udp, IPv4 and IPv6)." in \
        ns.portatlas("57", "--no-history", env={"NO_COLOR": "1"}).stdout
    udp_only = json.loads(ns.portatlas("80/udp", "--json", "--no-history").stdout)["here"]
    assert udp_only["transports"] == ["udp"] and udp_only["listening"] is False
    sctp = json.loads(ns.portatlas("80/sctp", "--json", "--no-history").stdout)["here"]
    assert sctp["listening"] is None and sctp["warnings"][0]["code"] == "not-looked-at"
    assert "here" not in json.loads(
        ns.portatlas("80", "--json", "--no-local", "--no-history").stdout)


def test_classifier_without_registry_keeps_registry_free_flags():
    """No database at all: dynamic and privileged-non-root need none."""
    code = (
        "from portatlas.local.classify import Classifier\n"
        "from portatlas.local.model import Snapshot, Socket\n"
        "a = Socket('tcp', 'ipv4', '0.0.0.0', 50123, 'LISTEN', uid=1000, inode=1)\n"
        "b = Socket('tcp', 'ipv4', '0.0.0.0', 443, 'LISTEN', uid=1000, inode=2)\n"
        "snap = Classifier(None).classify(Snapshot([a, b], {}))\n"
        "print([c for c, _ in a.flags], [c for c, _ in b.flags], a.services)\n")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['dynamic'] ['privileged-non-root'] []"
