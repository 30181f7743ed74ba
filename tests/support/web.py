"""Helpers for the web UI tests: an in-process app, a real `portatlas serve` in a namespace,
and moving the calling thread into a namespace (so a browser it starts runs there too)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def thread_in_netns(name: str) -> Iterator[None]:
    """Move this thread into namespace `name` for the block, then back. Processes started
    meanwhile (a browser, its driver) are born inside it and stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def make_app(db: Path, feedback_db: Path, **settings):
    """The ASGI app on a test database; settings are WebConfig attributes."""
    from portatlas.web import WebConfig, create_app

    allow_check = settings.pop("allow_check", None)
    config = WebConfig(db, feedback_db=feedback_db, allow_check=allow_check)
    for key, value in settings.items():
        setattr(config, key, value)
    return create_app(config)


def client(app, address: str = "127.0.0.1"):
    """A synchronous httpx client talking to the app in-process as if from `address`."""
    import httpx

    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return _SyncASGI(transport)


class _SyncASGI:
    """httpx's ASGI transport is async-only; this drives it from plain test code."""

    def __init__(self, transport) -> None:
        import asyncio

        import httpx

        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8357")

    def request(self, method: str, url: str, **kw):
        return self.loop.run_until_complete(self.client.request(method, url, **kw))

    def get(self, url: str, **kw):
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw):
        return self.request("POST", url, **kw)

    @property
    def cookies(self):
        return self.client.cookies

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def start_server(ns, db: Path, feedback_db: Path, *args: str, port: int = 8357):
    """`python -m portatlas serve --json` inside namespace `ns`; returns (process, announcement)."""
    env = dict(os.environ, PORTATLAS_DB=str(db), NO_COLOR="1")
    proc = ns.popen([sys.executable, "-m", "portatlas", "serve", "--port", str(port), "--json",
                     "--feedback-db", str(feedback_db), *args], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("portatlas serve did not start: " + proc.stderr.read()[:2000])
    return proc, json.loads(line)


def form_token(html: str) -> str:
    """The CSRF token of the feedback form in a port page."""
    import re

    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form token in the page"
    return found.group(1)
