"""The evaluator's shortcuts give what its general paths give (issue 14: cheaper, same answers).

Shortcuts checked here: _match deciding whole-box tests without building parts; walks resumed
from the port-independent prefix and shared by port class; the Assessor's caches (plans per
socket shape, parts, _summarise's remembered keys). Random rulesets from a fixed seed, built
directly in the model (no parser), so that unusual combinations come up."""

from __future__ import annotations

import copy
import json
import random

import pytest

from portatlas.exposure import addr
from portatlas.exposure.assess import ANY_FORWARD, Assessor, _summarise
from portatlas.exposure.ruleset import Action, Chain, Match, Rule, Ruleset
from portatlas.exposure.walk import Packet, Walker, _State
from support.exposure_machine import MACHINE

PORTS = [22, 80, 443, 5432, 8080]
NETS4 = ["198.18.0.0/24", "198.18.0.0/25", "198.18.0.7/32", "198.19.0.0/16", "198.18.0.0/15",
         "127.0.0.0/8", "0.0.0.0/0", "198.20.0.0/14"]
NETS6 = ["2001:db8::/64", "2001:db8::/32", "::1/128", "::/0"]


def _nets(r: random.Random, family: str):
    names = r.sample(NETS4 if family == "ipv4" else NETS6, r.randint(1, 2))
    return addr.normalise([iv for n in names for iv in addr.parse_net(n)[1]])


def _match(r: random.Random) -> Match:
    field = r.choice(["saddr", "saddr", "daddr", "sport", "dport", "dport", "l4proto", "iif",
                      "ctstate", "daddr_type", "tcpflags", "nfproto"])
    neg = r.random() < .2
    if r.random() < .03:
        return Match("unknown", reason="a mark")
    if field in ("saddr", "daddr"):
        fam = r.choice(["ipv4", "ipv4", "ipv6"])
        return Match(field, _nets(r, fam), negate=neg, family=fam)
    if field in ("sport", "dport"):
        ports = [(p, p) for p in r.sample(PORTS, r.randint(1, 2))]
        if r.random() < .3:
            lo = r.randint(1, 60000)
            ports.append((lo, lo + r.randint(0, 3000)))
        return Match(field, addr.normalise(ports), negate=neg, proto=r.choice(["tcp", "udp", "th", None]))
    if field == "l4proto":
        return Match(field, frozenset(r.sample(["tcp", "udp", "icmp"], r.randint(1, 2))), negate=neg)
    if field == "iif":
        return Match(field, tuple(r.sample(["lo", "eth0", "eth*", "docker0"], r.randint(1, 2))), negate=neg)
    if field == "ctstate":
        return Match(field, frozenset(r.sample(["new", "established", "dnat"], r.randint(1, 2))), negate=neg)
    if field == "daddr_type":
        return Match(field, frozenset(r.sample(["local", "unicast"], 1)), negate=neg)
    if field == "tcpflags":
        return Match(field, r.choice([((0x02, 0x02), "mask"), (0x10, "in")]), negate=neg)
    return Match(field, frozenset(r.sample(["ipv4", "ipv6"], 1)), negate=neg)


def _action(r: random.Random, users: list[str]) -> Action:
    kind = r.choice(["accept", "accept", "drop", "drop", "reject", "jump", "return", "continue",
                     "dnat", "redirect", "notrack", "vmap"])
    if kind == "jump":
        return Action("jump", target=r.choice(users)) if users else Action("accept")
    if kind == "dnat":
        return Action("dnat", addr=addr.to_int(r.choice(["198.19.7.2", "127.0.0.1", "198.18.0.1"])),
                      family="ipv4", port=r.choice([None, 80, 8080]))
    if kind == "redirect":
        return Action("redirect", port=r.choice([None, 8080]))
    if kind == "vmap":
        entries = [(Match("dport", addr.normalise([(p, p)]), proto="tcp"),
                    Action(r.choice(["accept", "drop", "continue"]))) for p in r.sample(PORTS, 2)]
        return Action("vmap", key=Match("dport"), entries=entries)
    return Action(kind)


def ruleset(seed: int) -> Ruleset:
    r = random.Random(seed)
    rs = Ruleset()
    users = [f"u{k}" for k in range(r.randint(0, 2))]
    chains = []
    for k in range(r.randint(1, 3)):
        hook = r.choice(["input", "input", "prerouting", "output", "forward"])
        typ = "nat" if hook in ("prerouting", "output") and r.random() < .4 else "filter"
        chains.append(rs.add(Chain("nftables", "inet", "t", f"b{k}", hook=hook, type=typ,
                                   prio=r.choice([-100, 0, 10]),
                                   policy=r.choice(["accept", "drop"]))))
    for u in users:
        chains.append(rs.add(Chain("nftables", "inet", "t", u)))
    for chain in chains:
        later = [u for u in users if chain.hook is not None or u > chain.name]
        if chain.hook == "input" and r.random() < .4:
            for k in range(r.randint(4, 16)):   # a block list: the prefix's outcomes
                chain.add(Rule([Match("saddr", addr.parse_net(f"198.20.{k}.0/28")[1],
                                      family="ipv4")], Action("drop"), handle=500 + k,
                               text=f"block {k}"))
        for n in range(r.choice([0, 1, 2, 4, 8])):
            chain.add(Rule([_match(r) for _ in range(r.choice([0, 1, 2, 2, 3]))],
                           _action(r, later), handle=n + 1, text=f"rule {n + 1}"))
    return rs


def listeners(seed: int) -> list[tuple]:
    r = random.Random(seed + 10_000)
    out = []
    for _ in range(12):
        fam, address, v6only = r.choice([("ipv4", "0.0.0.0", None), ("ipv4", "127.0.0.1", None),
                                         ("ipv6", "::", False), ("ipv6", "::", None),
                                         ("ipv6", "::1", None), ("ipv4", "198.18.0.1", None)])
        out.append((r.choice(["tcp", "udp"]), fam, address, r.choice(PORTS + [r.randint(1, 65535)]),
                    v6only, r.choice([None, None, "eth0", "lo"]),
                    r.choice([None, None, ("198.19.7.2", 80), ANY_FORWARD])))
    return out


def _outcomes(found) -> list[tuple]:
    return [(o.verdict, o.box, o.rule.ref() if o.rule else None,
             o.chain.ref() if o.chain else None, o.reason, o.reach, o.to, o.assumptions, o.path)
            for o in found]


SEEDS = range(120)


@pytest.mark.parametrize("seed", SEEDS)
def test_shared_assessor_answers_as_fresh_ones(seed):
    """One Assessor for every socket (caches, plans, shared walks) answers each as a fresh
    Assessor per socket does."""
    rs = ruleset(seed)
    shared = Assessor(rs, MACHINE)
    socks = listeners(seed)
    for sock in socks + socks[:4]:
        got = shared.assess_socket(*sock).to_dict()
        alone = Assessor(rs, MACHINE).assess_socket(*sock).to_dict()
        assert json.dumps(got, sort_keys=True) == json.dumps(alone, sort_keys=True), sock


@pytest.mark.parametrize("seed", SEEDS)
def test_resumed_walks_match_fresh_walks(seed):
    """Walks resumed from the shared prefix, per port class, end as walks of a fresh Walker."""
    rs = ruleset(seed)
    shared = Walker(rs, MACHINE)
    local = MACHINE.local_addresses("ipv4")
    boxes = [(None, (local, addr.PORT_ALL, local)),
             ("eth0", (addr.parse_net("198.18.0.0/24")[1], addr.PORT_ALL, local)),
             ("eth0", (addr.subtract(addr.full("ipv4"), addr.parse_net("198.18.0.0/24")[1]),
                       addr.PORT_ALL, addr.parse_net("198.18.0.1/32")[1]))]
    for port in PORTS + [1, 65535, 3000]:
        for l4 in ("tcp", "udp"):
            for iif, box in boxes:
                got = _outcomes(shared.walk("ipv4", l4, port, box, iif))
                fresh = _outcomes(Walker(rs, MACHINE).walk("ipv4", l4, port, box, iif))
                assert got == fresh, (port, l4, iif)


@pytest.mark.parametrize("seed", SEEDS)
def test_match_shortcut_is_the_general_match(seed):
    """_match's whole-box shortcut gives what cutting the box test by test gives."""
    rs = ruleset(seed)
    w = Walker(rs, MACHINE)
    r = random.Random(seed)
    rules = [rule for c in rs.chains.values() for rule in c.rules]
    rules += [Rule([_match(r) for _ in range(r.randint(0, 3))], Action("accept")) for _ in range(20)]
    local = MACHINE.local_addresses("ipv4")
    for rule in rules:
        for l4 in ("tcp", "udp"):
            pkt = Packet("ipv4", l4, r.choice(PORTS), "eth0")
            box = (addr.parse_net(r.choice(NETS4))[1], addr.PORT_ALL, local)
            st = _State(box, pkt, "input", [], 0, (), (), False, ())
            assert w._match(rule, st) == w._match_parts(rule.matches, 0, None, box, pkt)


def test_summarise_with_remembered_keys_is_summarise():
    """_summarise with its keys remembered answers as without, and leaves the parts as they
    were (they live in the Assessor's cache)."""
    rule = {"origin": "nftables", "family": "inet", "table": "t", "chain": "input",
            "handle": 5, "position": 1, "text": "ip saddr 198.20.0.0/28 drop"}
    parts = [{"verdict": "dropped" if k % 3 else "accepted", "family": "ipv4",
              "interfaces": ["eth0" if k % 2 else "eth1"], "sources": [f"198.20.{k // 2}.0/28"],
              "source_ports": None, "rule": rule, "reason": ""} for k in range(16)]
    before = copy.deepcopy(parts)
    keys: dict = {}
    plain = _summarise("anywhere", parts)
    assert _summarise("anywhere", parts, keys) == plain
    assert _summarise("anywhere", parts, keys) == plain
    assert parts == before
