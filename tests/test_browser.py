"""End to end in headless Chromium (Debian's chromium + Playwright, no browser download): load a
Flower2D image, paint over its petals and centre with the mouse, see the modified image and the
flipped class in the page, click a class and see its map.

The same on a real photo with the real (embedded) ImageNet models, and a model name typed in the picker.

Set IC_ZOO_SCREENSHOT=path to also save a screenshot of the comparison view on the photo (the README's)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import app as app_module  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
#: every browser test file's marks (they import these, and the ``browser`` fixture below)
BROWSER_MARKS = [pytest.mark.browser, pytest.mark.slow,
                 pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")]
pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, for one test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()
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
    """Wait for the status line to say ``text``; when it names an edit count ("N edit(s)"), also for the
    model columns of that edit (they are drawn just after the event, by the comparison view's render)."""
    def seen() -> str:  # what the page shows instead, for the failure's message
        return page.evaluate("() => ['#status', '#model_columns_at', '#ic_reload_notice'].map((s) => { "
                             "const e = document.querySelector(s); return s + ': ' + (e ? e.innerText : '-'); })"
                             ".join(' | ')")

    try:
        page.wait_for_function(f"() => document.querySelector('#status').innerText.includes({json.dumps(text)})",
                               timeout=timeout)
        n = re.search(r"(\d+) edit\(s\)", text)
        if n:
            page.wait_for_function("() => { const e = document.querySelector('#model_columns_at'); "
                                   f"return !!e && e.textContent.includes('columns of edit {n.group(1)}.'); }}",
                                   timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - the timeout says only that it timed out
        raise AssertionError(f"waited {timeout / 1000:.0f} s for {text!r}; the page shows {seen()}") from exc


def _screen_point(page, img_shape, x, y):
    """Image pixel -> page coordinates. The app's canvas (painter) shows the whole image scaled to fit; study
    mode's editor centres the image in its canvas at the zoom it shows."""
    ed = page.locator("#editor")
    h, w = img_shape[:2]
    if ed.locator(".ic-paint-img").count():
        ed.locator(".ic-paint-img").wait_for(state="visible", timeout=60_000)  # an image shown, laid out
        box = ed.locator(".ic-paint-img").bounding_box()
        return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h
    ed.locator("canvas").first.wait_for(state="visible", timeout=60_000)  # mounted, laid out
    box = ed.locator("canvas").first.bounding_box()
    zoom = float(re.search(r"(\d+)%", ed.inner_text()).group(1)) / 100
    return box["x"] + box["width"] / 2 + (x - w / 2) * zoom, box["y"] + box["height"] / 2 + (y - h / 2) * zoom


def _drag(page, img_shape, pts, steps: int):
    """Press at the first image point, move through the others (``steps`` mouse events each), release."""
    page.mouse.move(*_screen_point(page, img_shape, *pts[0]))
    page.mouse.down()
    for x, y in pts[1:]:
        page.mouse.move(*_screen_point(page, img_shape, x, y), steps=steps)
    page.mouse.up()


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
        browser.close()


def _comparison_screenshot(page, path):
    """The comparison view, from the model picker down to the map viewer's colour bars."""
    page.wait_for_function("() => document.querySelector('#map_original img') !== null", timeout=60_000)
    top = page.locator("#models").bounding_box()
    bottom = max([page.locator(f"#model_{i}_info").bounding_box() or {"y": 0, "height": 0} for i in range(3)]
                 + [page.locator("#status").bounding_box(), page.locator("#map_legend").bounding_box()],
                 key=lambda b: b["y"] + b["height"])
    page.screenshot(path=path, full_page=True, clip={
        "x": 0, "y": top["y"] - 8, "width": 1400, "height": bottom["y"] + bottom["height"] - top["y"] + 16})


@pytest.fixture(scope="module")
def photo_server(no_hub_weights):
    demo = app_module.build_demo()  # `python app.py` offline: the embedded ImageNet zoo for photos
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


def test_paint_out_the_cup_on_a_real_photo_and_type_a_model_name(photo_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(photo_server, wait_until="load")
        page.wait_for_selector("#status", timeout=60_000)
        # the gallery: the cat photo on the ImageNet models, a flower switches to the Flower2D zoo
        thumbs = page.locator("#examples button.thumbnail-item")
        thumbs.first.click()
        _wait_status(page, "0 edit(s)")
        assert "cat" in page.locator("#model_0_table").inner_text()
        thumbs.last.click()
        page.wait_for_function("() => document.querySelector('#models').innerText.includes('flower2d/squeezenet')",
                               timeout=60_000)
        page.wait_for_function("() => document.querySelector('#model_0_table').innerText.includes('petals')",
                               timeout=60_000)
        # a model name typed in the picker that cannot work: its sentence, and the selection stays
        picker = page.locator("#models input").first
        picker.click()
        picker.fill("timm:no_such_net")
        picker.press("Enter")
        _wait_status(page, "timm has no architecture called 'no_such_net'")
        chips = page.locator("#models").inner_text()
        assert "no_such_net" not in chips and "flower2d/squeezenet" in chips, chips
        page.keyboard.press("Escape")
        page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "coffee.jpg"))
        # the photo takes the picker back to the ImageNet zoo (the refused name changed nothing)
        page.wait_for_function("() => document.querySelector('#model_0_table').innerText.includes('espresso')",
                               timeout=60_000)
        assert "tf_efficientnet_lite0.in1k" in page.locator("#models").inner_text()
        page.wait_for_timeout(1500)
        # a zig-zag over the cup (centre 293, 120; radius about 100 px in the 600 x 400 photo)
        pts = []
        for k, y in enumerate(np.arange(25, 225, 18)):  # the brush is 24 px wide
            xs = (185, 400) if k % 2 == 0 else (400, 185)
            pts += [(xs[0], y), (xs[1], y)]
        screen = [_screen_point(page, (400, 600), x, y) for x, y in pts]  # before the stroke: the page is idle
        page.mouse.move(*screen[0])
        page.mouse.down()
        for sx, sy in screen[1:]:  # one pointer event per corner: the canvas joins them (a 600 px canvas
            page.mouse.move(sx, sy)  # redraws slowly in software, about 0.5 s per event)
        page.mouse.up()
        _wait_status(page, "1 edit(s)")
        assert "top-1 changed" in _status(page), _status(page)
        title = page.locator("#model_0_title").inner_text()
        assert "espresso" in title and "→" in title, title
        assert page.locator("#domain_note").inner_text().strip() == ""  # photo on ImageNet models: no warning
        # the trust scores follow the columns: every model's line under its maps, with a verdict
        page.wait_for_function("() => [0, 1, 2].every(i => { const e = document.querySelector(`#model_${i}_info`); "
                               "return !!e && e.innerText.includes('than random'); })", timeout=120_000)
        assert "Trust (deletion AUC" in page.locator("#model_0_info").inner_text()
        shot = os.environ.get("IC_ZOO_SCREENSHOT")
        if shot:
            _comparison_screenshot(page, shot)
        browser.close()


# -- study mode -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study_server(tmp_path_factory):
    from ic_zoo.study import load_study
    from ic_zoo.app.study.ui import build_study_demo

    study = load_study(ROOT / "examples" / "study" / "flower_study.yaml")
    db = f"sqlite:///{tmp_path_factory.mktemp('study') / 'log.sqlite'}"
    demo = build_study_demo(study, db)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield url, db, study
    demo.close()


def _wait_text(page, selector: str, text: str, timeout=120_000):
    page.wait_for_function(
        f"() => {{ const e = document.querySelector({json.dumps(selector)}); "
        f"return e && e.innerText.includes({json.dumps(text)}); }}", timeout=timeout)


def _choose(page, j: int, label: str):
    choice = page.locator(f"#q{j}_choice label").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    choice.click()
    choice.locator("input").wait_for(state="attached")
    page.wait_for_function(f"() => !!document.querySelector('#q{j}_choice input:checked')", timeout=10_000)
    page.wait_for_timeout(300)  # the radio's value reaches the app's state before the next click


def test_example_study_end_to_end(study_server):
    """Consent, a real brush stroke, answers to every task (attention check included), the thank-you
    page; a reload comes back to it; everything is in the log with the browser's clock."""
    import sqlalchemy as sa
    from playwright.sync_api import sync_playwright

    from ic_zoo.study import db as D

    url, db, study = study_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        # an invalid id in the link: one sentence, no consent button
        page.goto(url + "?participant=bad%20id!", wait_until="load")
        _wait_text(page, "#participant_note", "not valid")
        assert not page.locator("#agree").is_visible()
        page.goto(url + "?participant=E2E01", wait_until="load")
        page.wait_for_selector("#agree", state="visible", timeout=60_000)
        assert "Consent" in page.locator("#consent_text").inner_text()
        assert page.locator("#participant input, #participant textarea").first.input_value() == "E2E01"
        page.locator("#agree").click()
        _wait_text(page, "#task_header", "Task 1 of 4")
        _wait_text(page, "#status", "0 stroke(s)")
        page.wait_for_timeout(1500)  # let the canvas settle
        d = ROOT / "examples" / "flower2d"
        row = next(r for r in json.loads((d / "index.json").read_text()) if r["image"].endswith("09001.png"))
        params = json.loads((d / row["params"]).read_text())
        cx, cy, r = params["centre"]["x"] * 256, params["centre"]["y"] * 256, params["petals"]["length"] * 1.15 * 256
        pts = [(cx - r, y) if k % 2 == 0 else (cx + r, y) for k, y in enumerate(np.arange(cy - r, cy + r + 1, 9))]
        _drag(page, (256, 256), pts, steps=6)
        _wait_text(page, "#status", "1 stroke(s)")
        assert "top-1 changed" in page.locator("#status").inner_text()
        if os.environ.get("IC_ZOO_SCREENSHOT"):  # the README's study picture, beside the app's
            page.wait_for_timeout(1000)
            page.screenshot(path=str(Path(os.environ["IC_ZOO_SCREENSHOT"]).with_name("study.png")))
        # submitting with a question unanswered: one sentence, still on task 1
        _choose(page, 0, "petals")
        page.locator("#submit").click()
        page.wait_for_selector("text=Please answer", timeout=30_000)
        _choose(page, 1, "4")
        page.locator("#submit").click()
        _wait_text(page, "#task_header", "Task 2 of 4")
        _choose(page, 0, "no")
        page.locator("#submit").click()
        _wait_text(page, "#task_header", "Task 3 of 4")
        _choose(page, 0, "leaf")
        page.locator("#submit").click()
        _wait_text(page, "#task_header", "Task 4 of 4")
        _choose(page, 0, "3")
        page.locator("#q1_text textarea").fill("the maps liked the centre")
        page.locator("#submit").click()
        _wait_text(page, "#done", "Thank you")
        page.reload(wait_until="load")  # coming back after the end: the thank-you page again
        _wait_text(page, "#done", "Thank you")
        # the researcher's live report on /admin: its figures and tables render in the page
        os.environ["IC_ZOO_ADMIN_PASSWORD"] = "e2e-admin"
        try:
            page.goto(url + "admin", wait_until="load")
            page.locator("#admin_password input").fill("e2e-admin")
            page.locator("#admin_analyse").click()
            _wait_text(page, "#admin_report", "Which model looks where people look", timeout=180_000)
            img = page.locator("#admin_report img").first
            assert img.evaluate("i => i.complete && i.naturalWidth > 100"), "the task figure did not render"
            report = page.locator("#admin_report").inner_text()
            assert "Against the ground truth" in report and "humans (removal map)" in report
        finally:
            os.environ.pop("IC_ZOO_ADMIN_PASSWORD", None)
        browser.close()
    eng = D.engine_for(db)
    with eng.connect() as conn:
        rows = conn.execute(sa.select(D.interactions_t.c.kind, D.interactions_t.c.client_time,
                                      D.interactions_t.c.mask_png).order_by(D.interactions_t.c.seq)).all()
        ans = conn.execute(sa.select(D.answers_t.c.question_id, D.answers_t.c.answer, D.answers_t.c.correct)
                           .order_by(D.answers_t.c.id)).all()
    eng.dispose()
    kinds = [r.kind for r in rows]
    assert kinds[:3] == ["consent", "task_shown", "stroke"] and kinds.count("answer") == 4 and kinds[-1] == "finish"
    stroke = rows[2]
    assert stroke.mask_png is not None and stroke.client_time and abs(stroke.client_time / 1000 - time.time()) < 3600
    assert [tuple(a) for a in ans] == [("part", "petals", None), ("sure", "4", None), ("changed", "no", None),
                                       ("check", "leaf", True), ("agree", "3", None),
                                       ("why", "the maps liked the centre", None)]
