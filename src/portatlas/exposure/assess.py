"""From walks to an answer per listener: per source class (loopback, the machine's own subnets,
anywhere) what happens to a new connection, and the listener's verdict.

Source classes, per IP version the socket takes:
  loopback  sent by this machine to itself (over lo), from any of its addresses;
  subnet    from another host on a subnet of one of this machine's interfaces, arriving there;
  anywhere  from any other address, arriving on any interface that has an address.
A wildcard socket is reachable through every local address: a source counts as accepted when
at least one of them lets it in.
"""

from __future__ import annotations

from typing import Any

from portatlas.exposure import addr
from portatlas.exposure.machine import Machine
from portatlas.exposure.ruleset import Ruleset
from portatlas.exposure.walk import DADDR, SADDR, SPORT, Outcome, Walker

EXPOSED, LIMITED, LOCAL_ONLY, BLOCKED, UNKNOWN = "exposed", "limited", "local-only", "blocked", "unknown"
VERDICTS = (EXPOSED, LIMITED, LOCAL_ONLY, BLOCKED, UNKNOWN)
CLASSES = ("loopback", "subnet", "anywhere")
MAX_ATOMS = 20000
# accepts_forward for a socket held by a runtime's port reservation (containers.port_holder):
# whatever address the port is DNATed to is the service published there.
ANY_FORWARD = ("*", -1)

# Never sources from "anywhere": this host's loopback, unspecified, multicast, link-local
# (a link-local source is on-link, which the subnet class covers) and IPv4-mapped addresses.
_NOT_FROM_ANYWHERE = {
    "ipv4": ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3", "169.254.0.0/16"],
    "ipv6": ["::/127", "::ffff:0:0/96", "fe80::/10", "ff00::/8"],
}


class Listener:
    """What exposure needs to know about a socket."""

    __slots__ = ("transport", "family", "address", "port", "v6only", "interface")

    def __init__(self, transport: str, family: str, address: str, port: int,
                 v6only: bool | None = None, interface: str | None = None) -> None:
        self.transport = transport
        self.family = family
        self.address = address
        self.port = port
        self.v6only = v6only
        self.interface = interface

    def key(self) -> tuple:
        return (self.transport, self.family, self.address, self.port, self.v6only, self.interface)


class Exposure:
    """The answer for one listener (a plain record: to_dict() is its JSON, docs/exposure.md)."""

    __slots__ = ("verdict", "reason", "classes", "forwarded_to", "notes", "close", "rules")

    def __init__(self, verdict: str, reason: str, classes: list[dict[str, Any]] | None = None,
                 forwarded_to: dict[str, Any] | None = None) -> None:
        self.verdict = verdict
        self.reason = reason
        self.classes = classes or []
        self.forwarded_to = forwarded_to
        self.notes: list[str] = []
        self.close: list[str] = []

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "classes": self.classes,
                "forwarded_to": self.forwarded_to, "notes": self.notes, "close": self.close}

    def copy(self) -> "Exposure":
        e = Exposure(self.verdict, self.reason, self.classes, self.forwarded_to)
        e.notes = list(self.notes)
        e.close = list(self.close)
        return e

    def class_result(self, name: str) -> dict[str, Any] | None:
        for c in self.classes:
            if c["class"] == name:
                return c
        return None


class Assessor:
    """Answers for listeners of one machine (results are cached per socket shape)."""

    def __init__(self, ruleset: Ruleset, machine: Machine, *, unknown_reason: str | None = None,
                 forward_targets: dict[tuple[str, int, int], Any] | None = None) -> None:
        self.ruleset = ruleset
        self.machine = machine
        self.walker = Walker(ruleset, machine)
        # when the ruleset could not be read at all: every answer is unknown, because this
        self.unknown_reason = unknown_reason
        # (family, daddr int, dport) -> who is behind a forwarded destination (containers)
        self.forward_targets = forward_targets or {}
        self._cache: dict[tuple, Exposure] = {}
        self._probe_cache: dict[tuple, list] = {}
        self._parts_cache: dict[tuple, list] = {}
        self._plans: dict[tuple, tuple] = {}
        self._part_keys: dict[int, tuple] = {}      # _summarise's merging keys of cached parts
        self._plain: dict[int, bool] = {}           # id(prefix outcomes) -> _plain(them)
        self._normal: dict[tuple, tuple] = {}       # interval set -> addr.normalise(it)
        # ports NAT rules send packets to: a listener there is not one of its port class
        self._nat_ports = {r.action.port for c in ruleset.chains.values() for r in c.rules
                           if r.action.kind in ("dnat", "redirect") and r.action.port}

    def assess(self, listener: Listener, *, accepts_forward: tuple[str, int] | None = None) -> Exposure:
        """accepts_forward: (address, port) the listener is a proxy for (docker-proxy for its
        container): traffic DNATed there instead still reaches the same service."""
        return self.assess_socket(listener.transport, listener.family, listener.address,
                                  listener.port, listener.v6only, listener.interface,
                                  accepts_forward)

    def assess_socket(self, transport: str, family: str, address: str, port: int,
                      v6only: bool | None, interface: str | None,
                      accepts_forward: tuple[str, int] | None = None) -> Exposure:
        """assess() from a socket's fields (no Listener is made when a socket of the same
        shape was answered already: 10,000 sockets mostly are)."""
        key = (transport, family, address, v6only, interface, self.walker.port_class(port),
               accepts_forward, port if port in self._nat_ports else None)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._assess(
                Listener(transport, family, address, port, v6only, interface), accepts_forward)
        return found

    def connection(self, listener: Listener, family: str, iif: str | None, saddr: str,
                   daddr: str, sports: tuple[int, int] = (32768, 60999), *,
                   accepts_forward: tuple[str, int] | None = None) -> dict[str, Any]:
        """What happens to one connection to listener: from saddr to daddr, arriving on iif
        (None: from this machine itself), from a source port in sports. The answer has
        verdict (accepted dropped rejected diverted unknown, or "mixed" when the source port
        decides), rule and reason."""
        if self.unknown_reason:
            return {"verdict": "unknown", "rule": None, "reason": self.unknown_reason}
        s, d = addr.to_int(saddr), addr.to_int(daddr)
        box = (((s, s),), (sports,), ((d, d),))
        outcomes = self.walker.walk(family, listener.transport, listener.port, box, iif=iif)
        parts = self._parts(outcomes, box, family, iif, listener, accepts_forward)
        kinds = {p["verdict"] for p in parts}
        if len(kinds) != 1:
            return {"verdict": "mixed", "rule": None, "reason": "depends on the source port",
                    "parts": parts}
        return {"verdict": kinds.pop(), "rule": parts[0]["rule"], "reason": parts[0]["reason"]}

    # -- per listener -----------------------------------------------------------------------
    def _assess(self, lis: Listener, accepts_forward: tuple[str, int] | None) -> Exposure:
        if self.unknown_reason:
            return Exposure(UNKNOWN, self.unknown_reason)
        if lis.transport not in ("tcp", "udp"):
            return Exposure(UNKNOWN, f"only TCP and UDP listeners are evaluated, not {lis.transport}")
        bound_lo, dual_unknown, plan = self._plan(lis)
        walk = self.walker.walk
        transport, port = lis.transport, lis.port
        classes: list[dict[str, Any]] = []
        for klass, na, probes in plan:
            if na is not None:
                classes.append(na)
                continue
            walks = [(family, iif, box, walk(family, transport, port, box, iif))
                     for family, iif, box in probes]
            summary = self._one_answer(klass, walks, lis, accepts_forward)
            if summary is not None:
                classes.append(summary)
                continue
            parts = []
            for family, iif, box, outcomes in walks:
                ckey = (id(outcomes), family, iif, lis.transport, lis.family, lis.address,
                        lis.v6only, accepts_forward,
                        lis.port if lis.port in self._nat_ports else None)
                found = self._parts_cache.get(ckey)
                if found is None:
                    found = self._parts_cache[ckey] = self._probe_parts(
                        outcomes, box, family, iif, lis, accepts_forward, ckey[1:])
                parts.extend(found)
            classes.append(_summarise(klass, parts, self._part_keys))
        exp = _verdict(classes, lis, bound_lo)
        if dual_unknown and exp.verdict != UNKNOWN:
            exp.notes.append("whether this IPv6 socket also takes IPv4 is not known (the /proc "
                             "reader cannot tell); only IPv6 was evaluated")
        for c in classes:
            for p in c["parts"]:
                if p.get("forwarded"):
                    exp.forwarded_to = p.get("to")
                    return exp
        return exp

    def _plan(self, lis: Listener) -> tuple[bool, bool, list]:
        """(bound to loopback, IPv4 unknown for an IPv6 wildcard, per source class (name, its
        not-applicable answer or None, the probes)): the same for every socket of one shape
        whatever its port and transport, so made once per shape."""
        key = (lis.family, lis.address, lis.v6only, lis.interface)
        found = self._plans.get(key)
        if found is not None:
            return found
        fam, address = _effective(lis)
        families = [fam]
        dual_unknown = False
        if fam == "ipv6" and address == "::":
            if lis.v6only is False:
                families.append("ipv4")
            elif lis.v6only is None:
                dual_unknown = True
        wildcard = address in ("0.0.0.0", "::")
        bound_lo = (lis.interface == "lo") or (not wildcard and _is_loopback(fam, address))
        plan = []
        for klass in CLASSES:
            if klass != "loopback" and bound_lo:
                plan.append((klass, _na(klass, f"bound to {lis.interface or address}: only this "
                                               "machine can connect"), None))
                continue
            if klass == "loopback" and lis.interface and lis.interface != "lo":
                plan.append((klass, _na(klass, f"bound to device {lis.interface}: connections "
                                               "over lo are not delivered to it"), None))
                continue
            probes = []
            for f in families:
                pkey = (klass, f, address if f == fam else "0.0.0.0", wildcard, lis.interface)
                found = self._probe_cache.get(pkey)
                if found is None:
                    found = self._probe_cache[pkey] = self._probes(klass, f, pkey[2], wildcard, lis)
                probes.extend(found)
            if not probes:
                plan.append((klass, _na(klass, "no interface with an address of that kind"), None))
                continue
            plan.append((klass, None, probes))
        found = self._plans[key] = (bound_lo, dual_unknown, plan)
        return found

    def _one_answer(self, klass: str, walks: list, lis: Listener,
                    accepts_forward: tuple[str, int] | None) -> dict[str, Any] | None:
        """The class's summary when every outcome of its probes gives the same plain answer
        (the usual case: one rule or the policy decides for every source), without cutting
        the sources into parts that _summarise would drop again. It is what _probe_parts and
        _summarise give for such outcomes; None when the general path is needed (undecidable
        matches, answers that depend on the destination address, a forward or a diversion,
        several answers, or enough answers for _parts to fold some)."""
        verdict = None
        rule = reason = None
        rules: set = set()
        interfaces = set()
        for family, iif, box, outcomes in walks:
            if not outcomes:
                continue
            if len(outcomes) >= MAX_PARTS:
                return None
            daddr = box[DADDR]
            for o in outcomes:
                if o.assumptions or o.box[DADDR] != daddr:
                    return None
                if o.verdict == "accepted" and (o.reach != "local" or o.to != _UNCHANGED):
                    # NAT changed where it goes: _judge says whether it still reaches lis
                    j = self._judge(o, family, lis, accepts_forward)
                    if "to" in j:
                        return None
                    kind, by, why = j["verdict"], j["rule"], j["reason"]
                else:
                    kind, by, why = o.verdict, o.decider(), o.reason
                if verdict is None:
                    verdict, rule, reason = kind, by, why or ""
                elif kind != verdict:
                    return None
                # deciders are one shared dict per rule or chain: identity tells them apart
                rules.add(id(by))
            interfaces.add(iif or "lo")
        if verdict is None:
            return None
        out = {"class": klass, "verdict": verdict,
               "reason": reason or _decider_reason(rule, verdict),
               "rule": rule, "interfaces": sorted(interfaces), "parts": []}
        if len(rules) > 1:
            out["reason"] += f" (and {len(rules) - 1} more rule{'s' if len(rules) > 2 else ''} " \
                             "for other sources)"
        return out

    def _probes(self, klass: str, fam: str, address: str, wildcard: bool, lis: Listener):
        m = self.machine
        local = m.local_addresses(fam)
        ports = addr.PORT_ALL
        if wildcard:
            dests = local
        else:
            dests = ((addr.to_int(address), addr.to_int(address)),)
        if klass == "loopback":
            return [(fam, None, (local, ports, dests))]
        out = []
        loop = addr.parse_net("127.0.0.0/8" if fam == "ipv4" else "::1/128")[1]
        ext_dests = addr.subtract(dests, loop)
        link_local = addr.parse_net("169.254.0.0/16" if fam == "ipv4" else "fe80::/10")[1]
        ifaces = m.external()
        if lis.interface:
            ifaces = [i for i in ifaces if i.name == lis.interface]
        if klass == "subnet":
            for iface in ifaces:
                subnets = addr.subtract(iface.subnets(fam), local)
                if not subnets:
                    continue
                own_ll = addr.intersect(iface.subnets(fam), link_local)
                d = addr.subtract(ext_dests, addr.subtract(link_local, own_ll))
                if d:
                    out.append((fam, iface.name, (subnets, ports, d)))
            return out
        away = addr.full(fam)
        for net in _NOT_FROM_ANYWHERE[fam]:
            away = addr.subtract(away, addr.parse_net(net)[1])
        away = addr.subtract(addr.subtract(away, m.all_subnets(fam)), local)
        d = addr.subtract(ext_dests, link_local)
        if not d or not away:
            return out
        for iface in ifaces:
            if not any(f == fam for f, _t, _p in iface.addresses):
                continue
            # only sources this machine has a route back to through that interface: a TCP
            # handshake (or any answer) cannot complete otherwise
            space = addr.intersect(away, m.routed_from(fam, iface.name))
            if space:
                out.append((fam, iface.name, (space, ports, d)))
        return out

    def _probe_parts(self, outcomes, box, family, iif, lis, accepts_forward, shape) -> list:
        """_parts, reusing the parts of the port-independent prefix of the walk (the same for
        every port class) when the outcomes are plain disjoint boxes."""
        split = self.walker.split(outcomes)
        if split is None:
            return self._parts(outcomes, box, family, iif, lis, accepts_forward)
        done, rest = split
        # the prefix's outcomes are the same for every port class: looked at once
        plain = self._plain.get(id(done))
        if plain is None:
            plain = self._plain[id(done)] = _plain(done, box)
        if not plain or not _plain(rest, box):
            return self._parts(outcomes, box, family, iif, lis, accepts_forward)
        key = (id(done),) + shape
        head = self._parts_cache.get(key)
        if head is None:
            head = self._parts_cache[key] = self._parts(done, box, family, iif, lis,
                                                        accepts_forward, whole=False)
        return head + self._parts(rest, box, family, iif, lis, accepts_forward, whole=False)

    def _parts(self, outcomes: list[Outcome], box, family: str, iif: str | None, lis: Listener,
               accepts_forward: tuple[str, int] | None, whole: bool = True) -> list[dict[str, Any]]:
        """The probe's box cut into parts with one answer each (daddr folded: accepted through
        any destination address counts)."""
        judged = [(o, self._judge(o, family, lis, accepts_forward)) for o in outcomes]
        if not outcomes:
            return []
        if all(not o.assumptions for o in outcomes):
            kinds = {j["verdict"] for _o, j in judged}
            if whole and len(kinds) == 1 and (len(judged) == 1 or not _needs_split(judged)):
                o, j = judged[0]
                return [_part(j, family, iif, box[SADDR], box[SPORT])]
            if all(o.box[DADDR] == box[DADDR] for o in outcomes):
                # disjoint outcomes, none depending on the destination address: each is a
                # part already (no cutting into cells needed); same answers are merged
                groups: dict[tuple, list] = {}
                for o, j in judged:
                    key = (j["verdict"], _rule_key(j), j.get("reason"), str(j.get("to")),
                           o.box[SPORT])
                    found = groups.get(key)
                    if found is None:
                        # the box's own set (a tuple) until another is added to it
                        groups[key] = [j, o.box[SADDR], o.box[SPORT]]
                    elif found[1].__class__ is tuple:
                        found[1] = list(found[1]) + list(o.box[SADDR])
                    else:
                        found[1].extend(o.box[SADDR])
                items = list(groups.values())
                if len(items) > MAX_PARTS:
                    # a long block list: the first answers as they are, the rest one per verdict
                    tails: dict[str, list] = {}
                    for j, srcs, sports in items[MAX_PARTS - 1:]:
                        t = tails.get(j["verdict"])
                        if t is None:
                            tails[j["verdict"]] = [dict(j), list(srcs), sports, 1]
                        else:
                            t[1].extend(srcs)
                            t[2] = addr.normalise(list(t[2]) + list(sports))
                            t[3] += 1
                    items = items[:MAX_PARTS - 1]
                    for j, srcs, sports, count in tails.values():
                        if count > 1:
                            j["reason"] = f"{count} rules like the one shown decide these sources"
                        items.append([j, srcs, sports])
                return [_part(j, family, iif, self._normalise(srcs), sports)
                        for j, srcs, sports in items]
        return _atoms(judged, box, family, iif)

    def _normalise(self, srcs) -> addr.IntervalSet:
        """addr.normalise; remembered for one box's own set (a tuple: the same big source sets,
        a block list's remainder, come back for every port class)."""
        if srcs.__class__ is not tuple:
            return addr.normalise(srcs)
        found = self._normal.get(srcs)
        if found is None:
            found = self._normal[srcs] = addr.normalise(srcs)
        return found

    def _judge(self, o: Outcome, family: str, lis: Listener,
               accepts_forward: tuple[str, int] | None) -> dict[str, Any]:
        """What an outcome means for this listener."""
        out: dict[str, Any] = {"verdict": o.verdict, "rule": o.decider(), "reason": o.reason,
                               "assumptions": list(o.assumptions)}
        if o.verdict != "accepted":
            return out
        daddr, dport = o.to
        if dport is None:
            dport = lis.port
        if o.reach == "forward":
            to = {"address": addr.to_text(daddr, family), "port": dport, "interface": o.oif}
            behind = self.forward_targets.get((family, daddr, dport))
            if behind is not None:
                to["container"] = behind
            out["to"] = to
            out["forwarded"] = True
            same = accepts_forward == ANY_FORWARD or (
                accepts_forward is not None and accepts_forward[1] == dport
                and addr.to_int(accepts_forward[0]) == daddr)
            out["verdict"] = "accepted" if same else "diverted"
            if not same:
                out["reason"] = (f"DNAT sends it on to {_hostport(to['address'], dport)}: it "
                                 "does not reach this socket")
            return out
        if dport != lis.port or (daddr is not None and not _socket_takes(lis, family, daddr)):
            text = addr.to_text(daddr, family) if daddr is not None else "this machine"
            out["verdict"] = "diverted"
            out["reason"] = (f"redirected to {_hostport(text, dport)}: it does not reach "
                             "this socket")
            out["to"] = {"address": text, "port": dport, "interface": None}
        return out


# Outcome.to of a packet delivered here with its destination unchanged (no NAT on the way)
_UNCHANGED = (None, None)


def _plain(outcomes: list[Outcome], box) -> bool:
    """No outcome rests on an assumption or depends on the destination address."""
    daddr = box[DADDR]
    for o in outcomes:
        if o.assumptions or o.box[DADDR] != daddr:
            return False
    return True


def _needs_split(judged) -> bool:
    return len({(j["verdict"], _rule_key(j)) for _o, j in judged}) > 1


def _rule_key(j: dict[str, Any]):
    r = j.get("rule")
    return (r["origin"], r["family"], r["table"], r["chain"], r["position"]) if r else None


def _atoms(judged, box, family: str, iif: str | None) -> list[dict[str, Any]]:
    """Cut the box along every boundary of the outcomes and answer each elementary cell."""
    cuts = []
    for dim in (SADDR, SPORT, DADDR):
        points = set()
        for o, _j in judged:
            for lo, hi in o.box[dim]:
                points.add(lo)
                points.add(hi + 1)
        cells = []
        for lo, hi in box[dim]:
            inner = sorted(p for p in points if lo < p <= hi)
            start = lo
            for p in inner:
                cells.append((start, p - 1))
                start = p
            cells.append((start, hi))
        cuts.append(cells)
    if len(cuts[0]) * len(cuts[1]) * len(cuts[2]) > MAX_ATOMS:
        return [{"verdict": "unknown", "family": family, "interfaces": [iif or "lo"],
                 "sources": addr.describe(box[SADDR], family), "source_ports": None,
                 "rule": None, "reason": "the ruleset cuts the sources into too many cases",
                 "assumptions": []}]
    groups: dict[tuple, list] = {}
    order = []
    for s_cell in cuts[0]:
        for p_cell in cuts[1]:
            answers = []
            for d_cell in cuts[2]:
                answers.append(_cell(judged, s_cell[0], p_cell[0], d_cell[0]))
            chosen = _fold(answers)
            key = (chosen["verdict"], _rule_key(chosen), chosen.get("reason"),
                   str(chosen.get("to")), p_cell)
            if key not in groups:
                groups[key] = [chosen, []]
                order.append(key)
            groups[key][1].append(s_cell)
    merged: dict[tuple, list] = {}
    morder = []
    for key in order:
        chosen, s_cells = groups[key]
        skey = key[:4] + (addr.normalise(s_cells),)
        if skey not in merged:
            merged[skey] = [chosen, addr.normalise(s_cells), []]
            morder.append(skey)
        merged[skey][2].append(key[4])
    out = []
    for skey in morder:
        chosen, sources, sports = merged[skey]
        out.append(_part(chosen, family, iif, sources, addr.normalise(sports)))
    return out


def _cell(judged, s: int, p: int, d: int) -> dict[str, Any]:
    covering = [j for o, j in judged if addr.contains(o.box[SADDR], s)
                and addr.contains(o.box[SPORT], p) and addr.contains(o.box[DADDR], d)]
    if not covering:
        return {"verdict": "unknown", "rule": None, "reason": "no answer for this case",
                "assumptions": []}
    kinds = {j["verdict"] for j in covering}
    if len(kinds) == 1:
        # the same answer whichever way the undecidable matches went
        plain = [j for j in covering if not j["assumptions"]]
        return dict(plain[0] if plain else covering[0], assumptions=[])
    reasons = []
    for j in covering:
        for a in j["assumptions"]:
            if a not in reasons:
                reasons.append(a)
    return {"verdict": "unknown", "rule": None, "assumptions": [],
            "reason": "; ".join(reasons) or "the answer depends on run-time state"}


def _fold(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer for a source over every destination address it may use."""
    for a in answers:
        if a["verdict"] == "accepted":
            return a
    for a in answers:
        if a["verdict"] == "unknown":
            return a
    return answers[0]


def _part(j: dict[str, Any], family: str, iif: str | None, sources, sports) -> dict[str, Any]:
    part = {"verdict": j["verdict"], "family": family, "interfaces": [iif or "lo"],
            "sources": addr.describe(sources, family),
            "source_ports": None if sports == addr.PORT_ALL else addr.describe(sports, None),
            "rule": j.get("rule"), "reason": j.get("reason") or ""}
    if j.get("to"):
        part["to"] = j["to"]
    if j.get("forwarded"):
        part["forwarded"] = True
    return part


def _na(klass: str, reason: str) -> dict[str, Any]:
    return {"class": klass, "verdict": "not-applicable", "reason": reason, "rule": None,
            "parts": []}


MAX_PARTS = 12


def _summarise(klass: str, parts: list[dict[str, Any]],
               keys: dict[int, tuple] | None = None) -> dict[str, Any]:
    """keys: id(part) -> (part, its merging key), remembered between calls (the caller's parts
    live in its cache: the prefix's parts come back for every port class)."""
    # parts of different interfaces with the same answer are merged for reading
    by_key: dict[tuple, dict[str, Any]] = {}
    own: set = set()    # ids of by_key's values copied here (the others are the caller's)
    for p in parts:
        found = keys.get(id(p)) if keys is not None else None
        if found is not None and found[0] is p:
            key = found[1]
        else:
            to = p.get("to")
            key = (p["verdict"], p["family"], tuple(p["sources"]), tuple(p["source_ports"] or ()),
                   _ref_key(p["rule"]), p["reason"], str(to) if to else None)
            if keys is not None:
                keys[id(p)] = (p, key)
        q = by_key.get(key)
        if q is None:
            by_key[key] = p
        else:
            if id(q) not in own:
                q = by_key[key] = dict(q)
                own.add(id(q))
            q["interfaces"] = q["interfaces"] + [i for i in p["interfaces"]
                                                 if i not in q["interfaces"]]
    merged = list(by_key.values())
    kinds = {p["verdict"] for p in merged}
    if "accepted" in kinds and len(kinds) > 1 and len(merged) > MAX_PARTS // 2:
        # who gets in, part by part; who does not, one part per verdict (a long block list
        # would otherwise repeat itself in every listener's answer)
        keep = [p for p in merged if p["verdict"] == "accepted"][:MAX_PARTS]
        tails: dict[tuple, dict[str, Any]] = {}
        for p in merged:
            if p["verdict"] == "accepted":
                continue
            t = tails.get((p["verdict"], p["family"]))
            if t is None:
                tails[(p["verdict"], p["family"])] = dict(p, sources=list(p["sources"]), n=1)
            else:
                t["sources"] = (t["sources"] + p["sources"])[:6]
                t["n"] += 1
        for t in tails.values():
            if t.pop("n") > 1:
                t["reason"] = "several rules decide these sources; the first is shown"
        merged = keep + list(tails.values())
    kinds = {p["verdict"] for p in merged}
    if len(kinds) == 1:
        verdict = kinds.pop()
    elif "accepted" in kinds:
        verdict = "partly"
    elif "unknown" in kinds:
        verdict = "unknown"
    else:
        verdict = "blocked"
    first = next((p for p in merged if p["verdict"] == verdict), merged[0])
    if verdict == "partly":
        first = next(p for p in merged if p["verdict"] == "accepted")
    elif verdict == "unknown":
        first = next(p for p in merged if p["verdict"] == "unknown")
    out = {"class": klass, "verdict": verdict, "reason": _part_reason(first, verdict),
           "rule": first.get("rule"), "interfaces": sorted({i for p in merged for i in p["interfaces"]}),
           "parts": merged}
    if len({p["verdict"] for p in merged}) == 1 and not any(p.get("to") for p in merged):
        # one answer for the whole class: the class says it all (and the JSON of 10,000
        # listeners stays small); several rules giving it are counted
        rules = {_ref_key(p["rule"]) for p in merged}
        if len(rules) > 1:
            out["reason"] += f" (and {len(rules) - 1} more rule{'s' if len(rules) > 2 else ''} " \
                             "for other sources)"
        out["parts"] = []
    else:
        # the parts shown are this answer's own (the caller's stay as they are)
        out["parts"] = [p if id(p) in own else dict(p) for p in merged]
    return out


def _ref_key(r: dict[str, Any] | None) -> tuple | None:
    """A deciding rule's JSON as a comparable value (its fields, in their fixed order)."""
    return None if r is None else tuple(r.values())


def _part_reason(p: dict[str, Any], verdict: str) -> str:
    if p.get("reason"):
        return p["reason"]
    return _decider_reason(p.get("rule"), p["verdict"])


def _decider_reason(r: dict[str, Any] | None, verdict: str) -> str:
    """A part's reason when it has none of its own: what decided (verdict: the part's)."""
    if r is None:
        return "no rule stops it" if verdict == "accepted" else ""
    return _ref_text(r)


# rule_text of recent deciders: id(ref) -> (ref, text). Refs are one shared dict per rule (kept
# here with their text, so an id is never taken for another's); bounded for long-lived users.
_TEXTS: dict[int, tuple[dict[str, Any], str]] = {}


def _ref_text(r: dict[str, Any]) -> str:
    """rule_text of a Rule.ref() or Chain.ref() (never changed once made), remembered."""
    found = _TEXTS.get(id(r))
    if found is not None and found[0] is r:
        return found[1]
    text = rule_text(r)
    if len(_TEXTS) >= 4096:
        _TEXTS.clear()
    _TEXTS[id(r)] = (r, text)
    return text


def rule_text(r: dict[str, Any]) -> str:
    where = f"{r['origin']} {r['family']} {r['table']} {r['chain']}"
    if r.get("position") is None:
        return f"{r['text']} of {where}"
    handle = f" handle {r['handle']}" if r.get("handle") is not None else f" rule {r['position']}"
    return f"'{r['text']}' ({where}{handle})"


def _verdict(classes: list[dict[str, Any]], lis: Listener, bound_lo: bool) -> Exposure:
    lo, sub, anyw = classes     # one per source class, in the order of CLASSES
    lo_ok = lo["verdict"] in ("accepted", "partly")
    if bound_lo:
        if lo["verdict"] == "unknown":
            return Exposure(UNKNOWN, f"bound to loopback; {lo['reason']}", classes)
        if lo_ok:
            return Exposure(LOCAL_ONLY, f"bound to {lis.interface or lis.address}: only this "
                                        "machine can connect", classes)
        return Exposure(BLOCKED, f"bound to loopback, and even local connections are "
                                 f"{lo['verdict']}: {lo['reason']}", classes)
    ext = [c for c in (sub, anyw) if c["verdict"] != "not-applicable"]
    if anyw["verdict"] == "accepted":
        return Exposure(EXPOSED, "reachable from anywhere: " + _how(anyw), classes)
    if any(c["verdict"] == "unknown" for c in ext):
        bad = next(c for c in ext if c["verdict"] == "unknown")
        known = [c for c in ext if c["verdict"] in ("accepted", "partly")]
        also = f" (at least reachable from {_names(known)})" if known else ""
        return Exposure(UNKNOWN, f"from {_label(bad)}: unknown, because {bad['reason']}{also}",
                        classes)
    if any(c["verdict"] in ("accepted", "partly") for c in ext):
        return Exposure(LIMITED, _limited(sub, anyw), classes)
    if not ext:
        reason = anyw["reason"] or sub["reason"]
        if lo_ok:
            return Exposure(LOCAL_ONLY, reason, classes)
    blocked_by = next((c for c in ext if c["verdict"] not in ("not-applicable",)), anyw)
    if lo["verdict"] == "unknown":
        return Exposure(UNKNOWN, f"closed to other machines ({blocked_by['reason']}); from this "
                                 f"machine unknown, because {lo['reason']}", classes)
    if lo_ok:
        return Exposure(LOCAL_ONLY, f"other machines are {_word(blocked_by)} by "
                                    f"{blocked_by['reason']}", classes)
    return Exposure(BLOCKED, f"{_word(blocked_by)} from everywhere, this machine included: "
                             f"{blocked_by['reason']}", classes)


def _word(c: dict[str, Any]) -> str:
    return {"dropped": "dropped", "rejected": "rejected", "diverted": "diverted"}.get(
        c["verdict"], "blocked")


def _label(c: dict[str, Any]) -> str:
    return {"subnet": "this machine's subnets", "anywhere": "elsewhere",
            "loopback": "this machine"}[c["class"]]


def _names(cs) -> str:
    return " and ".join(_label(c) for c in cs)


def _how(c: dict[str, Any]) -> str:
    p = c["parts"][0] if c["parts"] else {"rule": c.get("rule")}
    if p.get("forwarded"):
        to = p["to"]
        return f"forwarded to {_hostport(to['address'], to['port'])}" + (
            f" ({_ref_text(p['rule'])})" if p.get("rule") else "")
    if p.get("rule"):
        return "accepted by " + _ref_text(p["rule"])
    return "no packet-filter rule stops it"


def _limited(sub: dict[str, Any], anyw: dict[str, Any]) -> str:
    if anyw["verdict"] == "partly":
        ok = [p for p in _parts_of(anyw) if p["verdict"] == "accepted"]
        srcs = ", ".join(s for p in ok for s in p["sources"])[:120]
        ports = [p["source_ports"] for p in ok if p["source_ports"]]
        extra = f" (source ports {', '.join(ports[0])})" if ports else ""
        ifs = sorted({i for p in ok for i in p["interfaces"]})
        return f"only from some sources: {srcs}{extra} via {', '.join(ifs)}"
    ok = [p for p in _parts_of(sub) if p["verdict"] == "accepted"]
    ifs = ", ".join(sorted({i for p in ok for i in p["interfaces"]}))
    part = "part of " if any(p["verdict"] != "accepted" and set(p["interfaces"]) & {
        i for q in ok for i in q["interfaces"]} for p in _parts_of(sub)) else ""
    return (f"only from {part}this machine's own subnets (on {ifs}); from elsewhere "
            f"{_word(anyw)}: {anyw['reason']}")


def _parts_of(c: dict[str, Any]) -> list[dict[str, Any]]:
    """A class's parts; a class with one answer has none listed, so it stands for its part."""
    if c["parts"]:
        return c["parts"]
    return [{"verdict": c["verdict"], "interfaces": c.get("interfaces", []), "sources": [],
             "source_ports": None, "rule": c["rule"], "reason": c["reason"]}]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _effective(lis: Listener) -> tuple[str, str]:
    a = lis.address.split("%", 1)[0]
    if lis.family == "ipv6" and a.startswith("::ffff:") and "." in a:
        return "ipv4", a[7:]
    return lis.family, a


def _is_loopback(fam: str, address: str) -> bool:
    return address.startswith("127.") if fam == "ipv4" else address == "::1"


def _socket_takes(lis: Listener, family: str, daddr: int) -> bool:
    fam, a = _effective(lis)
    if a in ("0.0.0.0", "::"):
        return family == fam or (fam == "ipv6" and lis.v6only is False)
    return family == fam and addr.to_int(a) == daddr
