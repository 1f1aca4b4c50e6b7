"""End to end in headless Chromium (Debian's chromium + Playwright, no browser download): load a
Flower2D image, paint over its petals and centre with the mouse, see the modified image and the
flipped class in the page, click a class and see its map.

Set IC_ZOO_SCREENSHOT=path to also save a screenshot of the comparison view (the README's)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import app as app_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")]
FLOWERS = ["flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"]


@pytest.fixture(scope="module")
def server():
    demo = app_module.build_demo(models=FLOWERS)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


def _status(page) -> str:
    return page.locator("#status").inner_text()


def _wait_status(page, text: str, timeout=120_000):
    page.wait_for_function(f"() => document.querySelector('#status').innerText.includes({json.dumps(text)})",
                           timeout=timeout)


def _screen_point(page, img_shape, x, y):
    """Image pixel -> page coordinates: the editor centres the image in its canvas at the zoom it shows."""
    ed = page.locator("#editor")
    box = ed.locator("canvas").first.bounding_box()
    zoom = float(re.search(r"(\d+)%", ed.inner_text()).group(1)) / 100
    h, w = img_shape[:2]
    return box["x"] + box["width"] / 2 + (x - w / 2) * zoom, box["y"] + box["height"] / 2 + (y - h / 2) * zoom


def test_paint_the_petals_and_the_class_flips(server, tmp_path):
    from playwright.sync_api import sync_playwright

    d = ROOT / "examples" / "flower2d"
    row = json.loads((d / "index.json").read_text())[1]
    params = json.loads((d / row["params"]).read_text())
    image = d / row["image"]
    size = 256
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(server, wait_until="load")
        page.wait_for_selector("#status", timeout=60_000)
        page.locator("#upload input[type=file]").set_input_files(str(image))
        _wait_status(page, "0 edit(s)")
        page.wait_for_timeout(1500)  # let the canvas settle
        # a zig-zag stroke over the petals and the centre (the discriminative parts)
        cx, cy = params["centre"]["x"] * size, params["centre"]["y"] * size
        r = (params["petals"]["length"] * 1.15 + 0.01) * size
        pts = []
        for k, y in enumerate(np.arange(cy - r, cy + r + 1, 9)):
            xs = (cx - r, cx + r) if k % 2 == 0 else (cx + r, cx - r)
            pts += [(xs[0], y), (xs[1], y)]
        before = page.locator("#editor").screenshot()
        sx, sy = _screen_point(page, (size, size), *pts[0])
        page.mouse.move(sx, sy)
        page.mouse.down()
        for x, y in pts[1:]:
            sx, sy = _screen_point(page, (size, size), x, y)
            page.mouse.move(sx, sy, steps=6)
        page.mouse.up()
        _wait_status(page, "1 edit(s)")
        status = _status(page)
        assert "top-1 changed" in status, status
        page.wait_for_timeout(1500)
        after = page.locator("#editor").screenshot()
        assert before != after  # the editor now shows the inpainted image
        title = page.locator("#model_0_title").inner_text()
        assert params and "→" in title, title
        # click the second row of the first model's table: its map is shown
        table = page.locator("#model_0_table")
        cell = table.get_by_test_id("cell-1-0")  # second row, class column
        label = cell.inner_text().strip()
        cell.click()
        page.wait_for_function(
            f"() => document.querySelector('#model_0_info').innerText.includes({json.dumps(label.rstrip('…'))})",
            timeout=60_000)
        shot = os.environ.get("IC_ZOO_SCREENSHOT")
        if shot:  # the comparison view, from the model picker down to the maps
            page.get_by_role("button", name="Got it, hide the tutorial").click()
            page.wait_for_timeout(1500)
            top = page.locator("#models").bounding_box()
            bottom = max((page.locator(f"#model_{i}_info").bounding_box() or {"y": 0, "height": 0} for i in range(3)),
                         key=lambda b: b["y"] + b["height"])
            page.screenshot(path=shot, full_page=True, clip={
                "x": 0, "y": top["y"] - 8, "width": 1400, "height": bottom["y"] + bottom["height"] - top["y"] + 16})
        browser.close()
