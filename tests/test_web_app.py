"""The web UI in-process (httpx's ASGI transport): pages, JSON API, errors, provenance."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from support.web import client, make_app


@pytest.fixture(scope="module")
def app(atlas_db, tmp_path_factory):
    return make_app(atlas_db, tmp_path_factory.mktemp("fb") / "feedback.sqlite3")


@pytest.fixture()
def web(app):
    c = client(app)
    yield c
    c.close()


def test_port_103_page_has_registry_entries_neighbours_and_howto(web):
    r = web.get("/ports/103")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "gppitnp" in html and "Genesis Point-to-Point Trans Net" in html
    # entries per transport
    assert 'id="t-tcp"' in html and 'id="t-udp"' in html
    # neighbours are links
    assert 'href="/ports/102"' in html and 'href="/ports/104"' in html
    assert "iso-tsap" in html
    # range class, how-to-check for three systems with copy buttons
    assert "Range: system" in html
    for label in ("Linux", "macOS", "Windows"):
        assert f">{label}</h3>" in html
    assert "sudo ss -tlnp &#39;sport = :103&#39;" in html or "sudo ss -tlnp 'sport = :103'" in html
    assert html.count('class="copy"') >= 6
    # feedback form with a token, provenance in the footer
    assert 'action="/feedback"' in html and re.search(r'name="csrf" value="[\w-]{20,}"', html)
    assert "IANA registry 2026-08-17" in html


def test_port_page_shows_rfc_links_notes_unauthorized_use_and_trojans(web):
    html = web.get("/ports/79").text  # finger: unauthorized use reported
    assert "Unauthorized use reported" in html and "RFC4146" in html
    html = web.get("/ports/22").text
    assert 'href="https://www.rfc-editor.org/rfc/rfc4251"' in html
    html = web.get("/ports/2").text  # de-assigned compressnet
    assert "de-assigned" in html and "previously compressnet" in html.lower()
    html = web.get("/ports/31337").text
    assert "Historic trojan associations" in html
    assert "says nothing about whether a listener here is malicious" in html


def test_port_page_and_api_come_from_the_same_answer(web, atlas):
    from portatlas.sections import collect

    answer = atlas.port(57)
    collect(answer, skip=("here",))
    expected = answer.to_dict()
    got = web.get("/api/ports/57").json()
    got.pop("here", None)
    assert got == json.loads(json.dumps(expected))


def test_transport_filter(web):
    data = web.get("/api/ports/53?transport=udp").json()
    assert data["transport"] == "udp" and list(data["entries"]) == ["udp"]
    assert web.get("/api/ports/53?transport=TCPX").status_code == 400
    assert "udp only" in web.get("/ports/53?transport=udp").text


def test_service_page_and_api(web):
    html = web.get("/services/http").text
    assert 'href="/ports/80"' in html and "World Wide Web HTTP" in html
    data = web.get("/api/services/http").json()
    assert data["schema"] == "portatlas.service/1"
    assert {e["port_lo"] for e in data["entries"]} == {80}
    r = web.get("/api/services/no-such-service-here")
    assert r.status_code == 404 and "no service named" in r.json()["error"]


def test_search_page_works_without_javascript(web):
    r = web.get("/search", params={"q": "mail transfer"})
    assert r.status_code == 200
    assert 'href="/ports/25"' in r.text and "Simple Mail Transfer" in r.text
    data = web.get("/api/search", params={"q": "mail transfer", "limit": 5}).json()
    assert data["results"][0]["service"] == "smtp" and data["results"][0]["url"] == "/ports/25"
    assert web.get("/api/search", params={"q": "57"}).json()["goto"] == "/ports/57"
    jump = web.get("/search", params={"q": " 57 "}, follow_redirects=False)
    assert jump.status_code == 303 and jump.headers["location"] == "/ports/57"
    assert web.get("/search?q=6000-6010", follow_redirects=False).headers["location"] == \
        "/ranges/6000-6010"


@pytest.mark.parametrize("q", ["", "   "])
def test_empty_search_page_is_just_the_box(web, q):
    r = web.get("/search", params={"q": q})
    assert r.status_code == 200 and 'id="results"' in r.text


def test_bad_input_is_one_line_json_error(web):
    for path, status in [("/api/ports/65536", 400), ("/api/ports/-1", 400), ("/api/ports/abc", 400),
                         ("/api/search?q=%2A%2A", 400), ("/api/search?q=a&limit=0", 400),
                         ("/api/ranges/10-5", 400), ("/api/ranges/0-20000", 400),
                         ("/api/nowhere", 404)]:
        r = web.get(path)
        assert r.status_code == status, path
        body = r.json()
        assert body["status"] == status and "\n" not in body["error"] and body["error"]
        assert "Traceback" not in r.text
    r = web.get("/ports/99999")
    assert r.status_code == 400 and "out of range" in r.text and "<!doctype html>" in r.text


def test_method_not_allowed_says_which_are(web):
    r = web.request("DELETE", "/api/ports/22")
    assert r.status_code == 405 and "GET" in r.headers["allow"]


def test_ranges_and_home_show_the_port_space(web, atlas):
    home = web.get("/")
    assert home.status_code == 200
    # one cell per port 0-1023 and one per 64-port block of the whole space
    assert home.text.count('class="cell st-') == 1024
    assert home.text.count('href="/ranges/') >= 1024
    assert 'href="/ports/103"' in home.text
    data = web.get("/api/ranges").json()
    assert len(data["blocks"]) == 1024 and data["block_size"] == 64
    assert sum(b["assigned"] + b["unassigned"] + b["reserved"] + b["deassigned"]
               for b in data["blocks"]) == 65536
    assert [c["name"] for c in data["classes"]] == ["system", "user", "dynamic"]
    assert data["classes"][2]["assigned"] == 0  # dynamic ports are never assigned
    detail = web.get("/api/ranges/6000-6063").json()
    assert detail["statuses"] == ["assigned"] * 64
    assert {e["service"] for e in detail["entries"]} == {"x11"}
    # status per port agrees with the port answer
    for port in (0, 2, 4, 25, 1023):
        status = atlas.port(port).status
        cell = web.get(f"/api/ranges/{port}-{port + 1}").json()["statuses"][0]
        assert cell in status.values()
    html = web.get("/ranges/6000-6063").text
    assert html.count('class="cell st-assigned"') == 64 and "X Window System" in html
    assert web.get("/ranges/80", follow_redirects=False).headers["location"] == "/ports/80"


def test_provenance_on_every_page_and_about(web):
    for path in ("/", "/ports/1", "/services/ssh", "/search?q=ssh", "/ranges", "/about",
                 "/feedback", "/local", "/nowhere"):
        html = web.get(path).text
        assert 'href="/about">IANA registry 2026-08-17 (xml)</a>' in html, path
    about = web.get("/about").text
    assert "iana-registry" in about and "service-names-port-numbers.xml" in about
    data = web.get("/api/about").json()
    assert data["provenance"][0]["registry_date"] == "2026-08-17"
    assert web.get("/data", follow_redirects=False).headers["location"] == "/about"


def test_security_headers_and_static_assets(web):
    r = web.get("/ports/22")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    css = re.search(r'href="(/static/app\.css\?v=\w+)"', r.text).group(1)
    asset = web.get(css)
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert web.get("/static/app.css").headers["cache-control"] == "no-cache"
    assert web.get("/static/../config.py").status_code == 404
    # no inline script or style anywhere: the CSP would block it
    for path in ("/", "/ports/22", "/search?q=ssh", "/ranges/0-63", "/about"):
        html = web.get(path).text
        assert "<script>" not in html and " style=" not in html and "<style" not in html


def test_big_pages_are_served_compressed(web):
    r = web.get("/", headers={"accept-encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert int(r.headers["content-length"]) < 60_000 < len(r.content)


def test_host_header_is_checked_when_bound_to_loopback(atlas_db, tmp_path):
    from portatlas.web.config import local_hosts

    from portatlas.web import WebConfig, create_app

    config = WebConfig(atlas_db, feedback_db=tmp_path / "fb.sqlite3")
    config.allowed_hosts = local_hosts("127.0.0.1", 8357)
    app = create_app(config)
    c = client(app)
    try:
        assert c.get("/healthz").status_code == 200  # Host: 127.0.0.1:8357
        assert c.get("/healthz", headers={"host": "localhost:8357"}).status_code == 200
        evil = c.get("/api/feedback", headers={"host": "attacker.example:8357"})
        assert evil.status_code == 421
    finally:
        c.close()


def test_a_replaced_database_is_picked_up(atlas_db, shared_data, tmp_path):
    """`portatlas data update` replaces the file; the server notices and starts a new cache."""
    db = tmp_path / "live.sqlite3"
    shutil.copy(atlas_db, db)
    app = make_app(db, tmp_path / "fb.sqlite3", reload_interval=0.0)
    c = client(app)
    try:
        first = c.get("/healthz").json()["build"]
        c.get("/ports/103")
        from portatlas.kb.build import build

        build(tmp_path / "new.sqlite3", str(shared_data / "iana" / "service-names-port-numbers.csv"))
        os.replace(tmp_path / "new.sqlite3", db)
        second = c.get("/healthz").json()
        assert second["build"] != first
        assert "csv" in second["source"]
        assert "IANA registry" in c.get("/ports/103").text
        assert "(csv)" in c.get("/ports/103").text
    finally:
        c.close()
