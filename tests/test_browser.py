"""A real browser (Debian's Chromium driven by Playwright) clicks through one labelling round on the bundle.

Screenshots land in artifacts/ so a person can look at what the test saw.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: scripts/setup.sh --browser should have installed it")
        pytest.skip("Chromium is not installed: run `bash scripts/setup.sh --browser` (needs root for apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def stats_text(page) -> str:
    return page.locator("#stats").inner_text()


def batch_sources(page) -> list[str]:
    return page.locator(".ct-cell img").evaluate_all("images => images.map(i => i.getAttribute('src'))")


def set_slider(page, position: int, value: float) -> None:
    """Move a slider as a drag would: set the range input's value and fire the events Svelte listens to."""
    page.locator(f"#slider-{position} input[type=range]").evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true}));"
        " el.dispatchEvent(new Event('change', {bubbles: true})); }",
        value,
    )


def test_a_visitor_searches_scores_trains_and_sees_the_next_round(browser, app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url)
    page.wait_for_function("document.querySelector('#status')?.innerText.includes('images')", timeout=60_000)

    page.locator("#prompt textarea, #prompt input").first.fill("a small red circle on stripes")
    page.locator("#prompt textarea, #prompt input").first.press("Enter")
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('Round 1')", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('.ct-cell img').length >= 10", timeout=30_000)
    first = batch_sources(page)
    assert len(first) == 10

    set_slider(page, 0, 1.0)
    set_slider(page, 1, 0.6)
    page.click("#mark-rest")
    page.wait_for_function("document.querySelector('#slider-9 input[type=range]')?.value === '-1'", timeout=10_000)
    page.screenshot(path=ARTIFACTS / "browser-round-1.png", full_page=True)

    page.click("#train")
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('Round 2')", timeout=30_000)
    page.wait_for_function(
        "prev => { const now = [...document.querySelectorAll('.ct-cell img')].map(i => i.getAttribute('src'));"
        " return now.length >= 10 && !now.some(s => prev.includes(s)); }",
        arg=first,
        timeout=30_000,
    )
    assert "10 labels (+2 / −8)" in stats_text(page)
    assert not set(batch_sources(page)) & set(first)
    page.screenshot(path=ARTIFACTS / "browser-round-2.png", full_page=True)

    page.set_viewport_size({"width": 420, "height": 900})  # a phone: the grid must wrap, not overflow
    page.wait_for_timeout(300)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    page.screenshot(path=ARTIFACTS / "browser-phone.png", full_page=True)
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px on a phone"
    assert errors == [], f"browser console errors: {errors}"
    page.close()


def test_a_reload_or_restart_loses_no_labels_the_browser_offers_to_resume(browser, app_url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app_url)
    page.wait_for_function("document.querySelector('#status')?.innerText.includes('images')", timeout=60_000)
    page.locator("#prompt textarea, #prompt input").first.fill("a small yellow shape")
    page.click("#search")
    page.wait_for_function("document.querySelectorAll('.ct-cell img').length >= 10", timeout=30_000)
    # The chained step after each round saves the session in the browser; wait for the search's save, then for the
    # round's (a fixed pause was too short on a busy machine).
    saved = "localStorage.getItem('concept-trainer-session')"
    page.wait_for_function(f"{saved} !== null", timeout=30_000)
    after_search = page.evaluate(saved)
    set_slider(page, 0, 1.0)
    page.click("#mark-rest")
    page.wait_for_function("document.querySelector('#slider-9 input[type=range]')?.value === '-1'")
    page.click("#train")
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('Round 2')", timeout=30_000)
    page.wait_for_function(f"previous => {saved} !== previous", arg=after_search, timeout=30_000)

    page.reload()  # the tab's server-side session is gone, as after a Space restart
    page.wait_for_selector("#resume-row", state="visible", timeout=30_000)
    assert "10 labels" in page.locator("#resume-row").inner_text()
    page.click("#resume")
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('10 labels (+1 / −9)')")
    assert page.locator("#prompt textarea, #prompt input").first.input_value() == "a small yellow shape"
    page.screenshot(path=ARTIFACTS / "browser-resumed.png", full_page=True)
    page.close()
