"""Every event brings the page up to date (issue 34, items 1, 2, 3 and 5), in headless Chromium, on
`python app.py` offline (the embedded ImageNet zoo for photos, the Flower2D zoo for flowers): the tools'
model pickers and class boxes follow a zoo switch, the trust line arrives after every event that changes
the shown map, the busy sign shows on the canvas while a stroke is processed, and a library sentence with
``<name>`` placeholders is shown whole."""
from __future__ import annotations

import os
import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import app as app_module  # noqa: E402
from test_browser import ARGS, CHROMIUM, ROOT, _wait_status  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")]
FLOWER = ROOT / "examples" / "flower2d" / "images" / "test_09001.png"
@pytest.fixture(scope="module")
def url(no_hub_weights):
    demo = app_module.build_demo()
    _, u, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield u
    demo.close()
    demo.ic_zoo_tabs.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _open(browser, url, image=FLOWER):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#status", timeout=60_000)
    if image is not None:
        page.locator("#upload input[type=file]").set_input_files(str(image))
        _wait_status(page, "0 edit(s)", timeout=180_000)
        page.wait_for_timeout(1000)
    return page


def _wait_text(page, selector, text, timeout=120_000):
    page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return !!e && e.innerText.includes(t); }",
                           arg=[selector, text], timeout=timeout)


def _value(page, selector) -> str:
    return page.locator(f"{selector} input").first.input_value()


def test_contrast_and_vebi_follow_a_switch_to_the_flower2d_zoo(url, browser):
    page = _open(browser, url, image=None)
    thumbs = page.locator("#examples button.thumbnail-item")
    thumbs.first.click()  # a photo: the ImageNet zoo
    _wait_status(page, "0 edit(s)", timeout=180_000)
    thumbs.last.click()  # a flower: the Flower2D zoo
    page.wait_for_function("() => document.querySelector('#model_0_table').innerText.includes('petals')",
                           timeout=120_000)
    page.get_by_role("tab", name="Contrast").click()
    page.wait_for_function("() => { const e = document.querySelector('#contrast_model input');"
                           " return !!e && e.value.startsWith('flower2d/'); }", timeout=30_000)
    page.wait_for_function("() => { const e = document.querySelector('#contrast_a input');"
                           " return !!e && e.value.includes('petals'); }", timeout=30_000)
    assert "petals" in _value(page, "#contrast_b")
    page.locator("#contrast_show").click()
    page.wait_for_function("() => { const i = document.querySelector('#contrast img');"
                           " return !!i && i.complete && i.naturalWidth > 0; }", timeout=120_000)
    page.get_by_role("tab", name="VEBI").click()
    page.wait_for_function("() => { const e = document.querySelector('#vebi_model input');"
                           " return !!e && e.value.startsWith('flower2d/'); }", timeout=30_000)
    assert "petals" in _value(page, "#vebi_class")
    page.locator("#vebi_show").click()
    _wait_text(page, "#vebi_text", "relevant features")
    assert not page.locator(".toast-body.error, [data-testid='toast-body'].error").count()
    page.close()
