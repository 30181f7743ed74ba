"""Shards of a cluster scan (portatlas.cluster.shards) and the --cluster options; no network."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portatlas.cluster.shards import Permutation, ShardPlan, default_shards
from portatlas.errors import UsageError


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=2**64 - 1))
def test_permutation_is_a_bijection(n, seed):
    p = Permutation(n, seed)
    assert sorted(p(i) for i in range(n)) == list(range(n))


def test_permutation_depends_on_the_seed_only():
    a = [Permutation(1000, 7)(i) for i in range(1000)]
    assert a == [Permutation(1000, 7)(i) for i in range(1000)]
    assert a != [Permutation(1000, 8)(i) for i in range(1000)]
    assert a != list(range(1000))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.lists(st.integers(1, 65535), min_size=0, max_size=30, unique=True),
       st.lists(st.integers(1, 65535), min_size=0, max_size=5, unique=True),
       st.integers(1, 50), st.integers(0, 2**32))
def test_shards_cover_every_probe_exactly_once(hosts, tcp, udp, shards, seed):
    plan = ShardPlan(hosts, tcp, udp, shards, seed)
    seen = Counter()
    for k in range(plan.shards):
        for probe in plan.probes(k):
            seen[probe] += 1
    expected = {(h, "tcp", p) for h in range(hosts) for p in tcp} | \
               {(h, "udp", p) for h in range(hosts) for p in udp}
    if not tcp and not udp:  # a ping scan: the hosts themselves are dealt out
        expected = {(h, "", 0) for h in range(hosts)}
    assert set(seen) == expected
    assert all(n == 1 for n in seen.values())
    # shard sizes differ by at most one
    sizes = [sum(1 for _ in plan.probes(k)) for k in range(plan.shards)]
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_no_shard_hammers_one_host():
    """Each shard's probes are spread over the hosts: a shard of 1,000 probes over 100 hosts
    touches most hosts with a handful of ports each, not a few hosts with hundreds."""
    plan = ShardPlan(100, list(range(1, 1001)), [], 100, seed=3)
    for k in (0, 17, 99):
        parts = plan.shard(k)
        per_host = [len(v["tcp"]) for v in parts.values()]
        assert len(parts) >= 95
        assert max(per_host) <= 30
        # the shard's first 100 probes do not dwell on one host either
        first = Counter(h for h, _, _ in list(plan.probes(k))[:100])
        assert max(first.values()) <= 6


def test_default_shards():
    assert default_shards(0, 3) == 0
    assert default_shards(5, 3) == 5          # never more shards than probes
    assert default_shards(10_000, 3) == 12    # four per worker
    assert default_shards(1_000_000, 3) == 123  # at most 8,192 probes each
    assert default_shards(128_000, 3) == 18     # a multiple of the workers
    assert default_shards(128_000, 2) == 16


@pytest.mark.parametrize("spec, kind, where", [
    ("local:3", "local", 3), ("tcp://198.18.59.1:8786", "remote", "tcp://198.18.59.1:8786"),
    ("tls://sched.example:8786", "remote", "tls://sched.example:8786"),
    ("tcp://[2001:db8::1]:8786", "remote", "tcp://[2001:db8::1]:8786"),
])
def test_parse_cluster(spec, kind, where):
    from portatlas.cluster import parse_cluster

    assert parse_cluster(spec) == (kind, where)


@pytest.mark.parametrize("spec", ["local:0", "local:x", "local:", "198.18.59.1:8786",
                                  "http://x:8786", "tcp://x", "tcp://x:0", "tcp://:8786",
                                  "tcp://x:99999"])
def test_parse_cluster_refuses(spec):
    from portatlas.cluster import parse_cluster

    with pytest.raises(UsageError):
        parse_cluster(spec)


@pytest.mark.parametrize("args, words", [
    (["--cluster", "nowhere"], "--cluster takes tcp://SCHEDULER:PORT or local:N"),
    (["--cluster", "local:0"], "--cluster local:N takes a number of workers"),
    (["--shards", "4"], "--shards needs --cluster"),
    (["--shard-seed", "4"], "--shard-seed needs --cluster"),
    (["--cluster", "local:2", "--workers", "2"], "--workers splits a scan"),
    (["--cluster", "local:2", "--shards", "0"], "--shards must be between"),
])
def test_cli_refuses_bad_cluster_options(cli, args, words):
    proc = cli("scan", "198.18.59.9", "-p", "80", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portatlas: error: ") and words in lines[0], \
        proc.stderr
