"""nftjson's fast paths (common expression shapes, shared verdicts, the table of left-hand
sides) must build the same model as its general path: both parse the same JSON here and the
two rulesets are compared attribute by attribute. Also: JSON nft never writes gives clear
errors or unknown rules, never an exception out of parse()."""

from __future__ import annotations

import json

import pytest

from portatlas.exposure import nftjson
from portatlas.exposure.ruleset import Action, Match, Rule, Ruleset

import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_exposure import distinct_ruleset, services_ruleset  # noqa: E402


def model(obj):
    """Everything of a parsed ruleset that the walker can see, as plain data."""
    if isinstance(obj, Ruleset):
        return {"chains": {k: model(c) for k, c in obj.chains.items()},
                "sources": obj.sources, "problems": obj.problems}
    if isinstance(obj, Rule):
        return ("rule", obj.handle, obj.index, obj.chain.name if obj.chain else None,
                [model(m) for m in obj.matches], model(obj.action), obj.text)
    if isinstance(obj, Match):
        return ("match", obj.field, model(obj.values), obj.negate, obj.family, obj.proto,
                obj.reason)
    if isinstance(obj, Action):
        return ("action", obj.kind, obj.target, obj.addr, obj.family, obj.port,
                model(obj.key), model(obj.entries), obj.text)
    if hasattr(obj, "rules") and hasattr(obj, "hook"):   # a Chain
        return ("chain", obj.origin, obj.family, obj.table, obj.name, obj.hook, obj.prio,
                obj.type, obj.policy, obj.device, [model(r) for r in obj.rules])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [model(x) for x in obj])
    if isinstance(obj, frozenset):
        return ("frozenset", sorted(obj, key=repr))
    return (type(obj).__name__, obj)


def both(text: str):
    fast = nftjson.parse(text)
    nftjson.FAST = False
    try:
        general = nftjson.parse(text)
    finally:
        nftjson.FAST = True
    return model(fast), model(general)


def nft(*items) -> str:
    return json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *items]})


def rules(*exprs_list, family="inet"):
    out = [{"table": {"family": family, "name": "t", "handle": 1}},
           {"chain": {"family": family, "table": "t", "name": "in", "handle": 1, "hook": "input",
                      "prio": 0, "policy": "drop", "type": "filter"}}]
    for i, exprs in enumerate(exprs_list):
        out.append({"rule": {"family": family, "table": "t", "chain": "in", "handle": 10 + i,
                             "expr": exprs}})
    return out


def m(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def pl(proto, field):
    return {"payload": {"protocol": proto, "field": field}}


SHAPES = [
    [m(pl("tcp", "dport"), 22), {"accept": None}],
    [m(pl("udp", "sport"), 53, "!="), {"drop": None}],
    [m(pl("tcp", "dport"), 1024, ">="), {"accept": None}],
    [m(pl("tcp", "dport"), True), {"accept": None}],          # a bool is not a port number
    [m(pl("tcp", "dport"), "ssh"), {"accept": None}],
    [m(pl("tcp", "dport"), {"set": [22, {"range": [1000, 2000]}, 80]}), {"accept": None}],
    [m(pl("ip", "saddr"), {"prefix": {"addr": "198.18.0.0", "len": 15}}), {"accept": None}],
    [m(pl("ip6", "daddr"), {"prefix": {"addr": "2001:db8::", "len": 32}}, "!="), {"drop": None}],
    [m(pl("ip", "saddr"), {"prefix": {"addr": "198.18.0.0", "len": 99}}), {"accept": None}],
    [m(pl("ip", "saddr"), {"prefix": {"addr": "not-an-address", "len": 8}}), {"accept": None}],
    [m(pl("ip", "saddr"), {"prefix": {"addr": "198.18.0.0"}}), {"accept": None}],
    [m(pl("ip", "saddr"), "198.18.0.7"), {"accept": None}],
    [m(pl("ip", "saddr"), "198.18.0.1-198.18.0.9"), {"accept": None}],
    [m(pl("ip", "saddr"), "gateway.example"), {"accept": None}],
    [m(pl("ip6", "saddr"), "2001:db8::1"), {"accept": None}],
    [m(pl("ip", "saddr"), {"range": ["198.18.0.1", "198.18.0.20"]}), {"accept": None}],
    [m({"meta": {"key": "iifname"}}, "lo"), {"accept": None}],
    [m({"meta": {"key": "oif"}}, "veth*"), {"accept": None}],
    [m({"meta": {"key": "iifname"}}, {"set": ["lo", "eth0"]}), {"accept": None}],
    [m({"meta": {"key": "mark"}}, 1), {"accept": None}],
    [m({"meta": {"key": "l4proto"}}, "tcp"), {"accept": None}],
    [m({"meta": {"key": "l4proto"}}, 6), {"accept": None}],
    [m({"meta": {"key": "nfproto"}}, "ipv4"), {"accept": None}],
    [m({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
    [m({"ct": {"key": "state"}}, "invalid", "in"), {"drop": None}],
    [m({"ct": {"key": "state"}}, ["new", 5]), {"drop": None}],
    [m({"ct": {"key": "status"}}, "dnat"), {"accept": None}],
    [m({"ct": {"key": "saddr", "dir": "original"}}, "198.18.0.1"), {"accept": None}],
    [m({"ct": {"key": "state", "dir": "reply"}}, "new"), {"accept": None}],
    [m({"ct": {"key": 1}}, "new"), {"accept": None}],
    [m({"payload": {"protocol": ["ip"], "field": "saddr"}}, "198.18.0.1"), {"accept": None}],
    [m({"payload": {"base": "nh", "offset": 0, "len": 8}}, 1), {"accept": None}],
    [m(pl("tcp", "flags"), {"|": ["syn", "ack"]}, "=="), {"drop": None}],
    [m({"fib": {"flags": ["daddr"], "result": "type"}}, "local"), {"accept": None}],
    [m(pl("ip", "protocol"), "tcp"), {"counter": None}, {"accept": None}],
    [m(pl("tcp", "dport"), "@ports"), {"accept": None}],
    [m(pl("tcp", "dport"), 22), {"reject": {"type": "icmpx", "expr": "port-unreachable"}}],
    [{"reject": {"type": "tcp reset"}}],
    [{"reject": {"type": "", "expr": ""}}],
    [{"reject": None}],
    [{"jump": {"target": "other"}}],
    [{"goto": {"target": "other"}}],
    [{"return": None}, {"drop": None}],
    [{"masquerade": None}],
    [{"notrack": None}],
    [{"dnat": {"addr": "198.18.0.9", "port": 80}}],
    [{"redirect": {"port": 8080}}],
    [{"limit": {"rate": 1}}, {"accept": None}],
    [{"queue": {"num": 1}}],
    [{"vmap": {"key": pl("tcp", "dport"), "data": {"set": [[22, {"accept": None}],
                                                           [80, {"drop": None}]]}}}],
    [{"match": None}, {"accept": None}],
    ["text", {"accept": None}],
    [{"accept": None}, "after the verdict"],
    [{"something new": 1}],
    [],
]


def test_fast_and_general_paths_build_the_same_model():
    sets = [{"set": {"family": "inet", "table": "t", "name": "ports", "type": "inet_service",
                     "elem": [22, 443]}}]
    fast, general = both(nft(*rules(*SHAPES), *sets))
    assert fast == general
    assert len(fast["chains"][("nftables", "inet", "t", "in")][-1]) == len(SHAPES)


@pytest.mark.parametrize("build", [services_ruleset, distinct_ruleset])
def test_fast_and_general_paths_agree_on_the_benchmark_rulesets(build):
    # the rulesets the benchmark loads, as nft -j would print them (nft syntax -> JSON shapes)
    text = nft(*rules(*_bench_exprs(build(300, 20000, 3000))))
    fast, general = both(text)
    assert fast == general


def _bench_exprs(source: str):
    """The nft rules of a benchmark ruleset's text, in the JSON shapes nft -j prints (only the
    forms those rulesets use: tcp/udp dport N, ip saddr P/L, iif, ct state, verdicts)."""
    out = []
    for line in source.splitlines():
        words = line.split()
        if not words or words[0] in ("table", "chain", "}"):
            continue
        exprs, i = [], 0
        while i < len(words):
            w = words[i]
            if w in ("tcp", "udp") and i + 2 < len(words) and words[i + 1] == "dport":
                lo, _, hi = words[i + 2].partition("-")
                exprs.append(m(pl(w, "dport"), {"range": [int(lo), int(hi)]} if hi else int(lo)))
                i += 3
            elif w in ("ip", "ip6") and i + 2 < len(words) and words[i + 1] in ("saddr", "daddr"):
                a, _, n = words[i + 2].partition("/")
                right = {"prefix": {"addr": a, "len": int(n)}} if n else a
                exprs.append(m(pl(w, words[i + 1]), right))
                i += 3
            elif w in ("iif", "iifname") and i + 1 < len(words):
                exprs.append(m({"meta": {"key": w}}, words[i + 1].strip('"')))
                i += 2
            elif w == "ct" and i + 2 < len(words) and words[i + 1] == "state":
                states = words[i + 2].split(",")
                exprs.append(m({"ct": {"key": "state"}}, states if len(states) > 1 else states[0], "in"))
                i += 3
            elif w in ("accept", "drop", "return"):
                exprs.append({w: None})
                i += 1
            elif w == "reject":
                exprs.append({"reject": {"type": "icmpx", "expr": "port-unreachable"}})
                i = len(words)
            elif w == "counter":
                exprs.append({"counter": {"packets": 0, "bytes": 0}})
                i += 1
            else:
                exprs.append({"unknown word": w})
                i += 1
        if exprs:
            out.append(exprs)
    assert len(out) >= 100, "the benchmark's ruleset text was not understood"
    return out


@pytest.mark.parametrize("text", [
    "[" * 100000,                                    # nested too deeply for the decoder
    '{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "c", "prio": {"x": 1}}}]}',
])
def test_json_nft_never_writes_is_a_clear_error(text):
    with pytest.raises(nftjson.NftParseError):
        nftjson.parse(text)


@pytest.mark.parametrize("exprs", [
    5,                                               # "expr" is not a list
    [m(pl("ip", "saddr"), {"range": ["198.18.0.1"]})],
    [m(pl("ip", "saddr"), {"range": ["198.18.0.1", "junk"]})],
    [m(pl("tcp", "dport"), {"range": [1]})],
    [m(pl("ip", "saddr"), {"prefix": "198.18.0.0/15"})],
])
def test_rules_nft_never_writes_become_unknown_not_exceptions(exprs):
    text = nft(*rules([{"accept": None}]),
               {"rule": {"family": "inet", "table": "t", "chain": "in", "handle": 99,
                         "expr": exprs}})
    rs = nftjson.parse(text)
    rule = rs.chains[("nftables", "inet", "t", "in")].rules[-1]
    assert rule.action.kind == "unknown" or any(mt.field == "unknown" for mt in rule.matches)


# -- addresses: the inet_pton / inet_ntop paths of addr give what ipaddress gives ---------------
ADDRESS_FORMS = ["0.0.0.0", "255.255.255.255", "198.18.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5",
                 "256.1.1.1", "1.2.3.4 ", " 1.2.3.4", "1.2.3.04", "::", "::1", "2001:db8::1",
                 "2001:DB8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:198.18.0.1",
                 "::ffff:01.2.3.4", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
                 "1::2::3", "12345::", "fe80::1%eth0", "fe80::1%", "1:2:3:4:5:6:1.2.3.4",
                 "", ":", "1.2.3.4%eth0", "x", "::g", "0x1.2.3.4", "1.2.3.4/24", "\x00",
                 "١.٢.٣.٤", "2001:db8::1.2.3.4"]


@pytest.mark.parametrize("text", ADDRESS_FORMS)
def test_to_int_reads_every_form_as_ipaddress_does(text):
    import ipaddress
    from portatlas.exposure import addr
    try:
        want = int(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        want = None
    addr.to_int.cache_clear()
    try:
        got = addr.to_int(text)
    except ValueError:
        got = None
    assert got == want


def test_to_text_writes_as_ipaddress_does():
    import ipaddress
    import random
    from portatlas.exposure import addr
    rnd = random.Random(14)
    values4 = [0, 1, 255, 256, (1 << 32) - 1, 0x7f000001] + [rnd.getrandbits(32) for _ in range(300)]
    for v in values4:
        assert addr.to_text(v, "ipv4") == str(ipaddress.IPv4Address(v))
    values6 = [0, 1, (1 << 128) - 1, 0xffff << 32 | 0xc6120001, 1 << 64] + \
        [rnd.getrandbits(128) for _ in range(100)] + \
        [rnd.getrandbits(16) << (16 * rnd.randrange(8)) for _ in range(100)]
    for v in values6:
        assert addr.to_text(v, "ipv6") == str(ipaddress.IPv6Address(v))
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError):
            addr.to_text(bad, "ipv4")


def test_new_match_and_new_rule_set_every_slot_as_the_constructors_do():
    from portatlas.exposure.ruleset import new_match, new_rule
    a = Match("dport", ((22, 22),), negate=True, family="ipv4", proto="tcp")
    b = new_match("dport", ((22, 22),), True, "ipv4", "tcp")
    assert [getattr(a, s) for s in Match.__slots__] == [getattr(b, s) for s in Match.__slots__]
    describe = lambda: "tcp dport 22 accept"  # noqa: E731
    act = Action("accept")
    a, b = Rule([], act, handle=7, describe=describe), new_rule([], act, 7, describe)
    assert [getattr(a, s) for s in Rule.__slots__] == [getattr(b, s) for s in Rule.__slots__]
    assert a.text == b.text


def test_command_output_is_read_bounded(monkeypatch):
    # a program that prints more than MAX_OUTPUT is stopped with a clear message, one that
    # prints less is read whole (stdout and stderr both), one that hangs is killed
    from portatlas.exposure import read
    monkeypatch.setattr(read, "MAX_OUTPUT", 1 << 20)
    monkeypatch.setattr(read, "_which", lambda name: sys.executable)
    monkeypatch.setattr(read, "_started", {})
    big = "import sys; sys.stdout.buffer.write(b'x' * (3 << 20)); sys.stderr.write('e' * 200000)"
    code, out, err = read._run(["python", "-c", big])
    assert (code, out) == (1, "") and "printed more than 1 MiB" in err
    small = "import sys; sys.stdout.write('y' * 300000); sys.stderr.write('e' * 200000); sys.exit(3)"
    assert read._run(["python", "-c", small]) == (3, "y" * 300000, "e" * 200000)
    monkeypatch.setattr(read, "TIMEOUT", 0.5)
    code, out, err = read._run(["python", "-c", "import time; time.sleep(30)"])
    assert code == 1 and "did not answer within 0.5 s" in err


@pytest.mark.parametrize("text,plen", [
    ("198.18.0.0", 15), ("198.18.7.9", 32), ("198.18.7.9", 0), ("198.18.7.9", 33),
    ("198.18.7.9", -1), (" 198.18.0.0", 24), ("2001:db8::", 32), ("2001:db8::1", 128),
    ("2001:db8::1", 129), ("::ffff:198.18.0.1", 120), ("01.2.3.4", 8), ("x", 8),
    ("198.18.0.1-198.18.0.9", 24), ("fe80::1%eth0", 64)])
def test_prefix_is_parse_net_of_the_joined_text(text, plen):
    from portatlas.exposure import addr
    try:
        want = addr.parse_net(f"{text}/{plen}")[1]
    except ValueError:
        want = "error"
    try:
        got = addr.prefix(text, plen)
    except ValueError:
        got = "error"
    assert got == want
