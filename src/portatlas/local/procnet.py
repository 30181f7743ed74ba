"""Linux fallback: the socket tables as text in /proc/net/{tcp,tcp6,udp,udp6}.

Used when netlink sock_diag is unavailable (some sandboxes forbid it). /proc/net is the view of
the reading process's network namespace, like netlink. What it cannot say: whether an IPv6
socket is IPv6-only (v6only stays None) and which device a socket is bound to.
"""

from __future__ import annotations

import struct

import _socket

from portatlas.local.model import Socket
from portatlas.local.netlink import STATE_NAMES, TCP_CLOSE, TCP_LISTEN

_FILES = {("tcp", "ipv4"): "tcp", ("tcp", "ipv6"): "tcp6", ("udp", "ipv4"): "udp",
          ("udp", "ipv6"): "udp6"}
_WORD = struct.Struct("=I")
_WORDS = struct.Struct("=IIII")


def _address(text: str, v6: bool) -> bytes:
    # The kernel prints each 32-bit word of the address as a native-endian hex number.
    if v6:
        return _WORDS.pack(int(text[0:8], 16), int(text[8:16], 16), int(text[16:24], 16),
                           int(text[24:32], 16))
    return _WORD.pack(int(text, 16))


def read(transports: tuple[str, ...] = ("tcp", "udp"), families: tuple[str, ...] = ("ipv4", "ipv6"),
         *, everything: bool = False, ports: tuple[int, int] | None = None,
         root: str = "/proc/net") -> list[Socket]:
    out: list[Socket] = []
    for transport in transports:
        for family in families:
            path = f"{root}/{_FILES[transport, family]}"
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode("ascii", "replace").splitlines()[1:]
            except FileNotFoundError:
                continue  # IPv6 disabled: no tcp6/udp6 file
            v6 = family == "ipv6"
            af = _socket.AF_INET6 if v6 else _socket.AF_INET
            wanted = (TCP_LISTEN,) if transport == "tcp" else (TCP_CLOSE,)
            names: dict[str, str] = {}
            for line in lines:
                fields = line.split()
                if len(fields) < 10:
                    continue
                state = int(fields[3], 16)
                if not everything and state not in wanted:
                    continue
                local_hex, _, lport = fields[1].partition(":")
                port = int(lport, 16)
                if ports is not None and not ports[0] <= port <= ports[1]:
                    continue
                local = names.get(local_hex)
                if local is None:
                    local = names[local_hex] = _socket.inet_ntop(af, _address(local_hex, v6))
                remote_hex, _, rport_hex = fields[2].partition(":")
                rport = int(rport_hex, 16)
                remote = None
                if not (rport == 0 and state in (TCP_LISTEN, TCP_CLOSE)):
                    remote = names.get(remote_hex)
                    if remote is None:
                        remote = names[remote_hex] = _socket.inet_ntop(af, _address(remote_hex, v6))
                else:
                    rport = None
                out.append(Socket(transport, family, local, port, STATE_NAMES.get(state, str(state)),
                                  remote_address=remote, remote_port=rport, v6only=None,
                                  inode=int(fields[9]), uid=int(fields[7])))
    return out
