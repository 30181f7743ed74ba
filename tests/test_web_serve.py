"""`portatlas serve` as a user runs it: a real server process (uvicorn) in a private network
namespace, reached over that namespace's loopback."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading

import httpx
import pytest

from support.netns import Netns, available
from support.web import form_token, start_server, thread_in_netns

pytestmark = [pytest.mark.netns]


@pytest.fixture()
def ns():
    if not available():
        pytest.skip("needs root and ip netns")
    with Netns("serve") as n:
        yield n


def test_serve_prints_its_url_and_answers(ns, atlas_db, tmp_path):
    proc, info = start_server(ns, atlas_db, tmp_path / "fb.sqlite3")
    assert info["schema"] == "portatlas.serve/1"
    assert info["url"] == "http://127.0.0.1:8357/" and info["port"] == 8357
    assert info["workers"] == 1 and info["allow_check"] == []
    assert info["source"] == "IANA registry 2026-08-17 (xml)"
    with thread_in_netns(ns.name), httpx.Client(base_url=info["url"], timeout=10) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        page = c.get("/ports/103")
        assert page.status_code == 200 and "gppitnp" in page.text
        assert c.get("/api/ports/103").json()["entries"]["tcp"][0]["service"] == "gppitnp"
        # the server's own listener shows up live
        here = c.get("/api/ports/8357").json()["here"]
        assert here["listening"] is True
        assert any(p["pid"] for s in here["sockets"] for p in s["processes"])
        # DNS rebinding: another name pointing at 127.0.0.1 is refused
        assert c.get("/healthz", headers={"host": "rebind.attacker.example:8357"}).status_code == 421
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert proc.stderr.read() == ""


def test_on_this_machine_follows_listeners_as_they_come(ns, atlas_db, tmp_path):
    """Port pages are cached, the 'on this machine' part is not: a listener that appears is
    shown within a few seconds, with the process holding it."""
    import time

    proc, info = start_server(ns, atlas_db, tmp_path / "fb.sqlite3")
    with thread_in_netns(ns.name), httpx.Client(base_url=info["url"], timeout=10) as c:
        assert c.get("/api/ports/9009").json()["here"]["listening"] is False
        assert "Nothing listens on port 9009 here" in c.get("/ports/9009").text
        ns.popen([sys.executable, "-c", "import socket,time\ns=socket.socket()\n"
                  "s.bind(('127.0.0.1',9009)); s.listen(); time.sleep(60)"])
        ns.wait_for_tcp(9009)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            here = c.get("/api/ports/9009").json()["here"]
            if here["listening"]:
                break
            time.sleep(0.25)
        assert here["listening"] is True
        assert here["sockets"][0]["processes"][0]["name"].startswith("python")
        page = c.get("/ports/9009").text
        assert "127.0.0.1:9009" in page and "Nothing listens" not in page
    proc.terminate()


def test_text_announcement_and_port_zero(ns, atlas_db, tmp_path):
    import os

    env = dict(os.environ, PORTATLAS_DB=str(atlas_db), NO_COLOR="1")
    proc = ns.popen([sys.executable, "-m", "portatlas", "serve", "--port", "0", "--feedback-db",
                     str(tmp_path / "fb.sqlite3")], env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("portatlas: the atlas is at http://127.0.0.1:")
    port = int(line.split("127.0.0.1:")[1].split("/")[0])
    assert port != 0
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0


@pytest.mark.parametrize("args, message", [
    (["--port", "99999"], "out of range"),
    (["--port", "http"], "not a port number"),
    (["--workers", "0"], "--workers"),
    (["--allow-check", " , "], "--allow-check"),
    (["--bogus"], "unrecognized arguments"),
    (["--host", "no-such-host.invalid"], "cannot listen"),
])
def test_bad_options_are_one_line_errors(ns, atlas_db, tmp_path, args, message):
    result = ns.portatlas("serve", "--feedback-db", str(tmp_path / "fb.sqlite3"), *args,
                          env={"PORTATLAS_DB": str(atlas_db)}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("portatlas: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_port_in_use_and_unwritable_feedback_db(ns, atlas_db, tmp_path):
    proc, info = start_server(ns, atlas_db, tmp_path / "fb.sqlite3")
    second = ns.portatlas("serve", "--port", "8357", "--feedback-db", str(tmp_path / "fb2.sqlite3"),
                          env={"PORTATLAS_DB": str(atlas_db)}, timeout=60)
    assert second.returncode == 4
    assert "cannot listen on 127.0.0.1:8357" in second.stderr and "Traceback" not in second.stderr
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    third = ns.portatlas("serve", "--port", "0", "--feedback-db", str(blocked / "fb.sqlite3"),
                         env={"PORTATLAS_DB": str(atlas_db)}, timeout=60)
    assert third.returncode == 3 and "feedback database" in third.stderr
    proc.terminate()


def test_two_workers_and_concurrent_feedback_over_http(ns, atlas_db, tmp_path):
    """40 clients, each from its own loopback address, post 5 answers each at the same
    moment to a two-process server: every answer is stored, none twice."""
    feedback_db = tmp_path / "fb.sqlite3"
    proc, info = start_server(ns, atlas_db, feedback_db, "--workers", "2")
    assert info["workers"] == 2
    clients = 40
    barrier = threading.Barrier(clients)
    codes: list[int] = []
    pids: set[str] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def one_client(n: int) -> None:
        try:
            with thread_in_netns(ns.name):
                transport = httpx.HTTPTransport(local_address=f"127.0.0.{n + 10}")
                with httpx.Client(transport=transport, base_url=info["url"], timeout=30) as c:
                    token = form_token(c.get(f"/ports/{1000 + n}").text)
                    barrier.wait(30)
                    got = []
                    for i in range(5):
                        r = c.post("/api/feedback", json={"port": 1000 + n, "helpful": i % 2 == 0,
                                                          "comment": f"client {n} answer {i}"},
                                   headers={"x-csrf-token": token})
                        got.append(r.status_code)
                    sixth = c.post("/api/feedback", json={"port": 1, "helpful": True},
                                   headers={"x-csrf-token": token})
                    got.append(sixth.status_code)
            with lock:
                codes.extend(got)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors[0]
    assert codes.count(201) == clients * 5
    assert codes.count(429) == clients  # the sixth answer within a minute is refused
    conn = sqlite3.connect(feedback_db)
    assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == clients * 5
    assert conn.execute("SELECT count(DISTINCT comment) FROM feedback").fetchone()[0] == clients * 5
    assert conn.execute("SELECT count(DISTINCT client) FROM feedback").fetchone()[0] == clients
    with thread_in_netns(ns.name), httpx.Client(base_url=info["url"], timeout=10) as c:
        summary = c.get("/api/feedback").json()
    assert summary["total"] == clients * 5
    del pids
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    # no worker outlived the server
    left = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_json_announcement_is_one_line(ns, atlas_db, tmp_path):
    proc, info = start_server(ns, atlas_db, tmp_path / "fb.sqlite3", "--port", "0")
    assert set(info) >= {"schema", "url", "host", "port", "pid", "workers", "database",
                         "feedback_db", "source", "allow_check"}
    assert json.loads(json.dumps(info)) == info
    proc.terminate()
    proc.wait(15)
