"""Exposure without a kernel: the parsers (nft JSON, iptables-save) and the evaluator on
hand-written rulesets and machines. Fast; the namespace tests check the same against reality."""

from __future__ import annotations

import json

import pytest

from portatlas.exposure import iptsave, nftjson
from portatlas.exposure.assess import Assessor, Listener
from portatlas.exposure.machine import Machine, parse_ip_addr, parse_ip_route
from portatlas.exposure.ruleset import IPTABLES_LEGACY, IPTABLES_NFT, Ruleset
from support.exposure_machine import MACHINE


def nft(*items) -> str:
    return json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *items]})


def table(family="inet", name="t"):
    return {"table": {"family": family, "name": name, "handle": 1}}


def chain(name, hook=None, prio=0, policy="accept", family="inet", table_="t", type_="filter"):
    body = {"family": family, "table": table_, "name": name, "handle": 1}
    if hook:
        body.update(hook=hook, prio=prio, policy=policy, type=type_)
    return {"chain": body}


def rule(chain_, *expr, family="inet", table_="t", handle=10):
    return {"rule": {"family": family, "table": table_, "chain": chain_, "handle": handle,
                     "expr": list(expr)}}


def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def dport(proto="tcp"):
    return {"payload": {"protocol": proto, "field": "dport"}}


def saddr(proto="ip"):
    return {"payload": {"protocol": proto, "field": "saddr"}}


ACCEPT, DROP = {"accept": None}, {"drop": None}


def verdict(rs: Ruleset, port=5432, transport="tcp", family="ipv4", address="0.0.0.0",
            v6only=None, machine=MACHINE, **kw):
    a = Assessor(rs, machine)
    return a.assess(Listener(transport, family, address, port, v6only), **kw)


def classes(e):
    return {c["class"]: c["verdict"] for c in e.classes}


# -- nftables -----------------------------------------------------------------------------------
def test_empty_ruleset_is_exposed():
    e = verdict(nftjson.parse(nft()))
    assert e.verdict == "exposed"
    assert classes(e) == {"loopback": "accepted", "subnet": "accepted", "anywhere": "accepted"}


def test_policy_drop_with_loopback_allowed_is_local_only():
    rs = nftjson.parse(nft(table(), chain("input", "input", policy="drop"),
                           rule("input", match({"meta": {"key": "iif"}}, "lo"), ACCEPT)))
    e = verdict(rs)
    assert e.verdict == "local-only"
    assert "policy drop" in e.reason


def test_saddr_set_and_prefix_make_it_limited():
    rs = nftjson.parse(nft(
        table(),
        {"set": {"family": "inet", "table": "t", "name": "ok", "type": "ipv4_addr",
                 "flags": ["interval"], "elem": [{"prefix": {"addr": "203.0.113.0", "len": 24}}]}},
        chain("input", "input", policy="drop"),
        rule("input", match(saddr(), "@ok"), match(dport(), 5432), ACCEPT)))
    e = verdict(rs)
    assert e.verdict == "limited"
    assert "203.0.113.0/24" in e.reason
    assert classes(e)["subnet"] == "dropped"


def test_dynamic_set_is_unknown_not_a_guess():
    rs = nftjson.parse(nft(
        table(),
        {"set": {"family": "inet", "table": "t", "name": "seen", "type": "ipv4_addr",
                 "flags": ["dynamic", "timeout"]}},
        chain("input", "input", policy="drop"),
        rule("input", match(saddr(), "@seen"), ACCEPT)))
    e = verdict(rs)
    assert e.verdict == "unknown"
    assert "run time" in e.reason


def test_unknown_match_that_cannot_change_the_answer_is_not_unknown():
    # meta mark 1 accept, then policy accept: accepted whichever way the mark goes
    rs = nftjson.parse(nft(table(), chain("input", "input"),
                           rule("input", match({"meta": {"key": "mark"}}, 1), ACCEPT)))
    assert verdict(rs).verdict == "exposed"
    rs = nftjson.parse(nft(table(), chain("input", "input", policy="drop"),
                           rule("input", {"limit": {"rate": 10, "per": "second"}}, ACCEPT)))
    e = verdict(rs)
    assert e.verdict == "unknown" and "rate limit" in e.reason


def test_vmap_jump_return_and_goto():
    rs = nftjson.parse(nft(
        table(), chain("input", "input", policy="drop"), chain("svc"), chain("deny"),
        rule("input", {"vmap": {"key": dport(), "data": {"set": [
            [22, {"jump": {"target": "svc"}}], [{"range": [5000, 5999]}, {"goto": {"target": "deny"}}]]}}}),
        rule("input", match(dport(), 22), ACCEPT, handle=11),
        rule("svc", match(saddr(), {"prefix": {"addr": "198.18.0.0", "len": 24}}), {"return": None}),
        rule("svc", ACCEPT, handle=12),
        rule("deny", {"reject": {"type": "tcp reset"}}, handle=13)))
    e22 = verdict(rs, port=22)
    assert e22.verdict == "exposed"            # subnet returns, then rule 11 accepts
    e5 = verdict(rs, port=5500)
    assert e5.verdict == "blocked" and classes(e5)["anywhere"] == "rejected"


def test_a_loop_of_gotos_is_unknown_not_endless():
    # the kernel refuses such a ruleset; a hand-made one must still end, with the reason
    rs = nftjson.parse(nft(
        table(), chain("input", "input", policy="drop"), chain("a"), chain("b"),
        rule("input", match(dport(), 22), {"goto": {"target": "a"}}),
        rule("a", {"goto": {"target": "b"}}, handle=11),
        rule("b", {"goto": {"target": "a"}}, handle=12)))
    e = verdict(rs, port=22)
    assert e.verdict == "unknown" and "loop" in e.reason
    assert verdict(rs, port=80).verdict == "blocked"  # ports that never go there: no change


def test_two_base_chains_accept_in_one_does_not_save_from_the_other():
    rs = nftjson.parse(nft(
        table(), chain("a", "input", prio=-10), chain("b", "input", prio=10),
        rule("a", match(dport(), 5432), ACCEPT),
        rule("b", match(dport(), 5432), DROP, handle=11)))
    e = verdict(rs)
    assert e.verdict == "blocked"
    assert e.classes[0]["rule"]["chain"] == "b"


def test_dnat_to_another_port_diverts_this_socket():
    rs = nftjson.parse(nft(
        table("ip", "nat"), chain("pre", "prerouting", prio=-100, family="ip", table_="nat",
                                  type_="nat"),
        rule("pre", match(dport(), 8080), {"redirect": {"port": 80}}, family="ip", table_="nat")))
    e8080 = verdict(rs, port=8080)
    assert classes(e8080)["anywhere"] == "diverted"
    assert e8080.verdict == "local-only"
    assert verdict(rs, port=80).verdict == "exposed"


def test_inet_address_match_does_not_apply_to_the_other_family():
    rs = nftjson.parse(nft(table(), chain("input", "input", policy="drop"),
                           rule("input", match(saddr("ip"), {"prefix": {"addr": "0.0.0.0", "len": 0}}),
                                ACCEPT)))
    assert verdict(rs).verdict == "exposed"
    assert verdict(rs, family="ipv6", address="::", v6only=True).verdict == "blocked"


def test_bad_nft_json_is_a_clear_error():
    with pytest.raises(nftjson.NftParseError):
        nftjson.parse("{not json")
    with pytest.raises(nftjson.NftParseError):
        nftjson.parse('{"nothing": []}')


# -- iptables -----------------------------------------------------------------------------------
UFW_LIKE = """# Generated by iptables-save v1.8.9 (nf_tables) on Tue Dec  1 09:00:00 2026
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-user-input - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -j ufw-user-input
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -s 198.18.0.0/24 -p tcp -m multiport --dports 5432,6379:6380 -j ACCEPT
-A ufw-user-input -p udp -m udp ! --dport 53 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""


def test_iptables_text_detect_and_evaluate():
    assert iptsave.detect(UFW_LIKE) == ("iptables", "nf_tables")
    rs = iptsave.parse(UFW_LIKE, IPTABLES_NFT, "ip")
    assert verdict(rs, port=22).verdict == "exposed"
    e = verdict(rs, port=6380)
    assert e.verdict == "limited" and "own subnets" in e.reason
    assert verdict(rs, port=5000).verdict == "local-only"
    assert classes(verdict(rs, port=5000, transport="udp"))["anywhere"] == "rejected"
    assert classes(verdict(rs, port=53, transport="udp"))["anywhere"] == "dropped"


def test_docker_published_port_bypasses_input():
    from support.docker_lab import docker_rules

    text = docker_rules(8080, "198.19.7.2", 80)
    text = text.replace(":INPUT ACCEPT [0:0]\n:FORWARD DROP", ":INPUT DROP [0:0]\n:FORWARD DROP", 1)
    rs = iptsave.parse(text, IPTABLES_NFT, "ip")
    assert rs.get(IPTABLES_NFT, "ip", "filter", "INPUT").policy == "drop"
    plain = verdict(rs, port=8080)
    assert classes(plain)["anywhere"] == "diverted"   # not docker-proxy: this socket is passed by
    e = verdict(rs, port=8080, accepts_forward=("198.19.7.2", 80))
    assert e.verdict == "exposed"
    assert e.forwarded_to["address"] == "198.19.7.2" and e.forwarded_to["port"] == 80
    # DOCKER-USER drop: closed to the world, docker-proxy still answers on loopback
    closed = text.replace("-A DOCKER-USER -j RETURN", "-A DOCKER-USER -i eth0 -j DROP\n-A DOCKER-USER -j RETURN")
    rs2 = iptsave.parse(closed, IPTABLES_NFT, "ip")
    e2 = verdict(rs2, port=8080, accepts_forward=("198.19.7.2", 80))
    assert e2.verdict == "local-only"
    assert "DOCKER-USER" in e2.reason


def test_forwarding_off_drops_dnat():
    from support.docker_lab import docker_rules

    rs = iptsave.parse(docker_rules(8080, "198.19.7.2", 80), IPTABLES_LEGACY, "ip")
    off = Machine(MACHINE.interfaces, routes=MACHINE.routes, forwarding={"ipv4": False, "ipv6": False})
    e = verdict(rs, port=8080, machine=off, accepts_forward=("198.19.7.2", 80))
    assert classes(e)["anywhere"] == "dropped" and "forwarding is off" in e.classes[2]["reason"]


def test_iptables_unknown_modules_and_targets():
    text = """*filter
:INPUT DROP [0:0]
-A INPUT -p tcp -m tcp --dport 80 -m recent --rcheck --seconds 60 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 81 -j NFQUEUE --queue-num 1
-A INPUT -p tcp -m tcp --dport 82 -j NO-SUCH-CHAIN
COMMIT
"""
    rs = iptsave.parse(text, IPTABLES_LEGACY, "ip")
    for port, why in ((80, "recent"), (81, "user-space"), (82, "NO-SUCH-CHAIN")):
        e = verdict(rs, port=port)
        assert e.verdict == "unknown" and why in e.reason, (port, e.reason)


def test_bad_iptables_text_is_a_clear_error():
    with pytest.raises(iptsave.IptablesParseError):
        iptsave.parse("-A INPUT -j ACCEPT\n", IPTABLES_LEGACY, "ip")
    with pytest.raises(iptsave.IptablesParseError):
        iptsave.parse("*filter\nhello world\nCOMMIT\n", IPTABLES_LEGACY, "ip")


# -- machine, listeners -----------------------------------------------------------------------
def test_ip_json_parsers():
    ifaces = parse_ip_addr(json.dumps([
        {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": [
            {"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "eth0", "flags": ["BROADCAST", "UP"], "addr_info": [
            {"family": "inet6", "local": "2001:db8::5", "prefixlen": 64}]}]))
    assert [(i.name, i.loopback, i.addresses) for i in ifaces] == [
        ("lo", True, [("ipv4", "127.0.0.1", 8)]), ("eth0", False, [("ipv6", "2001:db8::5", 64)])]
    routes = parse_ip_route(json.dumps([{"dst": "default", "gateway": "198.18.0.254", "dev": "eth0"},
                                        {"type": "blackhole", "dst": "192.0.2.0/24"}]), "ipv4")
    assert routes == [("ipv4", "default", "eth0")]


def test_loopback_and_device_bound_listeners():
    rs = nftjson.parse(nft())
    assert verdict(rs, address="127.0.0.1").verdict == "local-only"
    a = Assessor(rs, MACHINE)
    e = a.assess(Listener("tcp", "ipv4", "0.0.0.0", 5432, None, "eth0"))
    assert classes(e)["loopback"] == "not-applicable" and e.verdict == "exposed"


def test_unreadable_ruleset_is_unknown_everywhere():
    a = Assessor(Ruleset(), MACHINE, unknown_reason="the packet filter can only be read as root")
    e = a.assess(Listener("tcp", "ipv4", "0.0.0.0", 22))
    assert e.verdict == "unknown" and "root" in e.reason
    assert e.to_dict()["verdict"] == "unknown"


# -- Podman: the published host port is held by conmon, which only reserves it ---------------
def test_a_port_reservation_accepts_whatever_the_port_is_dnatted_to():
    from support.docker_lab import docker_rules

    from portatlas.exposure.assess import ANY_FORWARD
    from portatlas.exposure.containers import port_holder

    # the DNAT and FORWARD shape of a published port (the chains' names do not matter here)
    text = docker_rules(8080, "198.19.7.2", 80)
    text = text.replace(":INPUT ACCEPT [0:0]\n:FORWARD DROP", ":INPUT DROP [0:0]\n:FORWARD DROP", 1)
    rs = iptsave.parse(text, IPTABLES_NFT, "ip")
    held = port_holder(["/usr/bin/conmon", "--api-version", "1", "-c", "0123abcd", "-n", "web"])
    assert held == {"reservation": True, "runtime": "podman"}
    e = verdict(rs, port=8080, accepts_forward=ANY_FORWARD)
    assert e.verdict == "exposed"  # the world reaches the container through the reserved port
    assert e.forwarded_to["address"] == "198.19.7.2" and e.forwarded_to["port"] == 80
    # a program that is neither a proxy nor a reservation is passed by, as before
    assert port_holder(["/usr/sbin/nginx", "-g", "daemon off;"]) is None
    assert classes(verdict(rs, port=8080))["anywhere"] == "diverted"


def test_podman_advice_names_podman_and_no_docker_chain():
    from types import SimpleNamespace

    from support.docker_lab import docker_rules

    from portatlas.exposure import advice
    from portatlas.exposure.assess import ANY_FORWARD

    rs = iptsave.parse(docker_rules(8080, "198.19.7.2", 80), IPTABLES_NFT, "ip")
    e = verdict(rs, port=8080, accepts_forward=ANY_FORWARD)
    sock = SimpleNamespace(port=8080, transport="tcp", family="ipv4", dual_stack=False,
                           holders=[], services=["http-alt"], flags={})
    snap = SimpleNamespace(processes={}, classified=True)
    done = advice.complete(e, sock, snap, SimpleNamespace(assessor=SimpleNamespace(ruleset=rs)),
                           {"reservation": True, "runtime": "podman"})
    text = "\n".join(done.notes + done.close)
    assert "podman run -p 127.0.0.1:8080:80" in text
    assert "DOCKER-USER" not in text
    assert "iptables -t mangle -I PREROUTING ! -i lo -p tcp --dport 8080 -j DROP" in text


def test_legacy_save_is_not_run_when_the_kernel_lists_no_legacy_table(tmp_path, monkeypatch):
    from portatlas.exposure import read

    empty, some = tmp_path / "empty", tmp_path / "some"
    empty.write_text("")
    some.write_text("filter\nnat\n")
    monkeypatch.setattr(read, "_LEGACY_TABLES", {"iptables-legacy-save": str(empty),
                                                 "ip6tables-legacy-save": str(some)})
    assert read._no_legacy_tables("iptables-legacy-save")          # nothing to print: not run
    assert read._start(["iptables-legacy-save"]) == (0, "", "")
    assert not read._no_legacy_tables("ip6tables-legacy-save")     # tables there: it runs
    assert not read._no_legacy_tables("iptables-nft-save")         # only the legacy backend
    monkeypatch.setattr(read, "_LEGACY_TABLES", {"iptables-legacy-save": str(tmp_path / "no")})
    assert read._no_legacy_tables("iptables-legacy-save")          # module not loaded
