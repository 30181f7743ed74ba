"""The I/O layer: run nft / iptables-save / ip, read /proc/sys, and build the Ruleset and Machine
the evaluator works on. Everything that could not be read is said in Ruleset.sources/problems;
when nothing could be read the caller gets a reason to answer "unknown".
"""

from __future__ import annotations

import os
import re

from portatlas.exposure import iptsave, machine as machine_mod, nftjson
from portatlas.exposure.ruleset import IPTABLES_LEGACY, IPTABLES_NFT, NFTABLES, Ruleset

TIMEOUT = 10.0
MAX_OUTPUT = 64 * 1024 * 1024  # a ruleset bigger than this is not read (never an unbounded read)
IPT_TABLES = ("raw", "mangle", "nat", "filter", "security")


_INCOMPATIBLE = re.compile(r"^# Table `([^']+)' (?:is incompatible|contains incompatible)", re.M)


class Unreadable(Exception):
    """The packet filter could not be read at all (the reason is the message)."""


# every command a look runs: started together (start_all), so that their run times overlap
COMMANDS = (("iptables-nft-save",), ("iptables-legacy-save",), ("ip6tables-nft-save",),
            ("ip6tables-legacy-save",), ("nft", "-j", "list", "ruleset"), ("ip", "-j", "addr", "show"),
            ("ip", "-j", "-4", "route", "show"), ("ip", "-j", "-6", "route", "show"))
_started: dict[tuple[str, ...], object] = {}


def start_all() -> None:
    """Start every command of a look at once; _run then collects their output."""
    for argv in COMMANDS:
        if argv not in _started:
            _started[argv] = _start(list(argv))


def stop_all() -> None:
    """End what start_all started and nobody collected."""
    while _started:
        _argv, proc = _started.popitem()
        if not isinstance(proc, tuple):   # a process (a tuple is an answer known without one)
            proc.kill()
            proc.communicate()


# The legacy backends' tables of this network namespace, as the kernel lists them: an empty
# (or absent: module not loaded) list means iptables-legacy-save would print nothing, so it is
# not run (two processes fewer on most machines today, where the nft backend is the default).
_LEGACY_TABLES = {"iptables-legacy-save": "/proc/net/ip_tables_names",
                  "ip6tables-legacy-save": "/proc/net/ip6_tables_names"}


def _no_legacy_tables(command: str) -> bool:
    """True when the kernel says the legacy backend has no table (False when it cannot say,
    e.g. without root: then the command runs and answers for itself)."""
    names = _LEGACY_TABLES.get(command)
    if names is None:
        return False
    try:
        with open(names, "rb") as f:
            return not f.read(4096).strip()
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _which(name: str) -> str | None:
    """The program's path: PATH first, then the sbin directories (not on every user's PATH).
    (shutil.which would do, but importing shutil loads three compression modules.)"""
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep) + ["/usr/sbin", "/sbin"]
    for d in dirs:
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    return None


def _start(argv: list[str]):
    # subprocess is imported here, when a look starts: importing exposure alone does not need it
    import subprocess
    if _no_legacy_tables(argv[0]):
        return 0, "", ""
    path = _which(argv[0])
    if path is None:
        return None, "", f"{argv[0]} is not installed"
    try:
        return subprocess.Popen([path, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
    except OSError as exc:
        return None, "", f"{argv[0]}: {exc.strerror or exc}"


def _run(argv: list[str]) -> tuple[int | None, str, str]:
    """(exit code or None when the program is missing, stdout, stderr)."""
    proc = _started.pop(tuple(argv), None) or _start(argv)
    if isinstance(proc, tuple):
        return proc
    try:
        out, err = _collect(proc)
    except _TooMuch:
        return 1, "", f"{argv[0]} printed more than {MAX_OUTPUT >> 20} MiB"
    except TimeoutError:
        return 1, "", f"{argv[0]} did not answer within {TIMEOUT:g} s"
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


class _TooMuch(Exception):
    pass


def _collect(proc) -> tuple[bytes, bytes]:
    """A process's stdout and stderr, read as they come (both at once: a full stderr pipe must
    not stall the output), never more than MAX_OUTPUT bytes of either and never longer than
    TIMEOUT: then the process is killed (communicate() would read everything first)."""
    import selectors  # imported by subprocess already
    import subprocess
    import time
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sizes = {out_fd: 0, err_fd: 0}
    deadline = time.monotonic() + TIMEOUT
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(out_fd, selectors.EVENT_READ)
            sel.register(err_fd, selectors.EVENT_READ)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                for key, _events in sel.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        sel.unregister(key.fd)
                        continue
                    sizes[key.fd] += len(data)
                    if sizes[key.fd] > MAX_OUTPUT:
                        raise _TooMuch
                    chunks[key.fd].append(data)
        try:
            proc.wait(max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:  # both pipes closed, but the process goes on
            raise TimeoutError from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def _denied(err: str) -> bool:
    low = err.lower()
    return "permission denied" in low or "operation not permitted" in low or "must be root" in low


def read_ruleset() -> Ruleset:
    """nftables (native tables), then iptables' tables from both backends. Raises Unreadable
    when no source could be read (not root, or no tool installed)."""
    rs = Ruleset()
    root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    # iptables-nft first: its tables are taken from its own text, and left out of nft's JSON
    nft_backed: set[tuple[str, str]] = set()
    texts: list[tuple[str, str, str]] = []
    for family, tool in (("ip", "iptables"), ("ip6", "ip6tables")):
        for origin, variant in ((IPTABLES_NFT, f"{tool}-nft-save"), (IPTABLES_LEGACY, f"{tool}-legacy-save")):
            code, out, err = _run([variant])
            if code is None and variant.endswith("-legacy-save"):
                continue
            if code is None:
                # an older iptables without the -nft/-legacy names: the plain tool, whose header
                # says which backend it is
                code, out, err = _run([f"{tool}-save"])
                if code is None:
                    rs.sources.append({"origin": origin, "command": f"{tool}-save",
                                       "status": "missing", "text": err})
                    continue
                _tool, backend = iptsave.detect(out)
                origin = IPTABLES_NFT if backend == "nf_tables" else IPTABLES_LEGACY
                variant = f"{tool}-save"
            if code != 0:
                status = "denied" if _denied(err) or not root else "failed"
                rs.sources.append({"origin": origin, "command": variant, "status": status,
                                   "text": err.strip().splitlines()[0] if err.strip() else f"exit {code}"})
                continue
            texts.append((origin, family, out))
            rs.sources.append({"origin": origin, "command": variant, "status": "ok", "text": ""})
    for origin, family, out in texts:
        try:
            iptsave.parse(out, origin, family, rs)
        except iptsave.IptablesParseError as exc:
            rs.problems.append(f"{origin} ({family}): {exc}")
            continue
        if origin == IPTABLES_NFT:
            # a table iptables-nft cannot show (native nft chains in it) is read from nft -j
            foreign = set(_INCOMPATIBLE.findall(out))
            for key in [k for k in rs.chains if k[0] == origin and k[1] == family
                        and k[2] in foreign]:
                del rs.chains[key]
            for line in out.splitlines():
                if line.startswith("*") and line[1:].strip() not in foreign:
                    nft_backed.add((family, line[1:].strip()))
    code, out, err = _run(["nft", "-j", "list", "ruleset"])
    if code is None:
        rs.sources.append({"origin": NFTABLES, "command": "nft -j list ruleset", "status": "missing",
                           "text": err})
    elif code != 0:
        status = "denied" if _denied(err) or not root else "failed"
        rs.sources.append({"origin": NFTABLES, "command": "nft -j list ruleset", "status": status,
                           "text": err.strip().splitlines()[0] if err.strip() else f"exit {code}"})
    else:
        try:
            nftjson.parse(out, skip=nft_backed, ruleset=rs)
            rs.sources.append({"origin": NFTABLES, "command": "nft -j list ruleset",
                               "status": "ok", "text": ""})
        except nftjson.NftParseError as exc:
            rs.sources.append({"origin": NFTABLES, "command": "nft -j list ruleset",
                               "status": "failed", "text": str(exc)})
    ok = [s for s in rs.sources if s["status"] == "ok"]
    nft_ok = any(s["origin"] == NFTABLES for s in ok)
    if not ok or (not nft_ok and not root):
        denied = [s for s in rs.sources if s["status"] == "denied"]
        if denied or not root:
            raise Unreadable("the packet filter can only be read as root (run with sudo to "
                             "evaluate exposure)")
        missing = ", ".join(s["command"] for s in rs.sources)
        raise Unreadable(f"no packet-filter tool could be run ({missing})")
    if not nft_ok:
        # without nft, native nftables tables would be unseen: only safe if the kernel has none
        rs.problems.append("nft is not installed: native nftables rules, if any, are not seen")
    return rs


def read_machine() -> machine_mod.Machine:
    code, out, err = _run(["ip", "-j", "addr", "show"])
    if code != 0:
        raise Unreadable(f"cannot list this machine's addresses (ip -j addr: {err.strip() or code})")
    interfaces = machine_mod.parse_ip_addr(out)
    routes = []
    for fam, flag in (("ipv4", "-4"), ("ipv6", "-6")):
        code, out, _err = _run(["ip", "-j", flag, "route", "show"])
        if code == 0 and out.strip():
            routes.extend(machine_mod.parse_ip_route(out, fam))
    forwarding = {"ipv4": _sysctl("net/ipv4/ip_forward") == "1",
                  "ipv6": _sysctl("net/ipv6/conf/all/forwarding") == "1"}
    return machine_mod.Machine(interfaces, routes=routes, forwarding=forwarding,
                               route_localnet=_sysctl("net/ipv4/conf/all/route_localnet") == "1")


def _sysctl(name: str) -> str | None:
    # bytes, decoded here: a text-mode open with encoding="ascii" would import a codec module
    try:
        with open(f"/proc/sys/{name}", "rb") as f:
            return f.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
