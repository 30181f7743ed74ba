"""One model of a packet filter that nftables and both iptables backends are parsed into.

A Ruleset holds chains; a base chain is attached to a hook with a priority, a user chain is only
reached by jump/goto. A rule is a list of matches and one action. Matches the evaluator cannot
decide from the ruleset alone (marks, rate limits, sets it cannot read...) are kept as
Match("unknown", reason=...) so that the answer can say "unknown, because ...".
"""

from __future__ import annotations

from typing import Any, Callable

# Where rules come from (the `origin` of a chain and of a deciding rule in JSON output).
NFTABLES = "nftables"
IPTABLES_LEGACY = "iptables-legacy"
IPTABLES_NFT = "iptables-nft"

# iptables tables: which hooks their built-in chains sit on, at which priority (the numbers
# the kernel's x_tables and iptables-nft register, the same as nftables' named priorities).
IPTABLES_HOOKS: dict[str, dict[str, tuple[str, int]]] = {
    "raw": {"PREROUTING": ("prerouting", -300), "OUTPUT": ("output", -300)},
    "mangle": {"PREROUTING": ("prerouting", -150), "INPUT": ("input", -150),
               "FORWARD": ("forward", -150), "OUTPUT": ("output", -150),
               "POSTROUTING": ("postrouting", -150)},
    "nat": {"PREROUTING": ("prerouting", -100), "INPUT": ("input", 100),
            "OUTPUT": ("output", -100), "POSTROUTING": ("postrouting", 100)},
    "filter": {"INPUT": ("input", 0), "FORWARD": ("forward", 0), "OUTPUT": ("output", 0)},
    "security": {"INPUT": ("input", 50), "FORWARD": ("forward", 50), "OUTPUT": ("output", 50)},
}


class Match:
    """One condition of a rule.

    field: saddr daddr sport dport l4proto nfproto iif oif ctstate ctstatus daddr_type
    saddr_type tcpflags pkttype, or "unknown" (reason says why it cannot be decided).
    values: an interval set (addresses, ports), a frozenset of names, a tuple of interface
    patterns ("eth0", "veth*") or, for tcpflags, a (mask, compare, op) triple.
    family: for address matches, the IP version the addresses are of; a packet of the other
    version does not match (nor does the negated match: the implicit protocol dependency fails).
    proto: an implicit transport dependency ("tcp dport 22" only matches TCP)."""

    __slots__ = ("field", "values", "negate", "family", "proto", "reason")

    def __init__(self, field: str, values: Any = None, *, negate: bool = False,
                 family: str | None = None, proto: str | None = None, reason: str = "") -> None:
        self.field = field
        self.values = values
        self.negate = negate
        self.family = family
        self.proto = proto
        self.reason = reason

    def __repr__(self) -> str:
        neg = "!" if self.negate else ""
        return f"Match({neg}{self.field} {self.values!r}{' ' + self.reason if self.reason else ''})"


_new = object.__new__


def new_match(field: str, values: Any, negate: bool, family: str | None,
              proto: str | None) -> Match:
    """The same as Match(field, values, negate=..., family=..., proto=...), for parsers that
    make thousands: calling the class with keywords costs more than the object itself.
    (Every slot is set here as in __init__; tests compare the two.)"""
    m = _new(Match)
    m.field = field
    m.values = values
    m.negate = negate
    m.family = family
    m.proto = proto
    m.reason = ""
    return m


def unknown(reason: str) -> Match:
    return Match("unknown", reason=reason)


class Action:
    """What a rule does when it matches.

    kind: accept drop reject jump goto return dnat redirect snat vmap notrack continue unknown.
    For dnat: addr (int) and family, port (or None); redirect: port; jump/goto: target;
    vmap: key (a Match with values None) and entries [(Match, Action)]."""

    __slots__ = ("kind", "target", "addr", "family", "port", "key", "entries", "text")

    def __init__(self, kind: str, *, target: str | None = None, addr: int | None = None,
                 family: str | None = None, port: int | None = None, key: Match | None = None,
                 entries: list | None = None, text: str = "") -> None:
        self.kind = kind
        self.target = target
        self.addr = addr
        self.family = family
        self.port = port
        self.key = key
        self.entries = entries
        self.text = text

    def __repr__(self) -> str:
        return f"Action({self.kind}{' ' + self.target if self.target else ''})"


CONTINUE = Action("continue")
TERMINAL = ("accept", "drop", "reject")


class Rule:
    __slots__ = ("chain", "handle", "_text", "_describe", "_describe_args", "matches", "action",
                 "index", "_ref")

    def __init__(self, matches: list[Match], action: Action, *, handle: int | None = None,
                 text: str = "", describe: Callable[[], str] | None = None) -> None:
        """describe: makes the text when it is first needed, instead of text (most rules of a
        big ruleset never decide anything shown)."""
        self.chain: Chain | None = None
        self.handle = handle
        self._text = text
        self._describe = describe
        self._describe_args: tuple = ()
        self.matches = matches
        self.action = action
        self.index = 0
        self._ref: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        if self._describe is not None:
            self._text = self._describe(*self._describe_args)
            self._describe = None
            self._describe_args = ()
        return self._text

    def ref(self) -> dict[str, Any]:
        """Where the rule is, as JSON (the `rule` of a decision; shared, do not modify)."""
        if self._ref is None:
            chain = self.chain
            self._ref = {"origin": chain.origin, "family": chain.family, "table": chain.table,
                         "chain": chain.name, "handle": self.handle, "position": self.index + 1,
                         "text": self.text}
        return self._ref

    def __repr__(self) -> str:
        return f"Rule({self.text!r})"


def new_rule(matches: list[Match], action: Action, handle: int | None,
             describe: Callable[..., str] | None, describe_args: tuple = ()) -> Rule:
    """The same as Rule(matches, action, handle=..., describe=...), cheaper (see new_match);
    the text is then describe(*describe_args) (a parser passes its function and the rule's
    JSON instead of making a closure for every rule)."""
    r = _new(Rule)
    r.chain = None
    r.handle = handle
    r._text = ""
    r._describe = describe
    r._describe_args = describe_args
    r.matches = matches
    r.action = action
    r.index = 0
    r._ref = None
    return r


class Chain:
    __slots__ = ("origin", "family", "table", "name", "hook", "prio", "type", "policy", "rules",
                 "device", "_index", "_ref")

    def __init__(self, origin: str, family: str, table: str, name: str, *,
                 hook: str | None = None, prio: int = 0, type: str = "filter",
                 policy: str | None = None, device: str | None = None) -> None:
        self.origin = origin
        self.family = family      # ip ip6 inet netdev bridge arp
        self.table = table
        self.name = name
        self.hook = hook          # None for a user (regular) chain
        self.prio = prio
        self.type = type          # filter nat route
        self.policy = policy      # accept | drop for base chains
        self.rules: list[Rule] = []
        self.device = device
        self._index = None
        self._ref: dict[str, Any] | None = None

    def add(self, rule: Rule) -> None:
        rule.chain = self
        rule.index = len(self.rules)
        self.rules.append(rule)
        self._index = None

    def extend(self, rules: list[Rule]) -> None:
        """add() for each rule, in order (one call for a parser's thousands of rules)."""
        for index, rule in enumerate(rules, len(self.rules)):
            rule.chain = self
            rule.index = index
        self.rules.extend(rules)
        self._index = None

    def ref(self) -> dict[str, Any]:
        """The chain's policy as the `rule` of a decision (shared, do not modify)."""
        if self._ref is None:
            self._ref = {"origin": self.origin, "family": self.family, "table": self.table,
                         "chain": self.name, "handle": None, "position": None,
                         "text": f"policy {self.policy}"}
        return self._ref

    def label(self) -> str:
        return f"{self.origin} {self.family} {self.table} {self.name}"

    def __repr__(self) -> str:
        return f"Chain({self.label()})"


class Ruleset:
    """Every chain read from this machine, with what was read and what could not be."""

    def __init__(self) -> None:
        self.chains: dict[tuple[str, str, str, str], Chain] = {}
        self.sources: list[dict[str, Any]] = []   # {"origin", "command", "status", "text"}
        self.problems: list[str] = []              # why parts of the answer may be unknown

    def add(self, chain: Chain) -> Chain:
        self.chains[(chain.origin, chain.family, chain.table, chain.name)] = chain
        return chain

    def get(self, origin: str, family: str, table: str, name: str) -> Chain | None:
        return self.chains.get((origin, family, table, name))

    def base_chains(self, hook: str, family: str) -> list[Chain]:
        """The base chains an IPv4 (family "ipv4") or IPv6 packet meets on a hook, in priority
        order (ties keep the order they were read in)."""
        want = ("ip", "inet") if family == "ipv4" else ("ip6", "inet")
        found = [c for c in self.chains.values()
                 if c.hook == hook and c.family in want]
        return sorted(found, key=lambda c: c.prio)

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())

    @property
    def empty(self) -> bool:
        return not any(c.rules or (c.hook and c.policy == "drop") for c in self.chains.values())
