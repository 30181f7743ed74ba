"""The oracle: inside a namespace of its own, `portatlas local --json` reports exactly the sockets
`ss -tulpn` reports there (addresses, ports, pids and fds), no more and no less; with --all,
exactly what `ss -tuapn` reports. Listeners of every kind: TCP and UDP, IPv4 and IPv6,
IPv6-only and dual-stack, wildcard, loopback, a specific address and one bound to a device,
SO_REUSEPORT twins, sockets shared by a parent and its forked child, and sockets of `nobody`."""

from __future__ import annotations

from collections import Counter

import jsonschema
import pytest

from support.netns import Netns
from test_local_helpers import (SCHEMA, add_address, local_json, needs_netns, parse_pa, parse_ss,
                                sock, start)

pytestmark = [needs_netns, pytest.mark.netns]

LOCAL_SCHEMA = {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/local"}


@pytest.fixture(scope="module")
def zoo(atlas_db):
    """A namespace full of listeners of every kind; yields (ns, pids by role)."""
    with Netns("palo") as ns:
        v4, v6 = add_address(ns)
        forked = {
            "sockets": [
                sock("tcp", 4, "0.0.0.0", 7001),
                sock("tcp", 4, "127.0.0.1", 7002),
                sock("tcp", 4, v4, 7003),
                sock("tcp", 6, "::1", 7004),
                sock("tcp", 6, "::", 7005, v6only=1),
                sock("tcp", 6, "::", 7006, v6only=0),
                sock("tcp", 6, v6, 7007),
                sock("udp", 4, "0.0.0.0", 7008),
                sock("udp", 4, "127.0.0.1", 7009),
                sock("udp", 6, "::1", 7010),
                sock("udp", 6, "::", 7011, v6only=1),
                sock("udp", 6, "::", 7012, v6only=0),
                sock("tcp", 4, "0.0.0.0", 7013, device="lo"),
                sock("tcp", 4, "0.0.0.0", 7014, reuseport=True),
                sock("tcp", 4, "0.0.0.0", 7014, reuseport=True),
            ],
            "fork": True,
        }
        _, parent_child = start(ns, forked)
        _, single = start(ns, {"sockets": [sock("tcp", 4, "127.0.0.1", 7030),
                                           sock("udp", 4, "0.0.0.0", 7031)],
                               "connect": 7030, "udp_connect": 7031})
        _, nobody = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 7020),
                                           sock("udp", 6, "::", 7021, v6only=0)]}, user="nobody")
        yield ns, {"forked": parent_child, "single": single, "nobody": nobody}


def test_listening_sockets_are_exactly_what_ss_reports(zoo):
    ns, pids = zoo
    doc = local_json(ns)
    jsonschema.validate(doc, LOCAL_SCHEMA)
    ours, theirs = parse_pa(doc), parse_ss(ns.run(["ss", "-tulpnH"]).stdout)
    assert ours == theirs, f"only portatlas: {ours - theirs}\nonly ss: {theirs - ours}"
    # and the zoo is really there (a failure to see anything would also "match" an empty ss)
    assert sum(ours.values()) == 19
    endpoints = {(s["transport"], s["address"], s["port"], s["stack"]) for s in doc["sockets"]}
    assert ("tcp", "::", 7005, "ipv6-only") in endpoints
    assert ("tcp", "::", 7006, "dual-stack") in endpoints
    assert ("udp", "::", 7011, "ipv6-only") in endpoints
    assert ("udp", "::", 7012, "dual-stack") in endpoints


def test_shared_and_reuseport_sockets_list_every_holder(zoo):
    ns, pids = zoo
    doc = local_json(ns, "7001")
    (only,) = doc["sockets"]
    assert sorted(p["pid"] for p in only["processes"]) == sorted(pids["forked"])
    twins = local_json(ns, "7014")["sockets"]
    assert len(twins) == 2  # two sockets (SO_REUSEPORT), each held by parent and child
    assert all(sorted(p["pid"] for p in s["processes"]) == sorted(pids["forked"]) for s in twins)
    assert twins[0]["inode"] != twins[1]["inode"]


def test_every_state_is_exactly_what_ss_all_reports(zoo):
    ns, _ = zoo
    doc = local_json(ns, "--all")
    jsonschema.validate(doc, LOCAL_SCHEMA)
    ours, theirs = parse_pa(doc), parse_ss(ns.run(["ss", "-tuapnH"]).stdout)
    assert ours == theirs, f"only portatlas: {ours - theirs}\nonly ss: {theirs - ours}"
    states = Counter(s["state"] for s in doc["sockets"])
    assert states["ESTAB"] == 3  # both ends of the TCP connection and the connected UDP socket


def test_process_details_owner_and_exposure(zoo):
    ns, pids = zoo
    doc = local_json(ns)
    by_port = {}
    for s in doc["sockets"]:
        by_port.setdefault(s["port"], []).append(s)
    (nobody,) = by_port[7020]
    assert nobody["user"] == "nobody" and nobody["uid"] == 65534
    (proc,) = nobody["processes"]
    assert proc["pid"] == pids["nobody"][0] and proc["user"] == "nobody"
    assert proc["name"].startswith("python") and proc["exe"] and "LISTENER" not in proc["cmdline"]
    assert proc["cmdline"][1] == "-c"
    assert by_port[7001][0]["exposure"] == "wildcard"
    assert by_port[7002][0]["exposure"] == "loopback"
    assert by_port[7003][0]["exposure"] == "specific"
    assert by_port[7004][0]["exposure"] == "loopback"
    assert by_port[7007][0]["exposure"] == "specific"
    assert by_port[7013][0]["exposure"] == "loopback" and by_port[7013][0]["interface"] == "lo"
    parent = next(p for p in by_port[7001][0]["processes"] if p["pid"] == pids["forked"][0])
    child = next(p for p in by_port[7001][0]["processes"] if p["pid"] == pids["forked"][1])
    assert child["ppid"] == parent["pid"]


def _holders(doc):
    return Counter((s["transport"], s["state"], s["address"], s["port"], p["pid"], p["fd"])
                   for s in doc["sockets"] for p in s["processes"])


def test_proc_reader_sees_the_same_sockets_and_holders(zoo):
    """/proc/net cannot tell v6-only from dual-stack nor see bound devices; all else agrees."""
    ns, _ = zoo
    reference = local_json(ns)
    other = local_json(ns, "--backend", "proc")
    assert other["backend"] == "proc"
    assert _holders(other) == _holders(reference)
    assert all(s["v6only"] is None for s in other["sockets"])


def test_psutil_reader_sees_the_same_sockets(zoo):
    """The portable reader: the same sockets (psutil merges same-address twins, and on Linux names
    only the first holder of a shared socket), each with a holder netlink also names."""
    ns, _ = zoo
    reference = local_json(ns)
    other = local_json(ns, "--backend", "psutil")
    assert other["backend"] == "psutil"

    def endpoints(doc):
        return {(s["transport"], s["state"], s["address"], s["port"]) for s in doc["sockets"]}

    assert endpoints(other) == endpoints(reference)
    assert all(s["processes"] for s in other["sockets"])
    assert set(_holders(other)) <= set(_holders(reference))


def test_each_namespace_sees_only_its_own_sockets(zoo):
    """Run in a second, empty namespace: the zoo's sockets (whose processes are visible in /proc
    there too) must not show up."""
    with Netns("paother") as other:
        doc = local_json(other, "--all")
        assert doc["sockets"] == [] and doc["count"] == 0
        assert other.run(["ss", "-tuapnH"]).stdout.strip() == ""
