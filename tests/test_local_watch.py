"""`portatlas local --watch`: listeners appearing, changing hands and disappearing, live."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import jsonschema
import pytest

from support.netns import Netns
from test_local_helpers import SCHEMA, needs_netns, sock, start

pytestmark = [needs_netns, pytest.mark.netns]

EVENT_SCHEMA = {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/watch_event"}


class Lines:
    """A process's stdout lines, readable with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def until(self, match, timeout: float = 15) -> list[str]:
        """Lines up to and including the first for which match(line) is true."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if match(line):
                return seen
        raise AssertionError(f"no matching line within {timeout} s; got {seen!r}")


@pytest.fixture()
def ns(atlas_db):
    with Netns("pawa") as ns:
        yield ns


def watch(ns: Netns, *args: str) -> tuple[subprocess.Popen, Lines]:
    proc = ns.popen([sys.executable, "-m", "portatlas", "local", "--watch", "--interval", "0.2",
                     "--count", "150", *args], stdout=subprocess.PIPE, text=True,
                    env=dict(os.environ, NO_COLOR="1"))
    return proc, Lines(proc)


def test_json_events_appear_change_disappear(ns):
    proc, lines = watch(ns, "--json", "-t")
    first = json.loads(lines.until(lambda line: True)[0])
    jsonschema.validate(first, EVENT_SCHEMA)
    assert first["event"] == "snapshot" and first["sockets"] == []

    listener, pids = start(ns, {"sockets": [sock("tcp", 4, "0.0.0.0", 7501)], "fork": True})
    appeared = json.loads(lines.until(lambda line: '"appeared"' in line)[-1])
    jsonschema.validate(appeared, EVENT_SCHEMA)
    assert appeared["socket"]["port"] == 7501
    assert sorted(p["pid"] for p in appeared["socket"]["processes"]) == sorted(pids)
    assert appeared["socket"]["flags"] is not None  # classified like the listing

    os.kill(pids[1], signal.SIGKILL)  # the child goes: the socket stays, held by one process
    changed = json.loads(lines.until(lambda line: '"changed"' in line)[-1])
    assert [p["pid"] for p in changed["socket"]["processes"]] == [pids[0]]

    listener.kill()
    listener.wait(timeout=5)
    gone = json.loads(lines.until(lambda line: '"disappeared"' in line)[-1])
    assert gone["socket"]["port"] == 7501
    proc.send_signal(signal.SIGINT)  # how a user ends it: a clean exit
    assert proc.wait(timeout=10) == 0


def test_text_watch_prints_plus_and_minus_lines(ns):
    proc, lines = watch(ns, "-u")
    head = lines.until(lambda line: "watching every 0.2 s" in line)
    assert head[0].startswith("0 listening sockets")
    listener, pids = start(ns, {"sockets": [sock("udp", 6, "::", 7502, v6only=1)]})
    plus = lines.until(lambda line: "  +  " in line)[-1]
    assert "udp  [::]:7502  UNCONN  wildcard" in plus and f"pid {pids[0]} python" in plus
    listener.kill()
    listener.wait(timeout=5)
    minus = lines.until(lambda line: "  -  " in line)[-1]
    assert "[::]:7502" in minus
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_count_bounds_the_watch(ns):
    r = ns.portatlas("local", "--watch", "--interval", "0.1", "--count", "3", "--json", timeout=30)
    assert r.returncode == 0
    assert [json.loads(line)["event"] for line in r.stdout.splitlines()] == ["snapshot"]
