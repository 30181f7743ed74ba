"""'Was this page helpful?': CSRF, rate limits, length caps, escaping, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from support.web import client, form_token, make_app

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


@pytest.fixture()
def feedback_db(tmp_path):
    return tmp_path / "feedback.sqlite3"


@pytest.fixture()
def app(atlas_db, feedback_db):
    return make_app(atlas_db, feedback_db)


@pytest.fixture()
def web(app):
    c = client(app)
    yield c
    c.close()


def token(web, port: int = 22) -> str:
    return form_token(web.get(f"/ports/{port}").text)


def post(web, payload, tok=None, **headers):
    hdrs = {"content-type": "application/json"}
    if tok is not None:
        hdrs["x-csrf-token"] = tok
    hdrs.update(headers)
    import json

    return web.post("/api/feedback", content=json.dumps(payload), headers=hdrs)


def test_feedback_round_trip_via_json(web):
    tok = token(web)
    assert web.cookies.get("pa_csrf")
    r = post(web, {"port": 22, "helpful": True, "comment": "clear, thanks"}, tok)
    assert r.status_code == 201 and r.json()["ok"] is True
    r = post(web, {"port": 22, "helpful": False}, tok)
    assert r.status_code == 201
    summary = web.get("/api/feedback").json()
    assert summary["total"] == 2 and summary["helpful"] == 1 and summary["not_helpful"] == 1
    assert summary["ports"][0] == {"port": 22, "helpful": 1, "not_helpful": 1,
                                   "last": summary["ports"][0]["last"]}
    assert summary["recent_comments"][0]["comment"] == "clear, thanks"
    page = web.get("/feedback").text
    assert "clear, thanks" in page and 'href="/ports/22"' in page


def test_feedback_without_javascript_is_a_plain_form(web):
    tok = token(web, 103)
    r = web.post("/feedback", data={"csrf": tok, "port": "103", "helpful": "yes",
                                    "comment": "line one\r\nline two"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ports/103?feedback=thanks")
    page = web.get(r.headers["location"]).text
    assert "your answer was recorded" in page
    assert web.get("/api/feedback").json()["recent_comments"][0]["comment"] == "line one\nline two"


def test_csrf_is_required(web, atlas_db, feedback_db):
    good = token(web)
    cases = {
        "no token": post(web, {"port": 22, "helpful": True}),
        "wrong token": post(web, {"port": 22, "helpful": True}, "A" * 43),
        "foreign origin": post(web, {"port": 22, "helpful": True}, good,
                               origin="http://attacker.example"),
        "cross-site fetch": post(web, {"port": 22, "helpful": True}, good,
                                 **{"sec-fetch-site": "cross-site"}),
        "form without token": web.post("/feedback", data={"port": "22", "helpful": "yes"}),
    }
    for label, r in cases.items():
        assert r.status_code == 403, label
    # a valid token without the cookie it belongs to
    other = client(make_app(atlas_db, feedback_db))
    try:
        assert post(other, {"port": 22, "helpful": True}, good).status_code == 403
    finally:
        other.close()
    assert web.get("/api/feedback").json()["total"] == 0
    assert post(web, {"port": 22, "helpful": True}, good,
                origin="http://127.0.0.1:8357").status_code == 201


def test_length_caps_and_validation(web):
    tok = token(web)
    cases = [
        ({"port": 22, "helpful": True, "comment": "x" * 501}, 400),
        ({"port": 70000, "helpful": True}, 400),
        ({"port": "22", "helpful": True}, 400),
        ({"port": 22, "helpful": "yes"}, 400),
        ({"port": 22, "helpful": True, "extra": 1}, 400),
        ({"port": 22}, 400),
    ]
    for payload, status in cases:
        r = post(web, payload, tok)
        assert r.status_code == status, payload
        assert r.json()["error"]
    big = web.post("/api/feedback", content=b"{" + b" " * 5000 + b"}",
                   headers={"content-type": "application/json", "x-csrf-token": tok})
    assert big.status_code == 413
    wrong_type = web.post("/api/feedback", content=b"port=22",
                          headers={"content-type": "text/plain", "x-csrf-token": tok})
    assert wrong_type.status_code == 415
    assert post(web, {"port": 22, "helpful": True, "comment": "y" * 500}, tok).status_code == 201
    # control characters are dropped, whitespace trimmed
    post(web, {"port": 22, "helpful": True, "comment": "  ok\x00\x1b[31m  "}, tok)
    assert web.get("/api/feedback").json()["recent_comments"][0]["comment"] == "ok[31m"


def test_rate_limit_per_client(app, feedback_db):
    a, b = client(app, "198.18.0.10"), client(app, "198.18.0.11")
    try:
        tok_a, tok_b = token(a), token(b)
        codes = [post(a, {"port": 22, "helpful": True}, tok_a).status_code for _ in range(7)]
        assert codes == [201] * 5 + [429] * 2
        limited = post(a, {"port": 22, "helpful": True}, tok_a)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert post(b, {"port": 22, "helpful": True}, tok_b).status_code == 201  # another client
    finally:
        a.close()
        b.close()
    # stored as a salted hash, never the address
    rows = sqlite3.connect(feedback_db).execute("SELECT DISTINCT client FROM feedback").fetchall()
    assert len(rows) == 2 and all("198.18" not in r[0] for r in rows)


def test_xss_in_feedback_comes_back_escaped(web):
    tok = token(web)
    assert post(web, {"port": 22, "helpful": False, "comment": XSS}, tok).status_code == 201
    page = web.get("/feedback").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    data = web.get("/api/feedback")
    assert data.headers["content-type"] == "application/json"
    assert data.json()["recent_comments"][0]["comment"] == XSS


def test_xss_in_search_and_paths_comes_back_escaped(web):
    for q in (XSS, '"><svg onload=alert(1)>', "</title><script>alert(1)</script>"):
        r = web.get("/search", params={"q": q})
        assert "<script>alert" not in r.text and "<svg onload" not in r.text and "<img src=x" not in r.text
        assert "&lt;" in r.text
        api = web.get("/api/search", params={"q": q})
        assert api.headers["content-type"] == "application/json"
        assert api.json()["query"] == q
    for path in ("/services/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/ports/%3Cscript%3E",
                 "/ranges/%3Cimg%20src=x%3E"):
        r = web.get(path)
        assert r.status_code in (400, 404)
        assert "<script>alert" not in r.text and "<img src=x" not in r.text


def test_feedback_database_is_separate_and_survives_registry_rebuilds(atlas_db, feedback_db, tmp_path):
    from portatlas.errors import UsageError
    from portatlas.web import WebConfig

    with pytest.raises(UsageError):
        WebConfig(atlas_db, feedback_db=atlas_db)
    app = make_app(atlas_db, feedback_db)
    c = client(app)
    try:
        assert post(c, {"port": 7, "helpful": True}, token(c, 7)).status_code == 201
    finally:
        c.close()
    tables = {r[0] for r in sqlite3.connect(atlas_db).execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "feedback" not in tables
    assert sqlite3.connect(feedback_db).execute("SELECT count(*) FROM feedback").fetchone()[0] == 1


def test_concurrent_threads_lose_no_rows(app, feedback_db):
    """32 clients in 32 threads, each with its own event loop, post 5 answers at once."""
    clients = [client(app, f"198.18.1.{i}") for i in range(32)]
    tokens = [token(c) for c in clients]
    start = threading.Barrier(len(clients))
    results: list[int] = []
    lock = threading.Lock()

    def worker(c, tok):
        start.wait()
        codes = [post(c, {"port": 22, "helpful": i % 2 == 0, "comment": f"t{i}"}, tok).status_code
                 for i in range(5)]
        with lock:
            results.extend(codes)

    threads = [threading.Thread(target=worker, args=(c, t)) for c, t in zip(clients, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert results.count(201) == 160
    assert sqlite3.connect(feedback_db).execute("SELECT count(*) FROM feedback").fetchone()[0] == 160


def test_concurrent_processes_lose_no_rows(feedback_db):
    """8 processes x 4 threads append to the same file at the same moment."""
    from portatlas.web.feedback import FeedbackStore

    FeedbackStore(feedback_db).close()
    go = time.time() + 2.0
    script = textwrap.dedent(f"""
        import sys, threading, time
        from portatlas.web.feedback import FeedbackStore
        proc = int(sys.argv[1])
        store = FeedbackStore({str(feedback_db)!r}, per_minute=1000, per_day=1000)
        def run(thread):
            for i in range(25):
                store.add(1000 + i, i % 2 == 0, f"p{{proc}} t{{thread}} n{{i}}", f"198.18.{{proc}}.{{thread}}")
        threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
        time.sleep(max(0, {go} - time.time()))
        for t in threads: t.start()
        for t in threads: t.join()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p)], stderr=subprocess.PIPE,
                              text=True) for p in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    conn = sqlite3.connect(feedback_db)
    assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 8 * 4 * 25
    assert conn.execute("SELECT count(DISTINCT comment) FROM feedback").fetchone()[0] == 800


def test_comment_length_is_checked_as_sent():
    """The OpenAPI schema says maxLength 500 for the comment as sent; removing control and
    private-use characters first let 501 through (found by schemathesis)."""
    import pytest

    from portatlas.errors import UsageError
    from portatlas.web.feedback import clean_comment

    with pytest.raises(UsageError, match="too long"):
        clean_comment("\x12\U000eafb1" + "I" * 499, 500)
    assert clean_comment("\x12" + "I" * 499, 500) == "I" * 499
