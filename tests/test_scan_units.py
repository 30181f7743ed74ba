"""The pure parts of the scan engines, without root or packets: ICMP reasons, the per-host
timing (RTT estimate, retries, window), the rate limiter, and the UDP verification rounds
that tell open|filtered from closed-but-rate-limited. (The namespace tests check the same
logic end to end against real hosts and firewalls.)"""

from __future__ import annotations

import socket

import pytest

from portatlas.scan import results as R
from portatlas.scan.engine import Answer, icmp_reason
from portatlas.scan.timing import HostTiming, RateLimiter, TimingOptions
from portatlas.scan.targets import Host
from portatlas.scan.udp import CONFIRMATIONS, REFILL_WAIT, UdpEngine, udp_icmp_reason
from portatlas.vocab import PortState, Reason


def named(pair):
    state, reason = pair
    return R.STATES[state], R.REASONS[reason]


# -- ICMP ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("icmp_type, code, want", [
    (3, 3, ("filtered", "port-unreach")),      # a TCP probe answered "port unreachable"
    (3, 1, ("filtered", "host-unreach")),
    (3, 0, ("filtered", "net-unreach")),
    (3, 6, ("filtered", "net-unreach")),
    (3, 11, ("filtered", "net-unreach")),
    (3, 2, ("filtered", "proto-unreach")),
    (3, 9, ("filtered", "admin-prohibited")),
    (3, 10, ("filtered", "admin-prohibited")),
    (3, 13, ("filtered", "admin-prohibited")),
    (11, 0, ("filtered", "time-exceeded")),
    (5, 1, ("filtered", "host-unreach")),      # anything else: the host is not reachable
])
def test_icmp_reason_ipv4(icmp_type, code, want):
    assert named(icmp_reason(icmp_type, code, False)) == want


@pytest.mark.parametrize("icmp_type, code, want", [
    (1, 0, ("filtered", "net-unreach")),       # no route
    (1, 1, ("filtered", "admin-prohibited")),
    (1, 3, ("filtered", "host-unreach")),      # address unreachable
    (1, 4, ("filtered", "port-unreach")),
    (1, 5, ("filtered", "admin-prohibited")),  # source address failed policy
    (1, 6, ("filtered", "admin-prohibited")),  # reject route
    (1, 7, ("filtered", "host-unreach")),
    (3, 0, ("filtered", "time-exceeded")),
    (2, 0, ("filtered", "host-unreach")),
])
def test_icmp_reason_ipv6(icmp_type, code, want):
    assert named(icmp_reason(icmp_type, code, True)) == want


def test_udp_port_unreachable_means_closed_and_the_rest_as_tcp():
    assert named(udp_icmp_reason(3, 3, False)) == ("closed", "port-unreach")
    assert named(udp_icmp_reason(1, 4, True)) == ("closed", "port-unreach")
    assert named(udp_icmp_reason(3, 13, False)) == ("filtered", "admin-prohibited")
    assert named(udp_icmp_reason(1, 1, True)) == ("filtered", "admin-prohibited")


def test_the_integer_codes_name_the_shared_vocabulary():
    assert R.STATES[R.S_OPEN_FILTERED] is PortState.OPEN_FILTERED
    assert R.REASONS[R.R_RESET] is Reason.RESET and R.REASONS[R.R_REFUSED] == "conn-refused"
    assert [name for name in R.REASONS] == [r.value for r in Reason]
    assert R.reason_words("port-unreach") == Reason.PORT_UNREACH.words == "ICMP port unreachable"


# -- timing -------------------------------------------------------------------------------------
def opts(**kw) -> TimingOptions:
    return TimingOptions(**kw)


def test_first_sample_and_smoothing():
    t = HostTiming(opts())
    assert t.timeout == 1.0 and t.srtt is None
    t.sample(0.020)
    assert t.srtt == pytest.approx(0.020) and t.rttvar == pytest.approx(0.010)
    assert t.timeout == pytest.approx(0.1)  # srtt + 4 rttvar = 60 ms, under the 100 ms floor
    t.sample(0.100)
    assert t.srtt == pytest.approx(0.020 + 0.080 / 8)
    assert t.rttvar == pytest.approx(0.010 + (0.080 - 0.010) / 4)
    assert t.timeout == pytest.approx(t.srtt + 4 * t.rttvar)
    t.sample(-1.0)  # a clock oddity is ignored
    assert t.samples == 2


def test_timeout_bounds_and_rttvar_floor():
    t = HostTiming(opts(min_timeout=0.001, max_timeout=1.5))
    for _ in range(50):
        t.sample(0.002)
    assert t.timeout == pytest.approx(t.srtt + 4 * 0.005)  # the 5 ms floor of rttvar
    slow = HostTiming(opts())
    slow.sample(5.0)
    assert slow.timeout == 1.5


def test_seeded_from_another_host():
    first = HostTiming(opts())
    first.sample(0.010)
    second = HostTiming(opts(), seed_from=first)
    assert second.timeout == pytest.approx(0.2)  # twice the other's (floored) timeout
    assert HostTiming(opts(), seed_from=HostTiming(opts())).timeout == 1.0  # no answer yet


def test_loss_evidence_raises_tries_and_cuts_the_window_once_per_timeout():
    t = HostTiming(opts(initial_window=64))
    t.sample(0.010)
    assert t.allowed_tries == 3
    t.answered(3, now=10.0)
    assert t.allowed_tries == 4 and t.window == 32 and t.drops == 1
    t.answered(2, now=10.05)          # within one timeout: the same burst of loss
    assert t.window == 32 and t.drops == 2
    t.answered(2, now=11.0)
    assert t.window == 16
    for _ in range(10):
        t.answered(4, now=20.0)
    assert t.allowed_tries == 5 and t.window >= 8
    t.answered(9, now=30.0)
    assert t.allowed_tries == 7       # max_retries + 1


def test_window_grows_on_first_try_answers_and_silence():
    t = HostTiming(opts(initial_window=10, max_concurrency=12))
    t.answered(1, now=0.0)
    assert t.window == 11
    t.bulk_answered(100)
    assert t.window == 12
    t.gave_up()
    assert t.window == 12
    assert t.to_dict() == {"srtt_ms": None, "rttvar_ms": None, "timeout_ms": 1000.0,
                           "samples": 0, "tries_allowed": 3, "loss_evidence": 0}


def test_rate_limiter():
    r = RateLimiter(100.0, now=0.0)
    assert r.burst == 2.0
    assert r.take(0.0) and r.take(0.0) and not r.take(0.0)
    assert r.wait_time() == pytest.approx(0.01)
    assert r.take(0.011)


# -- UDP verification rounds ----------------------------------------------------------------------
@pytest.fixture()
def engine():
    """A UDP engine that never runs its loop: its sockets are opened (no root needed) but no
    datagram is sent; the rounds are driven by hand."""
    host = Host("198.18.0.2", "198.18.0.2", socket.AF_INET)
    eng = UdpEngine([host], [[7, 9, 53]], opts(), lambda batch, extra: None)
    yield eng
    eng._close()


def silence(eng, ports):
    """The ports ran out of tries without an answer."""
    from portatlas.scan.udp import _Probe

    hs = eng.hosts[0]
    hs.queue.clear()
    hs.silent = [_Probe(hs, p) for p in ports]
    return hs


def finals(eng):
    assert all(type(a) is Answer for a in eng.out)
    return {(a.port, R.STATES[a.state], R.REASONS[a.reason]) for a in eng.out}


def end_round(hs, canary_answered: bool):
    """What a round's sends came to: the silent ports silent again, the canary answered or not."""
    queued = [p for p in hs.queue if not p.canary]
    assert hs.queue[-1].canary and hs.queue[-1].port == hs.canary_port  # the canary goes last
    hs.queue.clear()
    hs.silent = queued
    hs.canary_answered = canary_answered


def test_a_host_without_icmp_settles_silence_at_once(engine):
    hs = silence(engine, [7, 53])
    engine._advance_rounds(now=0.0)
    assert finals(engine) == {(7, "open|filtered", "no-response"), (53, "open|filtered", "no-response")}
    assert not hs.verifying and hs.rounds == 0


def test_two_canary_answered_rounds_make_open_filtered(engine):
    hs = silence(engine, [7, 53])
    hs.canary_port = 9
    engine._advance_rounds(now=0.0)
    assert hs.verifying and hs.rounds == 1 and hs.max_rounds == 4 + 2 * 2
    assert [p.port for p in hs.queue] == [7, 53, 9] and hs.next_send == 0.0
    for round_ in range(1, CONFIRMATIONS):
        end_round(hs, canary_answered=True)
        engine._advance_rounds(now=float(round_))
        assert not engine.out and hs.rounds == round_ + 1
    end_round(hs, canary_answered=True)
    engine._advance_rounds(now=5.0)
    assert finals(engine) == {(7, "open|filtered", "no-response"), (53, "open|filtered", "no-response")}
    assert not hs.silent and not hs.queue


def test_an_unanswered_canary_proves_nothing_and_waits_for_tokens(engine):
    hs = silence(engine, [7])
    hs.canary_port = 9
    engine._advance_rounds(now=0.0)
    end_round(hs, canary_answered=False)
    engine._advance_rounds(now=3.0)
    assert hs.confirmed.get(7, 0) == 0 and hs.next_send == 3.0 + REFILL_WAIT
    assert not engine.out


def test_rounds_stop_at_their_limit_with_a_note(engine):
    hs = silence(engine, [7])
    hs.canary_port = 9
    engine._advance_rounds(now=0.0)
    while not engine.out:
        end_round(hs, canary_answered=False)
        engine._advance_rounds(now=float(hs.rounds))
    assert hs.rounds == hs.max_rounds == 6
    assert finals(engine) == {(7, "open|filtered", "no-response")}
    assert engine.notes == ["198.18.0.2: UDP verification stopped after 6 rounds; silent ports "
                            "are open|filtered"]


# -- the records the engines emit ------------------------------------------------------------
def test_answers_cross_the_worker_pipe_as_tuples_and_come_back_named():
    import pickle

    from portatlas.scan.engine import BulkKey, answer
    from portatlas.scan.runner import _from_wire, _to_wire

    batch = [answer(0, 22, R.S_OPEN, R.R_SYN_ACK, 0.001, 1),
             answer(1, 81, R.S_FILTERED, R.R_PORT_UNREACH, None, 1)]
    bulk = {BulkKey(0, R.S_CLOSED, R.R_REFUSED): [1, 2, 3]}
    wire = pickle.loads(pickle.dumps(_to_wire(batch, bulk)))
    assert all(type(a) is tuple for a in wire[0]) and all(type(k) is tuple for k in wire[1])
    back, back_bulk = _from_wire(*wire)
    assert back == batch and all(type(a) is Answer for a in back)
    assert back[1].port == 81 and back[1].reason == R.R_PORT_UNREACH and back[1].rtt is None
    (key, ports), = back_bulk.items()
    assert type(key) is BulkKey and key.state == R.S_CLOSED and ports == [1, 2, 3]


def test_a_subset_engine_s_host_indices_are_mapped_back():
    from portatlas.scan.engine import BulkKey, answer
    from portatlas.scan.scanner import _remap

    got = []
    emit = _remap(lambda batch, bulk: got.append((batch, bulk)), [2, 5])
    emit([answer(1, 80, R.S_OPEN, R.R_SYN_ACK, 0.002, 1)], {BulkKey(0, R.S_CLOSED, R.R_REFUSED): [9]})
    (batch, bulk), = got
    assert batch == [(5, 80, R.S_OPEN, R.R_SYN_ACK, 0.002, 1)] and type(batch[0]) is Answer
    assert bulk == {(2, R.S_CLOSED, R.R_REFUSED): [9]}


def test_a_dead_host_s_status_names_who_said_so():
    from portatlas.scan.engine import down_status

    routed = down_status(R.R_HOST_UNREACH, "198.18.0.254", None, dropped=7)
    assert (routed.state, routed.reason, routed.method, routed.by, routed.dropped) == \
        ("down", "host-unreach", "port-scan", "198.18.0.254", 7)
    local = down_status(R.R_HOST_UNREACH, None, "nd", dropped=0)
    assert (local.state, local.reason, local.method) == ("down", "no-response", "nd")


def test_the_host_queue_sends_retries_first_and_drops_what_is_left():
    from portatlas.scan.engine import HostQueue

    hq = HostQueue(0, Host("198.18.0.2", "198.18.0.2", socket.AF_INET), [1, 2, 3, 4],
                   HostTiming(opts()))
    first = hq.next_probe()
    assert first.port == 1 and hq.has_work()
    hq.retry.append(first)
    assert [hq.next_probe().port for _ in range(2)] == [1, 2]
    assert hq.drop_queued() == 2 and not hq.has_work() and hq.next_probe() is None


def test_routes_longest_prefix_then_metric():
    from portatlas.scan.routes import LINK, NO_ROUTE, ROUTED, Route, RouteTable, _Entry

    def net(a, b, c, d):
        return (a << 24) | (b << 16) | (c << 8) | d

    table = [_Entry(24, net(198, 18, 7, 0), 0xFFFFFF00, 0, "veth0", False, False),
             _Entry(16, net(198, 18, 0, 0), 0xFFFF0000, 5, "eth1", True, False),
             _Entry(16, net(198, 19, 0, 0), 0xFFFF0000, 0, "x", False, True)]
    assert RouteTable._match(table, net(198, 18, 7, 9)) == Route(LINK, "veth0")
    assert RouteTable._match(table, net(198, 18, 8, 9)) == Route(ROUTED, "eth1")
    assert RouteTable._match(table, net(198, 19, 1, 1)).kind == NO_ROUTE   # a reject route
    assert RouteTable._match(table, net(203, 0, 113, 1)).kind == NO_ROUTE


def test_subnet_router_anycast_is_known_and_waited_for():
    # RFC 4291 2.6.1: an on-link IPv6 prefix with every host bit zero is the Subnet-Router
    # anycast address; its holders answer neighbour solicitations only after a random delay
    # of up to 1 s (RFC 4861 7.2.7), so host discovery's last wait for it reaches past that
    import ipaddress

    from portatlas.scan import discovery
    from portatlas.scan.routes import LINK, Route, RouteTable, _Entry

    net = int(ipaddress.IPv6Address("2001:db8:160::"))
    table = [_Entry(64, net, ((1 << 64) - 1) << 64, 0, "veth0", False, False)]
    anycast = RouteTable._match(table, net, anycast=True)
    assert anycast == Route(LINK, "veth0", True) and anycast.subnet_anycast
    assert not RouteTable._match(table, net + 5, anycast=True).subnet_anycast
    assert not RouteTable._match(table, net).subnet_anycast     # IPv4 tables never say so

    d = discovery.Discovery.__new__(discovery.Discovery)
    d.opts, d.slowest_link = discovery.DiscoveryOptions(), 0.0
    t = discovery._Target.__new__(discovery._Target)
    t.via, t.anycast = "nd", True
    waits = []
    for t.tries in range(1, len(discovery.LINK_WAITS) + 1):
        waits.append(d._wait(t))
    assert waits[:-1] == list(discovery.LINK_WAITS[:-1])
    assert waits[-1] >= 1.0 and sum(waits) > 1.0   # past MAX_ANYCAST_DELAY_TIME
    t.anycast = False
    assert d._wait(t) == discovery.LINK_WAITS[-1]   # any other neighbour: as before
