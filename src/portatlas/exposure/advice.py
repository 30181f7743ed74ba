"""What to tell the user about an exposed listener: plain warnings (nobody registered the port,
a trojan history, Docker going around INPUT) and concrete ways to close it."""

from __future__ import annotations

from typing import Any

from portatlas.exposure.assess import EXPOSED, LIMITED, Exposure


def complete(exp: Exposure, sock, snapshot, look, proxy: dict[str, Any] | None) -> Exposure:
    """exp with the notes and ways to close that fit this socket (a copy when anything is
    added: assessments are shared between sockets of the same shape)."""
    if exp.verdict not in (EXPOSED, LIMITED):
        return exp
    out = exp.copy()
    flags = dict(getattr(sock, "flags", None) or ())
    where = f"{sock.port}/{sock.transport}"
    if "trojan" in flags:
        out.notes.append(f"reachable from outside on a port with a trojan history: {flags['trojan']}")
    if "unassigned" in flags:
        out.notes.append(f"reachable from outside on {where}, which nobody registered "
                         "(unassigned by IANA): check that this program should be listening")
    elif snapshot.classified and not sock.services and "dynamic" not in flags:
        out.notes.append(f"reachable from outside on {where}, for which no service is registered")
    proc = None
    for holder in sock.holders:
        proc = snapshot.processes.get(holder.pid)
        if proc is not None:
            break
    forwarded = exp.forwarded_to
    container = (forwarded or {}).get("container") if forwarded else None
    reservation = bool(proxy and proxy.get("reservation"))
    runtime = (container or {}).get("runtime") or (proxy or {}).get("runtime") or "docker"
    if forwarded:
        # Docker's FORWARD path has a chain for the user's own rules; Podman's has none
        path = "the FORWARD path (DOCKER-USER) does" if runtime == "docker" else \
            "the FORWARD path does"
        out.notes.append("the port is DNATed to a container: INPUT rules (and ufw) do not apply "
                         f"to it; {path}")
    fam = "ip6" if sock.family == "ipv6" and not sock.dual_stack else "ip"
    if forwarded or (proxy and not reservation):
        host_port = proxy.get("host_port") or sock.port if proxy else sock.port
        cport = forwarded["port"] if forwarded else proxy["port"]
        name = (container or {}).get("name")
        out.close.append(f"publish it on loopback only: {runtime} run -p 127.0.0.1:{host_port}:"
                         f"{cport} ... (instead of -p {host_port}:{cport})")
        if runtime == "docker":
            out.close.append(f"iptables -I DOCKER-USER -p {sock.transport} -m conntrack "
                             f"--ctorigdstport {host_port} ! -s 127.0.0.0/8 -j DROP")
        else:
            # mangle PREROUTING runs before the runtime's DNAT: the host port is still there
            iptables = "ip6tables" if fam == "ip6" else "iptables"
            out.close.append(f"{iptables} -t mangle -I PREROUTING ! -i lo -p {sock.transport} "
                             f"--dport {host_port} -j DROP")
        if name:
            out.close.append(f"{runtime} stop {name}")
        return out
    if proc is not None and proc.name:
        loop = "::1" if sock.family == "ipv6" and not sock.dual_stack else "127.0.0.1"
        out.close.append(f"bind {proc.name} to {loop} in its configuration if only this machine "
                         "needs it")
    out.close.append(_filter_rule(look, sock.transport, sock.port, fam))
    if proc is not None and proc.unit and proc.unit.endswith(".service"):
        out.close.append(f"systemctl disable --now {proc.unit}")
    if proc is not None and proc.container and proc.container.get("name"):
        rt = proc.container.get("runtime", "docker")
        out.close.append(f"{rt} stop {proc.container['name']}")
    return out


def _filter_rule(look, transport: str, port: int, fam: str) -> str:
    """An nft rule dropping the port for everyone but lo, in the table that already filters
    input when there is one."""
    rs = look.assessor.ruleset
    for chain in rs.chains.values():
        if chain.origin == "nftables" and chain.hook == "input" and chain.type == "filter" \
                and chain.family in ("inet", "ip", "ip6"):
            return (f"nft insert rule {chain.family} {chain.table} {chain.name} iifname != lo "
                    f"{transport} dport {port} drop")
    iptables = "ip6tables" if fam == "ip6" else "iptables"
    if any(c.origin != "nftables" and c.hook == "input" and c.rules for c in rs.chains.values()):
        return f"{iptables} -I INPUT ! -i lo -p {transport} --dport {port} -j DROP"
    return (f"nft add table inet filter; nft add chain inet filter input '{{ type filter hook "
            f"input priority 0; }}'; nft add rule inet filter input iifname != lo {transport} "
            f"dport {port} drop")
