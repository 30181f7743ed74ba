"""Walk the path of one inbound packet through a Ruleset, for every source at once.

The packet's transport, destination port and arrival interface are fixed; its source address,
source port and (for wildcard listeners) destination address are sets, kept as a box
(saddr set, sport set, daddr set). A rule matching on one of them splits the box: the part that
matches takes the rule's action, the rest goes on to the next rule. A match that cannot be
decided statically forks the walk into "matched" and "not matched", each carrying the reason as
an assumption; verdict.py later says "unknown, because ..." only where the two disagree.

The path (Linux netfilter):
  from another machine:  ingress -> prerouting (raw, mangle, nat/DNAT, ...) -> routing ->
                         input -> socket,  or  forward -> postrouting -> out (DNAT elsewhere)
  from this machine:     output (incl. nat/DNAT) -> postrouting -> [lo] prerouting -> input
                         (nat chains are not run again on lo: the connection is confirmed)
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from portatlas.exposure import addr
from portatlas.exposure.machine import Machine
from portatlas.exposure.ruleset import Chain, Match, Rule, Ruleset

SADDR, SPORT, DADDR = 0, 1, 2
MAX_STATES = 4000
MAX_DEPTH = 64
TCP_SYN = 0x02


class Packet:
    """The concrete part of the packet (copied when a rule changes it)."""

    __slots__ = ("family", "l4proto", "iif", "oif", "dport", "daddr", "dnat", "redirected",
                 "notrack", "local_origin")

    def __init__(self, family: str, l4proto: str, dport: int, iif: str | None,
                 local_origin: bool = False) -> None:
        self.family = family
        self.l4proto = l4proto
        self.dport = dport
        self.iif = iif
        self.oif: str | None = None
        self.daddr: int | None = None     # None: still the (symbolic) original destination
        self.dnat: tuple[int, int] | None = None
        self.redirected = False
        self.notrack = False
        self.local_origin = local_origin

    def copy(self) -> "Packet":
        p = Packet.__new__(Packet)
        # spelled out: a loop over __slots__ with getattr/setattr costs three times as much
        p.family = self.family
        p.l4proto = self.l4proto
        p.iif = self.iif
        p.oif = self.oif
        p.dport = self.dport
        p.daddr = self.daddr
        p.dnat = self.dnat
        p.redirected = self.redirected
        p.notrack = self.notrack
        p.local_origin = self.local_origin
        return p


class Outcome:
    """Where one part of the packet space ended.

    verdict: accepted dropped rejected unknown. reach (for accepted): local (delivered to a
    socket of this machine at to=(daddr, dport)) or forward (sent on to another host or a
    container, to=(daddr, dport), via oif)."""

    __slots__ = ("box", "verdict", "rule", "chain", "reason", "reach", "to", "oif",
                 "assumptions", "family", "path")

    # positional arguments allowed: the walk's hot paths make thousands (keywords cost more)
    def __init__(self, box, verdict: str, rule: Rule | None = None, chain: Chain | None = None,
                 reason: str = "", reach: str | None = None, to=None, oif=None,
                 assumptions: tuple = (), family: str = "ipv4", path: tuple = ()) -> None:
        self.box = box
        self.verdict = verdict
        self.rule = rule
        self.chain = chain
        self.reason = reason
        self.reach = reach
        self.to = to
        self.oif = oif
        self.assumptions = assumptions
        self.family = family
        self.path = path

    def decider(self) -> dict[str, Any] | None:
        if self.rule is not None:
            return self.rule.ref()
        if self.chain is not None:
            return self.chain.ref()
        return None

    def __repr__(self) -> str:
        return f"Outcome({self.verdict} {self.reach or ''} {self.decider()} {self.assumptions})"


class _State:
    __slots__ = ("box", "pkt", "stage", "chains", "ci", "frames", "assumptions", "nat_done",
                 "path", "by")

    def __init__(self, box, pkt, stage, chains, ci, frames, assumptions, nat_done, path, by=None):
        self.by = by
        self.box = box
        self.pkt = pkt
        self.stage = stage
        self.chains = chains
        self.ci = ci
        self.frames = frames
        self.assumptions = assumptions
        self.nat_done = nat_done
        self.path = path

    def fork(self, **changes) -> "_State":
        s = _State(self.box, self.pkt, self.stage, self.chains, self.ci, self.frames,
                   self.assumptions, self.nat_done, self.path, self.by)
        if changes:
            for k, v in changes.items():
                setattr(s, k, v)
        return s


class Walker:
    """Evaluates packets against one ruleset on one machine (reuse it: chains are indexed by
    destination port once)."""

    def __init__(self, ruleset: Ruleset, machine: Machine) -> None:
        self.ruleset = ruleset
        self.machine = machine
        self._hooks: dict[tuple[str, str], list[Chain]] = {}
        self._walks: dict[tuple, list[Outcome]] = {}
        self._prefixes: dict[tuple, tuple[list[Outcome], list]] = {}
        self._frontier: list | None = None   # set while walking the port-independent prefix
        self._loops: set[int] | None = None   # chains on a cycle of jumps/gotos (_looping)
        self._depends: dict[int, bool] = {}
        self._split: dict[int, tuple[list[Outcome], list[Outcome]]] = {}
        self._port_bounds, self._port_exact = _port_tests(ruleset)
        self._port_classes: dict[frozenset, int] = {}
        # class of the segment of 0-65535 starting at _bounds[k] (made at the first port_class;
        # stays empty when the port itself matters)
        self._bounds = self._port_bounds[0]
        self._class_of: list[int] = []

    def port_class(self, port: int) -> int:
        """Ports with the same class meet every destination-port test of the ruleset alike,
        so every answer for one holds for the others (-1: the port itself matters)."""
        if self._port_exact:
            return -1 - port
        if not self._class_of:
            self._class_of = self._classes()
        return self._class_of[bisect_right(self._bounds, port) - 1]

    def _classes(self) -> list[int]:
        bounds, members = self._port_bounds
        out = []
        for active in members:
            out.append(self._port_classes.setdefault(active, len(self._port_classes)))
        return out

    # -- public ---------------------------------------------------------------------------
    def walk(self, family: str, l4proto: str, dport: int, box, iif: str | None) -> list[Outcome]:
        """All outcomes for packets to dport with sources and destinations in box, arriving on
        iif (None: sent by this machine to itself, over lo)."""
        key = (family, l4proto, self.port_class(dport), iif, box)
        found = self._walks.get(key)
        if found is not None:
            return found
        # the part of the path before the first rule that looks at the destination port is
        # the same for every port: walked once, then resumed per port class
        pkey = (family, l4proto, iif, box)
        prefix = self._prefixes.get(pkey)
        if prefix is None:
            frontier: list = []
            self._frontier = frontier
            try:
                done = self._walk(family, l4proto, None, box, iif)
            finally:
                self._frontier = None
            prefix = self._prefixes[pkey] = (done, frontier)
        done, frontier = prefix
        out = list(done)
        for st in frontier:
            # the frontier state is shared by every port class: resumed as a copy, with the
            # port filled in (a frontier packet's port is always still unknown)
            pkt = st.pkt.copy()
            pkt.dport = dport
            todo: list = []
            # run directly (it is the first of its _run_all's states); what it splits off after
            self._run(_State(st.box, pkt, st.stage, st.chains, st.ci, st.frames,
                             st.assumptions, st.nat_done, st.path, st.by), todo, out)
            if todo:
                self._run_all(todo, family, out, 1)
        self._walks[key] = out
        self._split[id(out)] = (done, len(done))
        return out

    def split(self, outcomes: list[Outcome]) -> tuple[list[Outcome], list[Outcome]] | None:
        """(outcomes of the port-independent prefix, shared by every port; the rest) of a list
        walk() returned."""
        found = self._split.get(id(outcomes))
        if found is None:
            return None
        done, n = found
        return done, outcomes[n:]

    def _walk(self, family: str, l4proto: str, dport: int | None, box,
              iif: str | None) -> list[Outcome]:
        pkt = Packet(family, l4proto, dport, iif, local_origin=iif is None)
        if iif is None:
            pkt.oif = "lo"  # routed before the output hook: to a local address, over lo
        first = "output" if iif is None else "ingress"
        return self._run_all([self._enter(_State(box, pkt, first, None, 0, (), (), False, ()))],
                             family, [])

    def _run_all(self, todo: list, family: str, out: list[Outcome],
                 states: int = 0) -> list[Outcome]:
        """Run the states of todo (and those they split into) to their ends, appended to out
        (states: how many of this walk's states have run already, for MAX_STATES)."""
        run = self._run
        while todo:
            st = todo.pop()
            if st is None:
                continue
            states += 1
            if states > MAX_STATES:
                out.append(Outcome(st.box, "unknown", reason="the ruleset splits this packet "
                                   f"into more than {MAX_STATES} cases", family=family,
                                   assumptions=st.assumptions))
                break
            if st.__class__ is _Pending:
                # a forked part whose matched action is applied now
                if self._act(st.st, st.rule, st.action, st.i, todo, out):
                    continue
                st = st.st
            run(st, todo, out)
        return out

    # -- stages -----------------------------------------------------------------------------
    def _hook_chains(self, hook: str, family: str) -> list[Chain]:
        key = (hook, family, "base")
        found = self._hooks.get(key)
        if found is None:
            found = self._hooks[key] = self.ruleset.base_chains(hook, family)
        return found

    def _enter(self, st: _State) -> _State | None:
        """Set up the chains of st.stage (or finish)."""
        pkt = st.pkt
        stage = st.stage
        key = (stage, pkt.family, pkt.iif if stage == "ingress" else None)
        chains = self._hooks.get(key)
        if chains is None:
            if stage == "ingress":
                chains = sorted((c for c in self.ruleset.chains.values() if c.hook == "ingress"
                                 and c.family in ("netdev", "inet")
                                 and c.device in (None, pkt.iif)), key=lambda c: c.prio)
            elif stage in ("lo-prerouting", "lo-input"):
                # nat chains see only a connection's first packet, before it is confirmed
                chains = [c for c in self._hook_chains(stage[3:], pkt.family) if c.type != "nat"]
            else:
                chains = self._hook_chains(stage, pkt.family)
            self._hooks[key] = chains
        st.chains = chains
        st.ci = 0
        st.frames = ()
        st.nat_done = False
        return st

    def _next_stage(self, st: _State, todo: list, out: list) -> None:
        pkt = st.pkt
        stage = st.stage
        if stage == "input" or stage == "lo-input":
            # delivered (the usual end of a walk, so tested first)
            out.append(self._end(st, "accepted", None, None, "", "local", _to(pkt)))
            return
        m = self.machine
        fam = pkt.family
        if stage == "ingress":
            st.stage = "prerouting"
        elif stage == "prerouting":
            if pkt.daddr is not None and not m.is_local(fam, pkt.daddr):
                if not m.forwarding.get(fam):
                    out.append(self._end(st, "dropped", reason=(
                        f"DNAT sends it to {addr.to_text(pkt.daddr, fam)}, but this machine "
                        f"does not forward {fam.replace('ipv', 'IPv')} (forwarding is off)")))
                    return
                oif = m.route(fam, pkt.daddr)
                if oif is None:
                    out.append(self._end(st, "unknown", reason=(
                        f"DNAT sends it to {addr.to_text(pkt.daddr, fam)}, to which this "
                        "machine has no route")))
                    return
                pkt = st.pkt = pkt.copy()
                pkt.oif = oif
                st.stage = "forward"
            else:
                if pkt.daddr is not None and _loopback(fam, pkt.daddr) and pkt.iif != "lo" \
                        and not (fam == "ipv4" and m.route_localnet):
                    out.append(self._end(st, "dropped", reason=(
                        f"DNAT to the loopback address {addr.to_text(pkt.daddr, fam)} from "
                        "another machine: the kernel drops it (route_localnet is off)")))
                    return
                st.stage = "input"
        elif stage == "forward":
            st.stage = "postrouting"
        elif stage == "output":
            pkt = st.pkt = pkt.copy()
            if pkt.daddr is not None and not m.is_local(fam, pkt.daddr):
                pkt.oif = m.route(fam, pkt.daddr)
                if pkt.oif is None:
                    out.append(self._end(st, "unknown", reason=(
                        f"DNAT sends it to {addr.to_text(pkt.daddr, fam)}, to which this "
                        "machine has no route")))
                    return
            else:
                pkt.oif = "lo"
            st.stage = "postrouting"
        elif stage == "postrouting":
            if pkt.oif != "lo" or not pkt.local_origin:
                out.append(self._end(st, "accepted", None, None, "", "forward", _to(pkt)))
                return
            pkt = st.pkt = pkt.copy()
            pkt.iif, pkt.oif = "lo", None
            st.stage = "lo-prerouting"
        elif stage == "lo-prerouting":
            st.stage = "lo-input"
        todo.append(self._enter(st))

    def _end(self, st: _State, verdict: str, rule: Rule | None = None, chain: Chain | None = None,
             reason: str = "", reach: str | None = None, to=None) -> Outcome:
        if verdict == "accepted":
            # what let it through last (a rule, or a base chain's accept policy)
            by = st.by
            if isinstance(by, Rule):
                rule = by
            elif by is not None:
                chain = by
        return Outcome(st.box, verdict, rule, chain, reason, reach, to, None, st.assumptions,
                       st.pkt.family, st.path)

    # -- chains -----------------------------------------------------------------------------
    def _run(self, st: _State, todo: list, out: list) -> None:
        # the hot loop of every walk: helpers are inlined where a call per rule would cost
        # more than the work it does (the port's candidate rules, the common actions)
        frontier = self._frontier
        match = self._match
        while True:
            frames = st.frames
            if not frames:
                # next base chain of this stage
                while st.ci < len(st.chains):
                    chain = st.chains[st.ci]
                    if chain.type == "nat" and (st.nat_done or st.pkt.notrack):
                        st.ci += 1
                        continue
                    break
                else:
                    self._next_stage(st, todo, out)
                    return
                chain = st.chains[st.ci]
                if chain.family == "netdev" and chain.device is None and chain.rules:
                    # a device-bound chain whose device the JSON did not name
                    why = f"the ingress chain {chain.label()} names no device portatlas can see"
                    todo.append(st.fork(ci=st.ci + 1, assumptions=st.assumptions + (why,)))
                    st.assumptions = st.assumptions + (why,)
                frames = st.frames = ((chain, 0),)
                st.path = st.path + (chain.label(),)
            chain, i = frames[-1]
            # the rules that can match a packet to this port: rules that require another
            # destination port are skipped without being looked at (_build_index)
            index = chain._index
            if index is None:
                index = chain._index = _build_index(chain)
            dport = st.pkt.dport
            candidates = index[2] if dport is None else index[1][bisect_right(index[0], dport) - 1]
            pos = bisect_right(candidates, i - 1)
            end = len(candidates)
            rules = chain.rules
            result = None
            # rules that match no part of the box change nothing: on to the next one
            while pos < end:
                i = candidates[pos]
                rule = rules[i]
                if frontier is not None and dport is None and self._port_rule(rule):
                    st.frames = frames[:-1] + ((chain, i),)
                    frontier.append(st)
                    return
                result = match(rule, st)
                if result is not None:
                    break
                pos += 1
            if result is None:
                # past the last rule (_fall_off drops this chain's frame: its position does
                # not matter)
                if self._fall_off(st, chain, out):
                    return
                continue
            after = frames[:-1] + ((chain, i + 1),)
            matched, unmatched = result
            kind = rule.action.kind
            if kind in ("drop", "reject") and unmatched:
                # the common block-list case: the matched part ends here, the rest goes on in
                # this same state (no fork)
                verdict = "dropped" if kind == "drop" else "rejected"
                family = st.pkt.family
                for box, asm in matched:
                    out.append(Outcome(box, verdict, rule, None, "", None, None, None,
                                       st.assumptions + asm, family, st.path))
                for box, asm in unmatched[1:]:
                    todo.append(st.fork(box=box, assumptions=st.assumptions + asm,
                                        frames=after))
                box, asm = unmatched[0]
                st.box = box
                if asm:
                    st.assumptions = st.assumptions + asm
                st.frames = after
                continue
            for box, asm in unmatched:
                todo.append(st.fork(box=box, assumptions=st.assumptions + asm, frames=after))
            if not matched:
                return
            for box, asm in matched[1:]:
                todo.append(_Pending(st.fork(box=box, assumptions=st.assumptions + asm), rule, i))
            box, asm = matched[0]
            st.box = box
            if asm:
                st.assumptions = st.assumptions + asm
            if self._act(st, rule, rule.action, i, todo, out):
                return

    def _fall_off(self, st: _State, chain: Chain, out: list) -> bool:
        """End of a chain. Returns True when st has ended."""
        if len(st.frames) > 1:
            st.frames = st.frames[:-1]
            return False
        # the base chain's policy decides (also when a goto left it for a user chain)
        base = st.chains[st.ci]
        if base.policy == "drop":
            out.append(self._end(st, "dropped", chain=base))
            return True
        if base.rules and base.type != "nat" and base.policy == "accept":
            st.by = base
        st.frames = ()
        st.ci += 1
        return False

    def _act(self, st: _State, rule: Rule, action, i: int, todo: list, out: list) -> bool:
        """Apply a matched rule's action. Returns True when st has ended (or was handed on)."""
        kind = action.kind
        chain, _ = st.frames[-1]
        if kind == "continue" or (kind == "notrack" and st.pkt.notrack):
            st.frames = st.frames[:-1] + ((chain, i + 1),)
            return False
        if kind == "accept" or kind == "snat":
            if chain.type != "nat":
                st.by = rule
            st.frames = ()
            st.ci += 1
            return False
        if kind == "drop":
            out.append(self._end(st, "dropped", rule=rule))
            return True
        if kind == "reject":
            out.append(self._end(st, "rejected", rule=rule))
            return True
        if kind == "return":
            if len(st.frames) > 1:
                st.frames = st.frames[:-1]
                return False
            return self._fall_off(st, chain, out)
        if kind in ("jump", "goto"):
            target = self._chain(chain, action.target)
            if target is None:
                out.append(self._end(st, "unknown", rule=rule, reason=(
                    f"the rule sends the packet to {action.target!r}, which is not a chain "
                    "portatlas can read (an unknown target)")))
                return True
            if len(st.frames) >= MAX_DEPTH:
                out.append(self._end(st, "unknown", rule=rule, reason="chains jump too deep"))
                return True
            if id(target) in self._looping():
                # gotos keep the depth: a cycle of them would never end (the kernel refuses
                # such a ruleset, but a file or a future format might hold one)
                out.append(self._end(st, "unknown", rule=rule, reason=(
                    f"the chain {target.name!r} is part of a loop of jumps or gotos")))
                return True
            if kind == "jump":
                st.frames = st.frames[:-1] + ((chain, i + 1), (target, 0))
            else:
                st.frames = st.frames[:-1] + ((target, 0),)
            return False
        if kind in ("dnat", "redirect"):
            if chain.type != "nat" and chain.origin == "nftables":
                st.frames = st.frames[:-1] + ((chain, i + 1),)
                return False
            pkt = st.pkt = st.pkt.copy()
            fam = pkt.family
            if kind == "dnat":
                if action.family != fam:
                    st.frames = st.frames[:-1] + ((chain, i + 1),)
                    return False
                pkt.daddr = action.addr
            else:
                pkt.daddr = self._redirect_address(pkt)
                pkt.redirected = True
                if pkt.daddr is None:
                    out.append(self._end(st, "dropped", rule=rule, reason=(
                        f"redirected on {pkt.iif}, which has no {fam} address: the kernel "
                        "drops it")))
                    return True
            if action.port is not None:
                pkt.dport = action.port
            pkt.dnat = (pkt.daddr, pkt.dport)
            st.nat_done = True
            st.frames = ()
            st.ci += 1
            return False
        if kind == "notrack":
            pkt = st.pkt = st.pkt.copy()
            pkt.notrack = True
            st.frames = st.frames[:-1] + ((chain, i + 1),)
            return False
        if kind == "vmap":
            return self._vmap(st, rule, action, i, todo, out)
        out.append(self._end(st, "unknown", rule=rule,
                             reason=action.text or f"the action '{kind}' is not evaluated"))
        return True

    def _vmap(self, st, rule, action, i, todo, out) -> bool:
        rest = [(st.box, ())]
        for entry_match, verdict in action.entries:
            nxt = []
            for box, asm in rest:
                res = self._test(entry_match, box, st.pkt)
                yes, no = _split(res, box, asm)
                for b, a in yes:
                    sub = st.fork(box=b, assumptions=st.assumptions + a)
                    todo.append(_Pending(sub, rule, i, verdict))
                nxt.extend(no)
            rest = nxt
        for box, asm in rest:
            todo.append(st.fork(box=box, assumptions=st.assumptions + asm,
                                frames=st.frames[:-1] + ((st.frames[-1][0], i + 1),)))
        return True

    def _redirect_address(self, pkt: Packet) -> int | None:
        fam = pkt.family
        if pkt.iif is None or pkt.iif == "lo":
            return addr.to_int("127.0.0.1" if fam == "ipv4" else "::1")
        iface = self.machine.by_name(pkt.iif)
        for f, text, _p in (iface.addresses if iface else ()):
            if f == fam:
                return addr.to_int(text)
        return None

    def _looping(self) -> set[int]:
        """ids of the chains that lie on a cycle of jumps and gotos (found once)."""
        if self._loops is not None:
            return self._loops
        edges: dict[int, list[Chain]] = {}
        for chain in self.ruleset.chains.values():
            targets = edges.setdefault(id(chain), [])
            for rule in chain.rules:
                action = rule.action
                # a verdict map's entries are actions too
                for a in ([v for _m, v in action.entries or ()] if action.kind == "vmap"
                          else [action]):
                    if a.kind in ("jump", "goto"):
                        t = self._chain(chain, a.target)
                        if t is not None:
                            targets.append(t)
        looping: set[int] = set()
        for chain in self.ruleset.chains.values():
            # is chain reachable from itself? (iterative search: chains are few)
            seen: set[int] = set()
            todo = list(edges.get(id(chain), ()))
            while todo:
                t = todo.pop()
                if t is chain:
                    looping.add(id(chain))
                    break
                if id(t) not in seen:
                    seen.add(id(t))
                    todo.extend(edges.get(id(t), ()))
        self._loops = looping
        return looping

    def _chain(self, caller: Chain, name: str | None) -> Chain | None:
        if not name:
            return None
        return self.ruleset.get(caller.origin, caller.family, caller.table, name)

    def _port_rule(self, rule: Rule) -> bool:
        found = self._depends.get(id(rule))
        if found is None:
            a = rule.action
            found = any(m.field == "dport" for m in rule.matches) or (
                a.kind == "vmap" and a.key is not None and a.key.field == "dport")
            self._depends[id(rule)] = found
        return found

    def _candidates(self, chain: Chain, dport: int | None) -> list[int]:
        """Indexes of the rules of chain that can match a packet to dport (rules that require
        another destination port are skipped without being looked at)."""
        index = chain._index
        if index is None:
            index = chain._index = _build_index(chain)
        bounds, lists, every = index
        if dport is None:
            return every
        return lists[bisect_right(bounds, dport) - 1]

    # -- matching ---------------------------------------------------------------------------
    def _match(self, rule: Rule, st: _State):
        """None when no part of st.box matches; else (matched parts, unmatched parts), each a
        list of (box, extra assumptions)."""
        box = st.box
        pkt = st.pkt
        test = self._test
        # while every test is decided for the whole box (the usual case: ports, protocols,
        # interfaces) the box stays in one piece and nothing needs to be built
        for k, m in enumerate(rule.matches):
            res = test(m, box, pkt)
            if res is True:
                continue
            if res is False:
                return None
            return self._match_parts(rule.matches, k, res, box, pkt)
        return [(box, ())], []

    def _match_parts(self, matches: list[Match], k: int, res, box, pkt: Packet):
        """_match from the k-th test on (its result res), once the box may be cut."""
        parts = [(box, ())]
        unmatched: list = []
        for m in matches[k:]:
            nxt = []
            for part, asm in parts:
                if res is None:
                    res = self._test(m, part, pkt)
                yes, no = _split(res, part, asm)
                res = None
                nxt.extend(yes)
                unmatched.extend(no)
            parts = nxt
            if not parts:
                break
        if not parts and len(unmatched) == 1 and unmatched[0][0] is box and not unmatched[0][1]:
            return None
        return parts, unmatched

    def _test(self, m: Match, box, pkt: Packet):
        """True / False, ("split", dim, matching set) or ("unknown", reason)."""
        field = m.field
        if m.family is not None and m.family != pkt.family:
            return False
        if m.proto is not None:
            if m.proto == "th":
                if pkt.l4proto not in ("tcp", "udp", "sctp", "dccp", "udplite"):
                    return False
            elif m.proto != pkt.l4proto:
                return False
        neg = m.negate
        if field == "dport":
            # addr.contains, inlined (a test of every candidate rule)
            port = pkt.dport
            for lo, hi in m.values:
                if lo <= port <= hi:
                    return not neg
                if lo > port:
                    return neg
            return neg
        if field == "l4proto":
            return (pkt.l4proto in m.values) != neg
        if field == "saddr":
            return ("split", SADDR, addr.subtract(box[SADDR], m.values) if neg
                    else addr.intersect(box[SADDR], m.values))
        if field == "sport":
            return ("split", SPORT, addr.subtract(box[SPORT], m.values) if neg
                    else addr.intersect(box[SPORT], m.values))
        if field == "daddr":
            if pkt.daddr is not None:
                return addr.contains(m.values, pkt.daddr) != neg
            return ("split", DADDR, addr.subtract(box[DADDR], m.values) if neg
                    else addr.intersect(box[DADDR], m.values))
        if field in ("iif", "oif"):
            name = (pkt.iif if field == "iif" else pkt.oif) or ""
            hit = any(_iface_match(p, name) for p in m.values)
            return hit != neg
        if field in ("nfproto", "ethertype"):
            return (pkt.family in m.values) != neg
        if field == "ctstate":
            state = "untracked" if pkt.notrack else "new"
            hit = state in m.values or ("dnat" in m.values and pkt.dnat is not None)
            return hit != neg
        if field == "ctstatus":
            known = {"dnat", "snat", "expected", "seen-reply", "assured", "dying"}
            if not set(m.values) <= known:
                return ("unknown", f"ct status {', '.join(sorted(m.values))}")
            return (("dnat" in m.values and pkt.dnat is not None)) != neg
        if field == "ctdirection":
            return ("original" in m.values) != neg
        if field == "daddr_type":
            if pkt.daddr is None:
                kind = "local"
            else:
                kind = "local" if self.machine.is_local(pkt.family, pkt.daddr) else "unicast"
            if not set(m.values) <= {"local", "unicast", "broadcast", "multicast", "anycast",
                                     "blackhole", "unreachable", "prohibit", "unspec", "nat",
                                     "throw", "xresolve"}:
                return ("unknown", f"address type {', '.join(sorted(m.values))}")
            return (kind in m.values) != neg
        if field == "saddr_type":
            return ("unknown", "source address type")
        if field == "tcpflags":
            (bits, op) = m.values
            flags = TCP_SYN
            if op == "mask":
                mask, comp = bits
                hit = (flags & mask) == comp
            elif op == "in":
                hit = (flags & bits) != 0
            else:
                hit = flags == bits
            return hit != neg
        if field == "pkttype":
            return ("unicast" in m.values) != neg
        return ("unknown", m.reason or f"a match on {field}")


class _Pending:
    """A forked part whose matched action is applied when it is taken from the work list."""

    __slots__ = ("st", "rule", "i", "action")

    def __init__(self, st, rule, i, action=None) -> None:
        self.st = st
        self.rule = rule
        self.i = i
        self.action = action if action is not None else rule.action


def _to(pkt: Packet) -> tuple[int | None, int | None]:
    """Where an accepted packet goes: (address, port), None for what NAT left as it was (so
    that one walk serves every port of its class)."""
    return (pkt.daddr, pkt.dport if pkt.dnat is not None else None)


def _split(res, box, asm):
    """(matching parts, non-matching parts) of box for one test result."""
    if res is True:
        return [(box, asm)], []
    if res is False:
        return [], [(box, asm)]
    if res[0] == "split":
        _, dim, inside = res
        outside = addr.subtract(box[dim], inside)
        yes = [(_with(box, dim, inside), asm)] if inside else []
        no = [(_with(box, dim, outside), asm)] if outside else []
        return yes, no
    reason = res[1]
    return [(box, asm + (reason,))], [(box, asm + (reason,))]


def _with(box, dim, values):
    if dim == SADDR:
        return (values, box[1], box[2])
    if dim == SPORT:
        return (box[0], values, box[2])
    return (box[0], box[1], values)


def _iface_match(pattern: str, name: str) -> bool:
    if pattern.endswith("*") and not pattern.endswith("\\*"):
        return name.startswith(pattern[:-1])
    return pattern.replace("\\*", "*") == name


def _loopback(family: str, value: int) -> bool:
    if family == "ipv4":
        return (value >> 24) == 127
    return value == 1


def _dport_constraint(rule: Rule):
    """The destination ports a rule can match at all, or None when any."""
    for m in rule.matches:
        if m.field == "dport" and not m.negate:
            return m.values
    return None


def _build_index(chain: Chain):
    """(bounds, lists): rules that can match a port p are lists[bisect_right(bounds, p) - 1]."""
    always = []
    constrained = []
    for i, rule in enumerate(chain.rules):
        c = _dport_constraint(rule)
        if c is None:
            always.append(i)
        else:
            constrained.append((i, c))
    bounds, active = _segments(constrained)
    lists = [sorted(always + keys) if keys else always for keys in active]
    return bounds, lists, list(range(len(chain.rules)))


def _segments(items) -> tuple[list[int], list[list[int]]]:
    """Cut 0-65535 at every boundary of the port intervals of `items` ((key, [(lo, hi)])):
    (bounds, keys): segment k starts at bounds[k] and lies inside the intervals of keys[k]."""
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    for key, values in items:
        for lo, hi in values:
            starts.setdefault(lo, []).append(key)
            ends.setdefault(hi + 1, []).append(key)
    bounds = sorted({0, *starts, *(e for e in ends if e <= 65535)})
    active: dict[int, int] = {}  # key -> how many of its intervals contain the segment
    keys = []
    for b in bounds:
        for k in ends.get(b, ()):
            active[k] -= 1
            if not active[k]:
                del active[k]
        for k in starts.get(b, ()):
            active[k] = active.get(k, 0) + 1
        keys.append(list(active))
    return bounds, keys


def _port_tests(ruleset: Ruleset):
    """((bounds, active test sets per segment), exact): every destination-port test of the
    ruleset (matches and verdict-map keys), as elementary segments of 0-65535 with the set of
    tests whose values contain them. exact: a NAT rule keeps the original port, so answers
    name the port itself and cannot be shared between ports."""
    tests: list = []
    exact = False
    for chain in ruleset.chains.values():
        for rule in chain.rules:
            for m in rule.matches:
                if m.field == "dport":
                    tests.append(m.values)
            a = rule.action
            if a.kind == "vmap" and a.key is not None and a.key.field == "dport":
                tests.extend(e.values for e, _v in a.entries)
            if a.kind in ("dnat", "redirect") and a.port is None:
                exact = True
    bounds, active = _segments(enumerate(tests))
    return (bounds, [frozenset(keys) for keys in active]), exact
