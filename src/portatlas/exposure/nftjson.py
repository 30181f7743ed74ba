"""Parse `nft -j list ruleset` (libnftables JSON, schema 1) into a Ruleset. No I/O.

Tables listed in `skip` (family, name) are left out: those are iptables-nft's tables, which are
read from iptables-nft-save instead (their rules carry "xt" expressions that the JSON does not
spell out).
"""

from __future__ import annotations

import json
from typing import Any

from portatlas.exposure import addr
from portatlas.exposure.ruleset import (NFTABLES, Action, Chain, Match, Rule, Ruleset, new_match,
                                        new_rule, unknown)

ADDR_FAMILY = {"ip": "ipv4", "ip6": "ipv6"}
PORT_PROTOS = ("tcp", "udp", "sctp", "dccp", "udplite", "th")
NAMED_PRIO = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
              "srcnat": 100}
# Expressions whose value is state of the running kernel, not of the ruleset.
STATEFUL = {"limit": "a rate limit", "quota": "a quota", "meter": "a meter",
            "ct count": "a connection count limit", "numgen": "a random/number generator",
            "jhash": "a hash", "symhash": "a hash", "osf": "OS fingerprinting",
            "socket": "a socket lookup", "ipsec": "IPsec state", "rt": "routing data",
            "exthdr": "IP/TCP option headers", "tcp option": "TCP options",
            "hash": "a hash", "synproxy": "SYN proxy", "xt": "an iptables extension (xt)"}


class NftParseError(ValueError):
    pass


def parse(data: bytes | str, skip: set[tuple[str, str]] | None = None,
          ruleset: Ruleset | None = None) -> Ruleset:
    try:
        doc = json.loads(data)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NftParseError(f"not nft -j output: {exc}") from None
    except RecursionError:
        raise NftParseError("not nft -j output: nested too deeply") from None
    if not isinstance(items, list):
        raise NftParseError("not nft -j output: 'nftables' is not a list")
    rs = ruleset or Ruleset()
    named = _Sets()
    rules = named.rules
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        body = item.get("rule")   # by far the most common item: first, without unpacking
        if body is not None:
            kind = "rule"
        else:
            (kind, body), = item.items()
        if not isinstance(body, dict):
            continue
        if skip and (body.get("family"), body.get("table")) in skip:
            continue
        if kind == "rule":
            rules.append(body)
        elif kind in ("set", "map"):
            try:
                named.sets[(body.get("family"), body.get("table"), body.get("name"))] = body
            except TypeError:
                pass  # a name that is not a string (not nft's output): nothing can refer to it
        elif kind == "chain":
            prio = body.get("prio", 0)
            if isinstance(prio, str):
                prio = NAMED_PRIO.get(prio, 0)
            try:
                prio = int(prio or 0)
            except (TypeError, ValueError):
                raise NftParseError(f"chain {body.get('name')!r}: priority {prio!r} is not a number") from None
            rs.add(Chain(NFTABLES, body.get("family", ""), body.get("table", ""),
                         body.get("name", ""), hook=body.get("hook"), prio=prio,
                         type=body.get("type", "filter"), policy=body.get("policy"),
                         device=body.get("dev")))
    # every chain is known before the first rule is placed (a rule may come before its chain)
    # (family, table, chain name) -> (chain, context, its new rules), looked up once per chain;
    # the rules join their chains at the end, in order (Chain.extend)
    places: dict[tuple[Any, Any, Any], tuple[Chain, _Context, list[Rule]] | None] = {}
    chains = rs.chains
    for body in rules:
        key = (body.get("family", ""), body.get("table", ""), body.get("chain", ""))
        try:
            place = places.get(key, False)
            if place is False:
                chain = chains.get((NFTABLES, *key))
                place = places[key] = None if chain is None else \
                    (chain, _Context(key[0], key[1], named), [])
        except TypeError:
            continue  # an unhashable name: no chain has it
        if place is None:
            continue
        _chain, ctx, new = place
        try:
            rule = _rule(body, ctx)
        except (TypeError, ValueError, KeyError, AttributeError):
            # a rule of a shape nft never writes: it decides nothing portatlas can know, so
            # whatever reaches it is unknown (never a guess)
            rule = Rule([], Action("unknown", text="a rule portatlas cannot read"),
                        handle=body.get("handle"), describe=lambda: "(unreadable rule)")
        new.append(rule)
    for place in places.values():
        if place is not None:
            place[0].extend(place[2])
    return rs


class _Sets:
    """The named sets and maps of a ruleset, and which of them rules fill at run time (worked
    out on the first reference to a set: most rulesets refer to none)."""

    def __init__(self) -> None:
        self.sets: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
        self.rules: list[dict[str, Any]] = []
        self._updated: set[tuple[Any, Any, str]] | None = None

    def updated(self) -> set[tuple[Any, Any, str]]:
        """(family, table, name) of the sets that an "add @set" / "update @set" statement of a
        rule fills."""
        if self._updated is None:
            found = set()
            for body in self.rules:
                exprs = body.get("expr")
                if not isinstance(exprs, list):
                    continue
                for expr in exprs:
                    if not isinstance(expr, dict):
                        continue
                    for op in ("set", "map"):
                        target = expr.get(op)
                        if isinstance(target, dict) and isinstance(target.get("set"), str):
                            found.add((body.get("family"), body.get("table"),
                                       target["set"].lstrip("@")))
            self._updated = found
        return self._updated


class _Context:
    def __init__(self, family, table, named: _Sets) -> None:
        self.family = family
        self.table = table
        self._named = named

    def named(self, ref: str) -> tuple[dict[str, Any] | None, str]:
        key = (self.family, self.table, ref.lstrip("@"))
        body = self._named.sets.get(key)
        if body is None:
            return None, f"set {ref} is not in the ruleset"
        flags = body.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        if key in self._named.updated() or "dynamic" in flags or "timeout" in flags or body.get("timeout"):
            return None, f"set {ref} is filled at run time (dynamic or with timeouts)"
        return body, ""


# statements that have no effect on where this packet goes (dup copies it elsewhere; the
# original goes on)
_PASSIVE = frozenset(("counter", "log", "mangle", "set", "map", "ct helper", "ct timeout",
                      "ct expectation", "flow", "secmark", "last", "comment", "dup"))


# Verdicts without arguments: one shared Action each (an Action is never changed after parsing;
# thousands of rules end in accept or drop).
_PLAIN_VERDICTS = {kind: Action(kind) for kind in ("accept", "drop", "return", "continue")}
_SNAT = Action("snat")
_NOTRACK = Action("notrack")


def _rule(body: dict[str, Any], ctx: _Context) -> Rule:
    exprs = body.get("expr") or []
    matches: list[Match] = []
    action: Action | None = None
    for expr in exprs:
        if not isinstance(expr, dict) or len(expr) != 1:
            matches.append(unknown("an expression portatlas cannot read"))
            continue
        if action is not None:
            continue  # statements after the verdict do not change where the packet goes
        val = expr.get("match")
        if val is not None:   # the most common expression: first, without unpacking
            matches.append(_match(val, ctx))
            continue
        (kind, val), = expr.items()
        plain = _PLAIN_VERDICTS.get(kind)
        if plain is not None:
            action = plain
        elif kind in _PASSIVE:
            continue
        elif kind == "match":
            matches.append(_match(val, ctx))
        elif kind in ("jump", "goto"):
            action = Action(kind, target=(val or {}).get("target"))
        elif kind == "reject":
            action = Action("reject", text=_reject_text(val))
        elif kind in ("dnat", "redirect"):
            action = _nat(kind, val)
        elif kind in ("snat", "masquerade"):
            action = _SNAT
        elif kind == "notrack":
            action = _NOTRACK
        elif kind == "vmap":
            action = _vmap(val, ctx)
        elif kind in STATEFUL:
            matches.append(unknown(f"the rule depends on {STATEFUL[kind]}"))
        elif kind in ("queue", "fwd", "tproxy"):
            action = Action("unknown", text=f"the packet is handed to {kind} (user space or "
                                            "another device decides)")
        else:
            matches.append(unknown(f"the rule uses '{kind}', which portatlas does not evaluate"))
    return new_rule(matches, action or _PLAIN_VERDICTS["continue"], body.get("handle"),
                    _rule_text, (exprs,))


def _reject_text(val: Any) -> str:
    if isinstance(val, dict):
        kind, expr = val.get("type"), val.get("expr")
        if type(kind) is str and type(expr) is str:  # the usual "icmpx port-unreachable"
            return f"{kind} {expr}" if kind and expr else kind or expr
        return " ".join(str(v) for v in (val.get("type"), val.get("expr")) if v)
    return ""


def _nat(kind: str, val: Any) -> Action:
    val = val or {}
    port = val.get("port")
    if port is not None and not isinstance(port, int):
        return Action("unknown", text=f"{kind} to a port chosen by a map or range")
    if kind == "redirect":
        return Action("redirect", port=port)
    target = val.get("addr")
    if not isinstance(target, str):
        return Action("unknown", text="dnat to an address chosen by a map or range")
    try:
        fam = addr.family_of(target)
        return Action("dnat", addr=addr.to_int(target), family=fam, port=port)
    except ValueError:
        return Action("unknown", text=f"dnat to {target!r}")


# -- matches ------------------------------------------------------------------------------------
# -- the common shapes, without the general path's lists and normalising -----------------------
# A ruleset of thousands of rules is mostly "tcp dport 22", "ip saddr 198.18.0.0/15",
# "iifname lo", "ct state established,related": these give the same values as the general
# path (_field_general, _values), which tests check on the same JSON with FAST off.
FAST = True


def _field(left: Any) -> tuple[str, str | None, str | None] | str:
    """_field_general, looked up in a table for the common left-hand sides."""
    if FAST and type(left) is dict and len(left) == 1:
        body = left.get("payload")
        if type(body) is dict:
            key = ("payload", body.get("protocol"), body.get("field"))
        else:
            body = left.get("meta")
            if type(body) is dict:
                key = ("meta", body.get("key"), None)
            else:
                body = left.get("ct")
                # a direction ("ct original saddr") is not in the table
                key = ("ct", body.get("key"), None) if type(body) is dict and "dir" not in body else None
        try:
            found = _COMMON_FIELDS.get(key)
        except TypeError:   # a list or dict where nft writes a name
            found = None
        if found is not None:
            return found
    return _field_general(left)


def _fast_values(field: str, right: Any):
    """The values of a match whose right-hand side has one of the common shapes, or None
    (then the general path decides, errors included)."""
    kind = type(right)
    if kind is int:
        if field == "dport" or field == "sport":
            return ((right, right),)
        return None
    if kind is str:
        if right.startswith("@"):
            return None  # a named set
        if field == "saddr" or field == "daddr":
            try:
                return addr.parse_net(right)[1]
            except ValueError:
                return None
        if field == "iif" or field == "oif":
            return (right,)
        if field in _NAME_FIELDS:
            return frozenset((right,))
        return None
    # (a prefix, {"prefix": {...}}, is read in _match itself)
    if kind is list and field in _NAME_FIELDS:
        for item in right:
            if type(item) is not str:
                return None
        return frozenset(right)
    return None


# fields whose values are plain names (see the end of _values)
_NAME_FIELDS = frozenset(("nfproto", "ctstate", "ctstatus", "ctdirection", "daddr_type"))


def _common_fields() -> dict[tuple[str, str, None | str], tuple[str, str | None, str | None]]:
    """The table _field uses: what _field_general says of each left-hand side it reads
    (keys are strings only, so that no other value can look equal to one)."""
    lefts = [("payload", proto, field) for proto in ADDR_FAMILY for field in ("saddr", "daddr")]
    lefts += [("payload", "ip", "protocol"), ("payload", "ip6", "nexthdr"),
              ("payload", "tcp", "flags")]
    lefts += [("payload", proto, field) for proto in PORT_PROTOS for field in ("sport", "dport")]
    lefts += [("meta", key, None) for key in ("l4proto", "nfproto", "protocol", "iif", "iifname",
                                             "oif", "oifname", "pkttype")]
    lefts += [("ct", key, None) for key in ("state", "status", "direction")]
    table = {}
    for kind, a, b in lefts:
        body = {"protocol": a, "field": b} if kind == "payload" else {"key": a}
        found = _field_general({kind: body})
        assert not isinstance(found, str), (kind, a, b)
        table[(kind, a, b)] = found
    return table


def _field_general(left: Any) -> tuple[str, str | None, str | None] | str:
    """(field, address family, transport dependency), or an unknown-reason string."""
    if not isinstance(left, dict) or len(left) != 1:
        return "a match on an expression portatlas cannot read"
    (kind, val), = left.items()
    if kind == "payload" and isinstance(val, dict):
        proto, field = val.get("protocol"), val.get("field")
        if proto in ADDR_FAMILY and field in ("saddr", "daddr"):
            return field, ADDR_FAMILY[proto], None
        if (proto, field) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return "l4proto", ADDR_FAMILY[proto], None
        if proto in PORT_PROTOS and field in ("sport", "dport"):
            return field, None, proto
        if proto == "tcp" and field == "flags":
            return "tcpflags", None, "tcp"
        return f"a match on {proto} {field} (packet contents)"
    if kind == "meta" and isinstance(val, dict):
        key = val.get("key")
        mapped = {"l4proto": "l4proto", "nfproto": "nfproto", "protocol": "ethertype",
                  "iif": "iif", "iifname": "iif", "oif": "oif", "oifname": "oif",
                  "pkttype": "pkttype"}.get(key)
        if mapped:
            return mapped, None, None
        return f"a match on meta {key} (run-time state such as marks, users, cgroups)"
    if kind == "ct" and isinstance(val, dict):
        key = val.get("key")
        if key in ("state", "status", "direction") and not val.get("dir"):
            return "ct" + key, None, None
        return f"a match on ct {key} (connection-tracking state)"
    if kind == "fib" and isinstance(val, dict):
        flags = val.get("flags") or []
        flags = [flags] if isinstance(flags, str) else flags
        if val.get("result") == "type" and flags == ["daddr"]:
            return "daddr_type", None, None
        return "a fib (routing) lookup"
    return f"a match on '{kind}'"


def _match(val: dict[str, Any], ctx: _Context) -> Match:
    if not isinstance(val, dict):
        return unknown("a match portatlas cannot read")
    left = val.get("left")
    found = None
    if FAST and type(left) is dict and len(left) == 1:
        # _field's table, without the call, for the most common left-hand side
        body = left.get("payload")
        if type(body) is dict:
            try:
                found = _COMMON_FIELDS.get(("payload", body.get("protocol"), body.get("field")))
            except TypeError:
                pass
    if found is None:
        found = _field(left)
        if isinstance(found, str):
            return unknown(found)
    field, family, proto = found
    op = val.get("op", "==")
    right = val.get("right")
    if FAST and (op == "==" or op == "!=" or op == "in"):
        if type(right) is int and (field == "dport" or field == "sport"):
            return new_match(field, ((right, right),), op == "!=", family, proto)
        if type(right) is dict and (field == "saddr" or field == "daddr") and len(right) == 1:
            prefix = right.get("prefix")   # "ip saddr 198.18.0.0/15": the common address match
            if type(prefix) is dict:
                text, plen = prefix.get("addr"), prefix.get("len")
                if type(text) is str and type(plen) is int:
                    try:
                        return new_match(field, addr.prefix(text, plen), op == "!=", family,
                                         proto)
                    except ValueError:
                        pass   # the general path says why
        values = _fast_values(field, right)
        if values is not None:
            return new_match(field, values, op == "!=", family, proto)
    if isinstance(right, str) and right.startswith("@"):
        body, why = ctx.named(right)
        if body is None:
            return unknown(why)
        right = {"set": body.get("elem") or []}
    try:
        values = _values(field, family, right)
    except _Unknown as exc:
        return unknown(str(exc))
    negate = op == "!="
    if op in ("<", ">", "<=", ">=") and field in ("sport", "dport") and isinstance(right, int):
        lo, hi = {"<": (0, right - 1), ">": (right + 1, 65535), "<=": (0, right),
                  ">=": (right, 65535)}[op]
        values = addr.normalise([(lo, hi)])
    elif op not in ("==", "!=", "in"):
        return unknown(f"a comparison '{op}' on {field}")
    if field == "tcpflags":
        values = (values, op)
    return Match(field, values, negate=negate, family=family, proto=proto)


class _Unknown(Exception):
    pass


def _items(right: Any) -> list[Any]:
    if isinstance(right, dict) and "set" in right:
        items = right["set"]
        return items if isinstance(items, list) else [items]
    if isinstance(right, list):
        return right
    return [right]


def _unwrap(item: Any) -> Any:
    # elements with timeouts, counters or comments come as {"elem": {"val": ...}}
    if isinstance(item, dict) and "elem" in item and isinstance(item["elem"], dict):
        return item["elem"].get("val")
    return item


def _values(field: str, family: str | None, right: Any):
    items = [_unwrap(i) for i in _items(right)]
    if field in ("saddr", "daddr"):
        pairs = []
        for item in items:
            pairs.extend(_address(item, family))
        return addr.normalise(pairs)
    if field in ("sport", "dport"):
        pairs = []
        for item in items:
            if isinstance(item, dict) and "range" in item:
                lo, hi = item["range"]
                pairs.append((_port(lo), _port(hi)))
            else:
                p = _port(item)
                pairs.append((p, p))
        return addr.normalise(pairs)
    if field == "tcpflags":
        bits = 0
        for item in items:
            bits |= _tcp_flag(item)
        return bits
    if field in ("iif", "oif"):
        return tuple(str(i) for i in items)
    if field == "l4proto":
        return frozenset(_proto(i) for i in items)
    if field == "ethertype":
        return frozenset({"ip": "ipv4", "ip6": "ipv6"}.get(str(i), str(i)) for i in items)
    if field == "pkttype":
        return frozenset("unicast" if i == "host" else str(i) for i in items)
    # nfproto, ctstate, ctstatus, ctdirection, daddr_type: plain names (or lists of them)
    out = set()
    for i in items:
        if isinstance(i, list):
            out.update(str(x) for x in i)
        else:
            out.add(str(i))
    return frozenset(out)


def _address(item: Any, family: str | None):
    if isinstance(item, dict) and "prefix" in item:
        p = item["prefix"]
        fam, iv = addr.parse_net(f"{p['addr']}/{p['len']}")
        return iv
    if isinstance(item, dict) and "range" in item:
        lo, hi = item["range"]
        return ((addr.to_int(lo), addr.to_int(hi)),)
    if isinstance(item, str):
        try:
            return addr.parse_net(item)[1]
        except ValueError:
            raise _Unknown(f"an address given by name ({item!r})") from None
    raise _Unknown("an address expression portatlas cannot read")


def _port(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        import socket  # here: port names are rare in nft's output, and socket is a big import
        try:
            return socket.getservbyname(value)
        except OSError:
            raise _Unknown(f"port name {value!r} is not known here") from None
    raise _Unknown("a port expression portatlas cannot read")


_PROTO_NUMBERS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 33: "dccp",
                  136: "udplite", 47: "gre", 50: "esp", 51: "ah"}


def _proto(value: Any) -> str:
    if isinstance(value, int):
        return _PROTO_NUMBERS.get(value, str(value))
    text = str(value)
    return "ipv6-icmp" if text in ("icmpv6", "ipv6-icmp") else text


_TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128}


def _tcp_flag(item: Any) -> int:
    if isinstance(item, int):
        return item
    if isinstance(item, str) and item in _TCP_FLAGS:
        return _TCP_FLAGS[item]
    if isinstance(item, dict) and "|" in item:
        return sum(_tcp_flag(x) for x in item["|"])
    raise _Unknown("a TCP flags expression portatlas cannot read")


def _vmap(val: dict[str, Any], ctx: _Context) -> Action:
    found = _field((val or {}).get("key"))
    if isinstance(found, str):
        return Action("unknown", text=f"a verdict map keyed by {found}")
    field, family, proto = found
    data = val.get("data")
    if isinstance(data, str) and data.startswith("@"):
        body, why = ctx.named(data)
        if body is None:
            return Action("unknown", text=why)
        data = {"set": body.get("elem") or []}
    entries = []
    for item in _items(data):
        item = _unwrap(item)
        if not isinstance(item, list) or len(item) != 2:
            return Action("unknown", text="a verdict map portatlas cannot read")
        key, verdict = _unwrap(item[0]), item[1]
        try:
            values = _values(field, family, key)
        except _Unknown as exc:
            return Action("unknown", text=str(exc))
        entries.append((Match(field, values, family=family, proto=proto), _verdict(verdict)))
    return Action("vmap", key=Match(field, None, family=family, proto=proto), entries=entries)


def _verdict(val: Any) -> Action:
    if isinstance(val, dict) and len(val) == 1:
        (kind, body), = val.items()
        if kind in ("accept", "drop", "return", "continue"):
            return Action(kind)
        if kind in ("jump", "goto"):
            return Action(kind, target=(body or {}).get("target"))
    return Action("unknown", text="a verdict portatlas cannot read")


_COMMON_FIELDS = _common_fields()


# -- text for people ----------------------------------------------------------------------------
def _rule_text(exprs: list[Any]) -> str:
    """The rule as nft-like text (made when first shown)."""
    words = (_text(kind, val) for expr in exprs if isinstance(expr, dict) and len(expr) == 1
             for (kind, val), in (expr.items(),))
    return " ".join(w for w in words if w)


def _text(kind: str, val: Any) -> str:
    """A short nft-like rendering of one expression (for the deciding rule's text)."""
    if kind == "match" and isinstance(val, dict):
        op = val.get("op", "==")
        op = "" if op in ("==", "in") else op + " "
        return f"{_expr(val.get('left'))} {op}{_expr(val.get('right'))}"
    if kind in ("counter",):
        return ""
    if val is None:
        return kind
    if kind in ("jump", "goto") and isinstance(val, dict):
        return f"{kind} {val.get('target')}"
    if kind in ("dnat", "snat", "redirect") and isinstance(val, dict):
        target = val.get("addr", "")
        port = val.get("port")
        where = f"{target}:{port}" if target and port is not None else f"{target or ''}" + (f":{port}" if port is not None else "")
        return f"{kind} to {where}".rstrip()
    if kind == "reject":
        text = _reject_text(val)
        return f"reject with {text}" if text else "reject"
    if kind == "vmap" and isinstance(val, dict):
        return f"{_expr(val.get('key'))} vmap {_expr(val.get('data'))}"
    if kind == "log":
        return "log"
    return kind


def _expr(e: Any) -> str:
    if isinstance(e, dict) and len(e) == 1:
        (k, v), = e.items()
        if k == "payload" and isinstance(v, dict):
            return f"{v.get('protocol')} {v.get('field')}"
        if k in ("meta", "ct") and isinstance(v, dict):
            return f"{k} {v.get('key')}"
        if k == "fib" and isinstance(v, dict):
            flags = v.get("flags") or []
            return f"fib {' . '.join(flags) if isinstance(flags, list) else flags} {v.get('result')}"
        if k == "prefix" and isinstance(v, dict):
            return f"{v.get('addr')}/{v.get('len')}"
        if k == "range" and isinstance(v, list):
            return "-".join(_expr(x) for x in v)
        if k == "set":
            items = v if isinstance(v, list) else [v]
            return "{ " + ", ".join(_expr(x) for x in items) + " }"
        if k in ("accept", "drop", "return", "continue"):
            return k
        if k in ("jump", "goto") and isinstance(v, dict):
            return f"{k} {v.get('target')}"
        if k == "elem" and isinstance(v, dict):
            return _expr(v.get("val"))
        return k
    if isinstance(e, list):
        if len(e) == 2 and not isinstance(e[0], list):
            return f"{_expr(e[0])} : {_expr(e[1])}"
        return "{ " + ", ".join(_expr(x) for x in e) + " }"
    if isinstance(e, str):
        return e if e.startswith("@") or " " not in e else json.dumps(e)
    return str(e)
