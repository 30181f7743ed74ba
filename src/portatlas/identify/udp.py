"""The UDP side of the driver: datagrams out, replies in, silence interpreted honestly.

UDP has no handshake, so a port is only known open when something answers. Every UDP probe
sends its first datagram at once, each from its own connected socket (replies cannot be
confused between probes, and an ICMP port-unreachable surfaces as ECONNREFUSED); a probe
with no reply re-sends once at half its time. The first confident verdict wins.

  a reply recognised        -> identified
  a reply nobody recognised -> open-unidentified (with the bytes)
  ICMP port unreachable     -> closed
  nothing at all            -> filtered ("open|filtered": UDP cannot tell them apart)
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from portatlas.identify import registry
from portatlas.identify.base import (CLOSED, FILTERED, TENTATIVE, UNIDENTIFIED, NoMatch, Probe,
                                     ProbeContext, Send, Verdict, escape_evidence)
from portatlas.identify.observations import MAX_SENDS, Observations
from portatlas.identify.options import Options
from portatlas.vocab import Behaviour

DATAGRAM_MAX = 65535
MAX_DATAGRAMS = 32  # replies read per probe (a flood of datagrams is cut here)


class UDPRun:
    def __init__(self, host: str, port: int, opts: Options, registered: tuple[str, ...],
                 deadline: float) -> None:
        self.host, self.port, self.opts = host, port, opts
        self.registered = registered
        self.deadline = deadline
        self.obs = Observations()
        self.refused = 0
        self.best: Verdict | None = None

    async def run(self) -> Verdict:
        probes = registry.ordered("udp", self.port, self.registered, self.opts.only)
        if not probes:
            return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0,
                           reason="no UDP probes available")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        tasks = {asyncio.ensure_future(self._attempt(cls, family, address)): cls
                 for cls in probes}
        try:
            while tasks:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(tasks, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for task in done:
                    tasks.pop(task)
                    verdict = task.result()
                    if verdict is None:
                        continue
                    if verdict.confidence >= TENTATIVE:
                        return verdict
                    if self.best is None or verdict.confidence > self.best.confidence:
                        self.best = verdict
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return self.best or self._no_answer(len(probes))

    def partial(self) -> Verdict:
        verdict = self.best or self._no_answer(0)
        verdict.reason = "interrupted; so far: " + verdict.reason
        return verdict

    def _no_answer(self, count: int) -> Verdict:
        if self.obs.bytes_total:
            return Verdict(None, outcome=UNIDENTIFIED, confidence=0.0,
                           evidence=escape_evidence(self.obs.first_bytes),
                           reason="answers with datagrams no probe recognised",
                           extra={"behaviour": Behaviour.UNRECOGNISED_REPLY,
                                  "bytes_seen": self.obs.bytes_total,
                                  "probes": dict(self.obs.tried)})
        if self.refused:
            return Verdict(None, outcome=CLOSED, confidence=0.9,
                           reason="ICMP port unreachable (nothing listens)")
        return Verdict(None, outcome=FILTERED, confidence=0.5,
                       reason=f"no reply to {count or 'the'} UDP probes: open|filtered "
                              "(UDP cannot tell a silent service from a dropping firewall)",
                       extra={"udp_state": "open|filtered", "probes": dict(self.obs.tried)})

    async def _attempt(self, cls: type[Probe], family: int, address: Any) -> Verdict | None:
        loop = asyncio.get_running_loop()
        ctx = ProbeContext(host=self.host, port=self.port, transport="udp",
                           server_name=self.opts.server_name, registered=self.registered)
        probe = cls(ctx)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            step = probe.start()
            if not isinstance(step, Send):
                return None
            sock.connect(address)
            first = step.data
            await loop.sock_sendall(sock, first)
            end = min(time.monotonic() + self.opts.probe_timeout, self.deadline)
            resend_at = time.monotonic() + self.opts.probe_timeout / 2
            sends, replies = 1, 0
            fallback_sent = False
            while True:
                now = time.monotonic()
                if now >= end:
                    step = probe.finish(b"")
                    if isinstance(step, Send) and not fallback_sent and now < self.deadline:
                        # the probe's fallback request after silence (e.g. SNMP v2c after
                        # an unanswered v3 discovery); allowed once, with its own time
                        fallback_sent = True
                        first = step.data
                        await loop.sock_sendall(sock, first)
                        end = min(now + self.opts.probe_timeout, self.deadline)
                        resend_at = now + self.opts.probe_timeout / 2
                        continue
                    break
                wait = end - now
                if replies == 0 and resend_at:
                    wait = min(wait, max(resend_at - now, 0.001))
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, DATAGRAM_MAX), wait)
                except (asyncio.TimeoutError, TimeoutError):
                    if replies == 0 and resend_at and time.monotonic() >= resend_at:
                        resend_at = 0.0  # one retransmission: datagrams get lost
                        await loop.sock_sendall(sock, first)
                    continue
                except ConnectionRefusedError:
                    self.refused += 1
                    self.obs.tried[cls.name] = "ICMP port unreachable"
                    return None
                replies += 1
                self.obs.received(data)
                self.obs.sample(cls.name, data)
                step = probe.feed(data)
                if isinstance(step, Send):
                    sends += 1
                    if sends > MAX_SENDS:
                        step = NoMatch("too many exchanges")
                        break
                    await loop.sock_sendall(sock, step.data)
                    continue
                if isinstance(step, (Verdict, NoMatch)) or replies >= MAX_DATAGRAMS:
                    break
            if isinstance(step, Verdict):
                return step
            reason = step.reason if isinstance(step, NoMatch) else "no decision"
            self.obs.tried[cls.name] = reason or ("no reply" if not replies else "no match")
            return None
        except asyncio.CancelledError:
            raise
        except ConnectionRefusedError:
            self.refused += 1
            return None
        except Exception as exc:  # a probe bug or a socket error ends this probe only
            self.obs.tried[cls.name] = f"error: {exc!r}"
            return None
        finally:
            sock.close()
