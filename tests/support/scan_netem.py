"""Delay and loss for namespace tests, for kernels without the netem qdisc.

`tc qdisc add dev X root netem delay 50ms loss 1%` needs sch_netem, which this CI kernel is
built without. The same effect on a target namespace's outgoing packets comes from netfilter:
an iptables rule drops a random 1% (statistic match) and hands the rest to NFQUEUE, where
this small program (nfnetlink_queue spoken over a raw netlink socket, no library) holds every
packet for the delay and then accepts it. One direction delayed by D is what netem on one
interface does too: the round trip grows by D.

    with Netem(target_ns, ifname, delay=0.05, loss=0.01):   # context manager, for tests
        ...
    python scan_netem.py --queue 7 --delay 0.05              # the delayer alone (in the netns)
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_HDR = struct.Struct("=IHHII")


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\x00" * (-len(raw) % 4)


def _message(msg_type: int, queue: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return _HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, NLM_F_REQUEST,
                     seq, 0) + body


def _packet_ids(buf: bytes):
    offset = 0
    while offset + _HDR.size <= len(buf):
        length, msg_type, _flags, _seq, _pid = _HDR.unpack_from(buf, offset)
        if length < _HDR.size:
            break
        if msg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET):
            pos = offset + _HDR.size + 4  # after nfgenmsg
            end = offset + length
            while pos + 4 <= end:
                alen, akind = struct.unpack_from("=HH", buf, pos)
                if alen < 4:
                    break
                if (akind & 0x7FFF) == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", buf, pos + 4)[0]
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3


def serve(queue: int, delay: float, max_seconds: float = 3600) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: never drop on bursts
    sock.bind((0, 0))
    sock.send(_message(NFQNL_MSG_CONFIG, queue,
                       _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)), 1))
    sock.send(_message(NFQNL_MSG_CONFIG, queue,
                       _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
                       + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536)), 2))
    print("ready", flush=True)
    held: deque[tuple[float, int]] = deque()
    end = time.monotonic() + max_seconds  # bounded, like every loop in the tests
    seq = 10
    while time.monotonic() < end:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, pid = held.popleft()
            seq += 1
            sock.send(_message(NFQNL_MSG_VERDICT, queue,
                               _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid)), seq))
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        for _ in range(256):
            try:
                buf = sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS after a burst: the kernel dropped some; carry on
                continue
            arrived = time.monotonic()
            for pid in _packet_ids(buf):
                held.append((arrived + delay, pid))


class Netem:
    """Delay (seconds) and random loss (0..1) on packets a namespace sends out of `ifname`."""

    _queues = iter(range(100, 60000))

    def __init__(self, ns, ifname: str, *, delay: float = 0.05, loss: float = 0.01,
                 v6: bool = True) -> None:
        self.ns = ns
        self.ifname = ifname
        self.delay = delay
        self.loss = loss
        self.v6 = v6
        self.queue = next(self._queues)
        self.proc = None

    def __enter__(self) -> "Netem":
        self.proc = self.ns.popen([sys.executable, str(Path(__file__).resolve()), "--queue",
                                   str(self.queue), "--delay", str(self.delay)],
                                  stdout=subprocess.PIPE, text=True)
        line = ""
        ready_by = time.monotonic() + 10
        while time.monotonic() < ready_by and not line:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("the NFQUEUE delayer did not start")
        tools = ["iptables"] + (["ip6tables"] if self.v6 else [])
        for tool in tools:
            if self.loss > 0:
                self.ns.run([tool, "-w", "-A", "OUTPUT", "-o", self.ifname, "-m", "statistic",
                             "--mode", "random", "--probability", str(self.loss), "-j", "DROP"])
            self.ns.run([tool, "-w", "-A", "OUTPUT", "-o", self.ifname, "-j", "NFQUEUE",
                         "--queue-num", str(self.queue)])
        return self

    def __exit__(self, *exc) -> None:
        for tool in ["iptables"] + (["ip6tables"] if self.v6 else []):
            self.ns.run([tool, "-w", "-F", "OUTPUT"], check=False)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay", type=float, required=True)
    ap.add_argument("--max-seconds", type=float, default=3600)
    a = ap.parse_args()
    os.nice(-5) if os.geteuid() == 0 else None
    serve(a.queue, a.delay, a.max_seconds)
