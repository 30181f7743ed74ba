"""Issue 12, failures 1, 4, 6 and 9 for `portatlas serve`: memory bounded under distinct
requests, slow and idle connections closed with a connection cap that cannot lock out real
clients, one Host per request, and --allow-check refusing ranges."""

from __future__ import annotations

import os
import random
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from support.netns import Netns, available
from support.web import client, make_app, thread_in_netns


@pytest.fixture(scope="module")
def small_cache_app(atlas_db, tmp_path_factory):
    app = make_app(atlas_db, tmp_path_factory.mktemp("fb") / "fb.sqlite3",
                   page_cache_bytes=4 << 20, page_cache_item=1 << 20)
    web = client(app)
    yield app, web
    web.close()


def _rss_mib() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


# --- failure 1: memory ---------------------------------------------------------------------------
def test_cache_is_bounded_by_bytes_under_distinct_ranges(small_cache_app):
    app, web = small_cache_app
    state = app.web.state
    rng = random.Random(12)
    for _ in range(3):  # warm up: the port space, templates
        assert web.get("/api/ranges/0-16383").status_code == 200
    before = _rss_mib()
    for i in range(150):
        lo = rng.randint(0, 49000)
        hi = lo + rng.randint(8000, 16000)
        path = f"/api/ranges/{lo}-{hi}" if i % 2 else f"/ranges/{lo}-{hi}"
        assert web.get(path).status_code == 200, path
    grown = _rss_mib() - before
    # before the fix every distinct answer stayed (over 100 MiB for these; about 6 after)
    assert grown < 40, f"memory grew {grown:.0f} MiB over 150 distinct range requests"
    assert state.pages.bytes <= 4 << 20


def test_wide_range_answers_are_paged(small_cache_app):
    _, web = small_cache_app
    first = web.get("/api/ranges/0-16383").json()
    page = first["page"]
    assert page["offset"] == 0 and page["limit"] == 500 and page["total"] > 1000
    assert len(first["entries"]) == 500 and len(first["statuses"]) == 16384
    nxt = web.get(page["next"]).json()
    assert nxt["page"]["offset"] == 500
    assert nxt["entries"][0] != first["entries"][0]
    assert web.get("/api/ranges/0-16383?limit=5000").status_code == 400
    assert web.get("/api/ranges/6000-6063?offset=999").status_code == 400
    html = web.get("/ranges/0-16383")
    assert html.status_code == 200 and "page 1 of" in html.text and len(html.content) < 400_000
    assert 'href="/ranges/0-16383?page=2"' in html.text
    assert web.get("/ranges/0-16383?page=2").status_code == 200
    assert web.get("/ranges/0-16383?page=100000").status_code == 400
    assert web.get("/ranges/6000-6063?page=x").status_code == 400


def test_byte_lru_keeps_within_budget():
    from portatlas.web.state import ByteLRU

    lru = ByteLRU(10_000, 4_000)
    for i in range(100):
        lru.put(i, b"x" * 1000)
        assert lru.bytes <= 10_000
    assert lru.get(99) is not None and lru.get(0) is None
    assert lru.put("big", b"x" * 5000) is False and lru.get("big") is None
    assert lru.put("unknown-size", {"a": 1}) is False


# --- failure 9: one Host --------------------------------------------------------------------------
def test_two_host_headers_are_refused(small_cache_app):
    _, web = small_cache_app
    r = web.get("/healthz", headers=[("Host", "127.0.0.1:8357"), ("Host", "evil.example")])
    assert r.status_code == 400 and b"Host" in r.content
    assert web.get("/healthz").status_code == 200


# --- failure 6: --allow-check takes single hosts -----------------------------------------------
@pytest.mark.parametrize("spec", ["198.18.1.1-2", "198.18.1.1-198.18.1.2", "198.18.1-2.1",
                                  "2001:db8::1-2", "198.18.1.*", "-x.example"])
def test_allow_check_refuses_ranges(atlas_db, tmp_path, spec):
    from portatlas.errors import UsageError

    with pytest.raises(UsageError, match="single host"):
        make_app(atlas_db, tmp_path / "fb.sqlite3", allow_check=[spec])


def test_allow_check_range_is_a_usage_error_on_the_command_line(cli, tmp_path):
    result = cli("serve", "--port", "0", "--allow-check", "198.18.1.1-2", "--feedback-db",
                 str(tmp_path / "fb.sqlite3"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("portatlas: error: --allow-check takes single host")
    assert len(result.stderr.splitlines()) == 1


# --- a real server in a namespace: failures 4 and 9 ------------------------------------------------
@pytest.fixture()
def ns():
    if not available():
        pytest.skip("needs root and ip netns")
    with Netns("pa12") as n:
        yield n


def _serve(ns, atlas_db, tmp_path, *args, nofile: int | None = None):
    import json

    env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = ns.popen([sys.executable, "-m", "portatlas", "serve", "--port", "8357", "--json",
                     "--feedback-db", str(tmp_path / "fb.sqlite3"), *args], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()[:2000]
    return proc, json.loads(line)


def _exchange(raw: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", 8357), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def _status(raw: bytes) -> int:
    reply = _exchange(raw)
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1


def test_host_header_and_request_target_checks(ns, atlas_db, tmp_path):
    proc, _ = _serve(ns, atlas_db, tmp_path)
    with thread_in_netns(ns.name):
        good = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8357\r\nConnection: close\r\n\r\n"
        assert _status(good) == 200
        # two Host headers, the good one first
        assert _status(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8357\r\nHost: evil.example\r\n"
                       b"Connection: close\r\n\r\n") == 400
        # no Host at all in HTTP/1.1
        assert _status(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n") == 400
        # absolute-form naming another host, with a good Host header
        assert _status(b"GET http://evil.example/healthz HTTP/1.1\r\nHost: 127.0.0.1:8357\r\n"
                       b"Connection: close\r\n\r\n") in (400, 421)
        assert _status(b"GET http://evil.example/healthz HTTP/1.1\r\nHost: evil.example\r\n"
                       b"Connection: close\r\n\r\n") == 421
        # absolute-form naming this server is fine
        assert _status(b"GET http://127.0.0.1:8357/healthz HTTP/1.1\r\nHost: 127.0.0.1:8357\r\n"
                       b"Connection: close\r\n\r\n") == 200
    assert proc.poll() is None


def test_half_sent_requests_cannot_lock_out_new_clients(ns, atlas_db, tmp_path):
    """1,100 half-sent requests against a server limited to 256 descriptors: every new
    client that sends a whole request is still answered, and the cap is logged."""
    proc, _ = _serve(ns, atlas_db, tmp_path, "--request-timeout", "30", nofile=256)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held: list[socket.socket] = []
    try:
        with thread_in_netns(ns.name):
            for _ in range(1100):
                sock = socket.socket()
                sock.settimeout(5)
                try:
                    sock.connect(("127.0.0.1", 8357))
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8357\r\nX-Slow: ")
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
            time.sleep(1.5)  # let the server accept what the kernel queued
            good = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8357\r\nConnection: close\r\n\r\n"
            answered = 0
            for _ in range(20):
                try:
                    answered += _status(good) == 200
                except OSError:
                    pass
            assert answered == 20, f"only {answered} of 20 new clients were answered"
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert proc.poll() is None
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert "connection limit reached" in err


def test_silent_and_slow_connections_are_closed(ns, atlas_db, tmp_path):
    proc, _ = _serve(ns, atlas_db, tmp_path, "--request-timeout", "1")
    with thread_in_netns(ns.name):
        silent = socket.create_connection(("127.0.0.1", 8357), timeout=10)
        slow = socket.create_connection(("127.0.0.1", 8357), timeout=10)
        started = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8357\r\n")
        for sock in (silent, slow):
            try:
                assert sock.recv(100) == b""  # closed by the server, no answer
            except ConnectionResetError:
                pass
            sock.close()
        assert time.monotonic() - started < 6
        good = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8357\r\nConnection: close\r\n\r\n"
        assert _status(good) == 200
    assert proc.poll() is None


@pytest.mark.parametrize("args", [["--request-timeout", "nan"], ["--request-timeout", "0"],
                                  ["--max-connections", "3"], ["--max-connections", "x"]])
def test_serve_limits_options_are_checked(cli, tmp_path, args):
    result = cli("serve", "--port", "0", "--feedback-db", str(tmp_path / "fb.sqlite3"), *args)
    assert result.returncode == 2 and result.stderr.startswith("portatlas: error: ")


def test_connection_cap_stays_below_the_descriptor_limit():
    from portatlas.web.protocol import connection_cap

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert connection_cap() == 192 and connection_cap(100) == 100
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert connection_cap() == 896
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
