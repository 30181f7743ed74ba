"""Splitting a scan into shards: a seeded permutation of every (address, port) probe, dealt
out like masscan's `--shards`.

A scan of H hosts and P ports (TCP and UDP together) is N = H·P probes, numbered
i = slot·H + host (slot: the port's place in the TCP list, then the UDP list). A keyed
bijection of [0, N) shuffles them, and shard k of K takes the probes at permuted positions
k, k+K, k+2K, ...: about N/K probes each, spread over all hosts, so no shard (and no worker)
sends a burst to one host, and every probe is in exactly one shard.

The bijection is a small Feistel-style network on the rectangle a×b ⊇ [0, N) (a·b ≥ N,
a ≈ √N), made to fit N exactly by cycle-walking: values that fall outside [0, N) are
enciphered again until they land inside, which keeps it a bijection of [0, N). It only has
to scatter probes, not to be a cipher; the same seed always gives the same shards.
"""

from __future__ import annotations

import math
from typing import Iterator

_MASK = (1 << 64) - 1
_ROUNDS = 3  # three double rounds: adjacent numbers end up far apart


def _mix(key: int, value: int) -> int:
    """A 64-bit integer hash (splitmix64's finaliser) of value under key."""
    z = (value + key) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class Permutation:
    """A bijection of [0, n) chosen by `seed`."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 0:
            raise ValueError("a permutation needs n >= 0")
        self.n = n
        self.a = max(1, math.isqrt(max(n - 1, 0)) + 1)
        self.b = max(1, -(-n // self.a))
        keys = [_mix(seed & _MASK, r + 1) for r in range(2 * _ROUNDS)]
        self.pairs = [(keys[2 * r], keys[2 * r + 1]) for r in range(_ROUNDS)]

    def _step(self, m: int) -> int:
        a, b = self.a, self.b
        x, y = m % a, m // a
        for kx, ky in self.pairs:
            # each half moves by a hash of the other: invertible, so a bijection of a×b
            # (the hash is _mix, written out: this is the hot loop of shard planning)
            z = (y + kx) & _MASK
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            x = (x + (z ^ (z >> 31))) % a
            z = (x + ky) & _MASK
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            y = (y + (z ^ (z >> 31))) % b
        return x + a * y

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        m = self._step(i)
        while m >= self.n:  # cycle-walking: at most a few steps, since a·b < n + a + b
            m = self._step(m)
        return m


class ShardPlan:
    """Which probes belong to which shard. Probes are (host index, transport, port)."""

    def __init__(self, hosts: int, tcp_ports: list[int], udp_ports: list[int], shards: int,
                 seed: int) -> None:
        self.hosts = hosts
        self.slots = [("tcp", p) for p in tcp_ports] + [("udp", p) for p in udp_ports]
        # no ports at all (a ping scan): the hosts themselves are dealt out
        self.hosts_only = not self.slots
        if self.hosts_only:
            self.slots = [("", 0)]
        self.total = hosts * len(self.slots)
        self.shards = max(1, min(shards, self.total)) if self.total else 0
        self.seed = seed
        self.permutation = Permutation(self.total, seed)

    def probes(self, shard: int) -> Iterator[tuple[int, str, int]]:
        """Every probe of shard `shard` (0-based), in permuted order; in a ping scan,
        (host, "", 0) for each of its hosts."""
        if not 0 <= shard < self.shards:
            raise IndexError(shard)
        step, hosts, slots, n = self.permutation._step, self.hosts, self.slots, self.total
        for j in range(shard, n, self.shards):
            i = step(j)
            while i >= n:  # cycle-walking, as Permutation.__call__
                i = step(i)
            transport, port = slots[i // hosts]
            yield i % hosts, transport, port

    def shard(self, shard: int) -> dict[int, dict[str, list[int]]]:
        """{host index: {transport: [port, ...]}} for one shard, ports sorted."""
        out: dict[int, dict[str, list[int]]] = {}
        for host, transport, port in self.probes(shard):
            ports = out.setdefault(host, {"tcp": [], "udp": []})
            if transport:
                ports[transport].append(port)
        for plan in out.values():
            plan["tcp"].sort()
            plan["udp"].sort()
        return out


def default_shards(probes: int, workers: int) -> int:
    """Enough shards that every worker gets several (a lost worker costs little, results
    stream), none larger than 8,192 probes, and a multiple of the number of workers (so
    that they finish together); never more shards than probes."""
    if probes <= 0:
        return 0
    workers = max(workers, 1)
    count = max(4 * workers, -(-probes // 8192))
    count = -(-count // workers) * workers
    return max(1, min(probes, count))
