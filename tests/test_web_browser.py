"""The atlas in a real browser: Debian's headless Chromium driven by Playwright, with the
server (`python -m portatlas serve`) and the browser both inside a private network namespace
(the browser talks to the namespace's own 127.0.0.1). Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from support.netns import Netns, available
from support.web import start_server, thread_in_netns

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "web"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = '<script>alert("pwned")</script><img src=x onerror=alert(2)>'

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(atlas_db, tmp_path_factory):
    if not available():
        pytest.skip("needs root and ip netns")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    folder = tmp_path_factory.mktemp("browser")
    feedback_db = folder / "feedback.sqlite3"
    with Netns("web") as ns:
        proc, info = start_server(ns, atlas_db, feedback_db)
        # Only the driver has to be born inside the namespace: it starts Chromium, which
        # inherits it. This thread goes back to the host namespace right after.
        with thread_in_netns(ns.name):
            pw = playwright_api.sync_playwright().start()
        try:
            context = pw.chromium.launch_persistent_context(
                str(folder / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 900}, locale="en-GB")
            context.set_default_timeout(15000)
            try:
                yield {"context": context, "url": info["url"].rstrip("/"),
                       "feedback_db": feedback_db, "server": proc}
            finally:
                context.close()
        finally:
            pw.stop()


@pytest.fixture()
def page(site):
    page = site["context"].new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    page.close()
    # a CSP violation, a script error or an alert() would all show up here
    assert problems == []


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_port_103_shows_gppitnp_and_links_to_102(site, page):
    page.goto(site["url"] + "/ports/103")
    assert page.locator("h1").inner_text().startswith("Port 103")
    entry = page.locator("#registry .entry").filter(has_text="gppitnp").first
    assert entry.is_visible()
    assert "Genesis Point-to-Point Trans Net" in entry.inner_text()
    assert page.locator("#t-tcp").is_visible() and page.locator("#t-udp").is_visible()
    # the how-to commands have working copy buttons
    copy = page.locator("#howto button.copy").first
    assert copy.is_visible()
    shot(page, "port-103")
    copy.click()
    page.wait_for_function("document.querySelector('#howto button.copy').textContent !== 'Copy'")
    link = page.locator("#neighbours a[href='/ports/102']")
    assert link.is_visible()
    link.click()
    page.wait_for_url("**/ports/102")
    assert page.locator("h1").inner_text().startswith("Port 102")
    assert "iso-tsap" in page.locator("#registry").inner_text()


def test_search_as_you_type_reaches_a_result_by_keyboard(site, page):
    page.goto(site["url"] + "/")
    box = page.locator("#q")
    box.click()
    box.press_sequentially("mail transfer", delay=40)
    suggestions = page.locator("#suggest")
    suggestions.locator("a", has_text="smtp").first.wait_for()
    assert box.get_attribute("aria-expanded") == "true"
    shot(page, "search-suggestions")
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.getAttribute('href')")
    assert focused == "/ports/25"
    page.keyboard.press("Enter")
    page.wait_for_url("**/ports/25")
    assert page.locator("h1").inner_text().startswith("Port 25")
    assert "Simple Mail Transfer" in page.locator("#registry").inner_text()


def test_search_page_without_the_dropdown_and_escaping(site, page):
    page.goto(site["url"] + "/search?q=" + "mail%20transfer")
    results = page.locator("#results li a")
    assert results.count() >= 2 and "smtp" in results.first.inner_text()
    page.keyboard.press("Tab")  # keyboard users get from the box to the results
    page.goto(site["url"] + "/search?q=" + XSS.replace(" ", "%20").replace("<", "%3C")
              .replace(">", "%3E").replace('"', "%22"))
    assert page.locator("#q2").input_value() == XSS
    assert page.locator("script:not([src])").count() == 0
    # live results while typing on the search page
    box = page.locator("#q2")
    box.fill("")
    box.press_sequentially("secure shell", delay=30)
    page.locator("#results a", has_text="ssh").first.wait_for()
    assert "q=secure%20shell" in page.url
    shot(page, "search-page")


def test_send_feedback(site, page):
    page.goto(site["url"] + "/ports/103")
    page.locator("#fb-comment").fill("Found it. " + XSS)
    page.get_by_role("button", name="Yes, helpful").click()
    status = page.locator("#feedback .fb-status")
    status.filter(has_text="Thank you").wait_for()
    shot(page, "feedback-sent")
    rows = sqlite3.connect(site["feedback_db"]).execute(
        "SELECT port, helpful, comment FROM feedback").fetchall()
    assert (103, 1, "Found it. " + XSS) in rows
    page.goto(site["url"] + "/feedback")
    comments = page.locator(".comments blockquote")
    assert comments.first.inner_text() == "Found it. " + XSS  # shown as text, not run
    assert page.locator("img[src=x]").count() == 0
    shot(page, "feedback-summary")


def test_map_is_explorable(site, page):
    page.goto(site["url"] + "/")
    cells = page.locator(".ports-grid a.cell")
    assert cells.count() == 1024
    cells.nth(22).hover()
    readout = page.locator("[data-readout]").first
    assert re.match(r"22: .*ssh", readout.inner_text())
    shot(page, "home")
    cells.nth(0).focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/ports/1"
    page.keyboard.press("Enter")
    page.wait_for_url("**/ports/1")
    page.goto(site["url"] + "/")
    page.locator(".blocks-grid a.cell").nth(93).click()  # 5952-6015
    page.wait_for_url("**/ranges/5952-6015")
    assert page.locator(".ports-grid a.cell").count() == 64
    shot(page, "range")


def test_other_pages_render(site, page):
    for path, name, heading in [("/ranges", "ranges", "Ranges"), ("/about", "about", "About the data"),
                                ("/services/http", "service-http", "http"),
                                ("/local", "local", "This machine"), ("/ports/57", "port-57", "Port 57")]:
        page.goto(site["url"] + path)
        assert page.locator("h1").inner_text().startswith(heading)
        assert "IANA registry 2026-08-17" in page.locator("footer").inner_text()
        shot(page, name)
    # the server's own socket shows up on the live page, flagged as unassigned
    page.goto(site["url"] + "/local")
    assert "8357" in page.locator(".local-table").inner_text()
