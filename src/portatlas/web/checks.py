"""Remote checks from the browser, for an explicit allow-list only.

Off unless `portatlas serve --allow-check TARGETS` names hosts. Then a check may only target
one of those hosts, and only if every address the name resolves to *now* is one of the
addresses it resolved to at start (an exact match, so a name re-pointed at another machine,
or at this one, is refused: no open proxy, no scanner, no SSRF). At most check_ports_max TCP
ports per request, a few requests a minute per client, two checks at a time per process.
The probing itself is portatlas.scan's (the engine behind `portatlas check`).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import deque
from typing import Any
import socket

from portatlas.errors import UsageError
from portatlas.web.feedback import RateLimited
from portatlas.web.security import Forbidden
from portatlas.scan.targets import parse_targets
from portatlas.scan.ports import parse_port_spec

# Short timeouts: a person is waiting, and a silent port should not hold a worker for long.
TIMING = {"initial_timeout": 1.0, "min_timeout": 0.1, "max_timeout": 1.5, "base_tries": 2,
          "max_retries": 2, "max_concurrency": 64, "initial_window": 16}
CONCURRENT_CHECKS = 2


def _literal(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_host_name(text: str) -> bool:
    """A DNS host name (RFC 1123 labels, the last one with a letter, as every top-level
    domain has): '198.18.1.1-2' is an address range, not a name."""
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return any(c.isalpha() for c in labels[-1])


def _resolve(spec: str) -> list[str]:
    return [h.address for h in parse_targets([spec], max_hosts=64)]


class Checker:
    def __init__(self, targets: list[str], *, max_ports: int = 16, per_minute: int = 10) -> None:
        self.max_ports = max_ports
        self.per_minute = per_minute
        self.targets: list[dict[str, Any]] = []
        self.allowed: set[str] = set()
        self.names: dict[str, str] = {}
        for spec in targets:
            spec = spec.strip()
            if not spec or spec.startswith("@") or "/" in spec or " " in spec:
                raise UsageError(f"--allow-check takes single host names or addresses, not {spec!r}")
            literal = _literal(spec.strip("[]"))
            if literal is None and not _is_host_name(spec):
                # '198.18.1.1-2' or '2001:db8::1-2' would expand to several addresses
                raise UsageError(f"--allow-check takes single host names or addresses, not "
                                 f"{spec!r} (no networks, ranges or @file)")
            addresses = [literal] if literal else _resolve(spec)
            self.targets.append({"name": spec, "addresses": addresses})
            self.allowed.update(addresses)
            self.names[(literal or spec).lower()] = spec
        self._recent: dict[str, deque[float]] = {}
        self._running = None  # an asyncio.Semaphore, made inside the event loop

    # what a request may ask for ------------------------------------------------------------
    def _host(self, host: Any) -> tuple[str, list[str]]:
        if not isinstance(host, str) or not host.strip():
            raise UsageError("give the host to check")
        host = host.strip()
        literal = _literal(host.strip("[]"))
        key = (literal or host).lower()
        if key not in self.names and (literal is None or literal not in self.allowed):
            raise Forbidden(f"{host[:100]!r} is not on this server's --allow-check list")
        addresses = [literal] if literal else _resolve(self.names[key])
        stray = [a for a in addresses if a not in self.allowed]
        if stray:
            raise Forbidden(f"{host} now resolves to {stray[0]}, which is not one of the "
                            "addresses allowed at start; refusing")
        return host, addresses

    def _ports(self, ports: Any) -> list[int]:
        if isinstance(ports, str):
            if len(ports) > 200:
                raise UsageError("port list too long")
            ports = parse_port_spec(ports)
        if not isinstance(ports, list) or not ports:
            raise UsageError("give 1 to %d ports" % self.max_ports)
        out = []
        for p in ports:
            if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 65535:
                raise UsageError("ports must be numbers from 1 to 65535")
            out.append(p)
        out = sorted(set(out))
        if len(out) > self.max_ports:
            raise UsageError(f"at most {self.max_ports} ports per check (got {len(out)})")
        return out

    def _limit(self, client: str) -> None:
        now = time.monotonic()
        recent = self._recent.setdefault(client, deque())
        while recent and recent[0] < now - 60:
            recent.popleft()
        if len(recent) >= self.per_minute:
            raise RateLimited("too many checks from you in the last minute", 60)
        recent.append(now)
        if len(self._recent) > 10000:
            self._recent = {k: v for k, v in self._recent.items() if v}

    # running -------------------------------------------------------------------------------
    async def run_json(self, data: dict[str, Any], client: str, atlas: Any = None) -> dict[str, Any]:
        unknown = set(data) - {"host", "ports", "transport"}
        if unknown:
            raise UsageError(f"unknown field {sorted(unknown)[0]!r}")
        if data.get("transport", "tcp") != "tcp":
            raise UsageError("only tcp checks are offered here")
        return await self._run(data.get("host"), data.get("ports"), client, atlas)

    async def run_form(self, fields: dict[str, str], client: str, atlas: Any = None) -> dict[str, Any]:
        return await self._run(fields.get("host"), fields.get("ports", ""), client, atlas)

    async def _run(self, host: Any, ports: Any, client: str, atlas: Any) -> dict[str, Any]:
        import asyncio  # lazy: keeps `serve --help`, which imports this module, free of asyncio

        # optional: starlette is the web extra, and cli.serve imports this module at its top
        from starlette.concurrency import run_in_threadpool

        name, addresses = self._host(host)
        wanted = self._ports(ports)
        self._limit(client)
        if self._running is None:
            self._running = asyncio.Semaphore(CONCURRENT_CHECKS)
        async with self._running:
            return await run_in_threadpool(self._scan, name, addresses, wanted, atlas)

    def _scan(self, name: str, addresses: list[str], ports: list[int], atlas: Any) -> dict[str, Any]:
        # lazy: the scan engine and the probes load at the first check (off without --allow-check)
        from portatlas.scan.output import report_dict
        from portatlas.scan.scanner import Scanner, attach_registered
        from portatlas.scan.targets import Host
        from portatlas.scan.timing import TimingOptions

        from portatlas.identify import scan_hook  # lazy: probes only at a check, as above
        from portatlas.identify.options import Options

        hosts = [Host(name, a, socket.AF_INET6 if ":" in a else socket.AF_INET) for a in addresses]
        # the same identification as `portatlas check` (modules + nmap's probes), a bit
        # shorter per port: a browser is waiting
        identify = scan_hook(Options(timeout=4.0, probe_timeout=1.0, atlas=atlas))
        scanner = Scanner(hosts, tcp_ports=ports, udp_ports=[], timing=TimingOptions(**TIMING),
                          workers=1, detect_accept_all=False, command="check",
                          argv=[name, ",".join(map(str, ports))], identify=identify)
        report = scanner.run()
        if atlas is not None:
            attach_registered(report.hosts, atlas)
        scan = report_dict(report, show_all=True)  # every port listed, none collapsed
        results = [{"address": host["address"], **port} for host in scan["hosts"]
                   for port in host["ports"]]
        return {"schema": "portatlas.web.check/1", "host": name, "ports": ports,
                "results": results, "scan": scan}
