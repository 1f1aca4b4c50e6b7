"""A predict-then-see task in headless Chromium (issue 38 item 2): the page asks the prediction after the
edit with the models' answer before it still in the columns, shows the answer only after the prediction is
committed, and after a stroke on a painted task the same again."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
from test_browser import BROWSER_MARKS, _drag, browser  # noqa: E402,F401
from test_predict import MODEL, _rows, _study  # noqa: E402

pytestmark = BROWSER_MARKS


def _wait_text(page, selector: str, text: str, timeout=120_000):
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return !!e && e.innerText.includes(t); }",
        arg=[selector, text], timeout=timeout)


def _pick(page, elem_id: str, label: str):
    choice = page.locator(f"#{elem_id} label").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    choice.click()
    page.wait_for_function(f"() => !!document.querySelector('#{elem_id} input:checked')", timeout=10_000)
    page.wait_for_timeout(300)  # the radio's value reaches the app's state before the next click


def test_the_page_asks_for_the_prediction_then_shows_the_answer(tmp_path, browser):
    from ic_zoo.app.study.ui import build_study_demo
    from ic_zoo.study import load_study

    path, masks = _study(tmp_path, 2, ask="[flip]", phases=("learning", "test"))
    path.write_text(path.read_text().replace("    edit: e1.png\n", ""))  # task 2: the participant paints
    study = load_study(path)
    db = f"sqlite:///{tmp_path / 'b.sqlite'}"
    demo = build_study_demo(study, db)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url + "?participant=B01", wait_until="load")
        page.wait_for_selector("#agree", state="visible", timeout=60_000)
        page.locator("#agree").click()
        _wait_text(page, "#task_header", "Task 1 of 2")
        _wait_text(page, "#status", "Now predict")
        page.wait_for_selector("#predict", state="visible", timeout=30_000)
        before = _rows(db, "stroke")[0]["payload"]["before"][MODEL]["top1"]
        after = _rows(db, "stroke")[0]["payload"]["models"][MODEL]["modified"]["top5"][0]["label"]
        assert before != after
        title = page.locator("#model_0_title").inner_text()
        assert before in title and after not in title  # the answer before the edit, nothing of the one after
        assert MODEL in page.locator("#predict_0_flip").inner_text()
        page.locator("#predict_commit").click()  # nothing chosen: one sentence, still waiting
        page.wait_for_selector("text=Please predict whether", timeout=30_000)
        assert not _rows(db, "prediction")
        _pick(page, "predict_0_flip", "yes")
        page.locator("#predict_commit").click()
        _wait_text(page, "#status", "you predicted a change")
        _wait_text(page, "#model_0_title", after)
        page.wait_for_selector("#predict", state="hidden", timeout=30_000)
        assert [r["payload"]["outcome"][MODEL]["flip_correct"] for r in _rows(db, "prediction")] == [True]
        page.locator("#submit").click()
        _wait_text(page, "#task_header", "Task 2 of 2")
        _wait_text(page, "#status", "0 stroke(s)")
        page.wait_for_timeout(1000)
        shown = page.locator("#model_0_title").inner_text()
        ys, xs = np.nonzero(masks[0])  # the part that decides the class, painted with the mouse
        pts = [(x, y) for y in range(ys.min(), ys.max() + 1, 6) for x in (xs.min(), xs.max())]
        _drag(page, (128, 128), pts, steps=4)
        _wait_text(page, "#status", "Now predict")
        page.wait_for_selector("#predict", state="visible", timeout=30_000)
        assert page.locator("#model_0_title").inner_text() == shown  # the columns wait for the prediction
        _pick(page, "predict_0_flip", "no")
        page.locator("#predict_commit").click()
        _wait_text(page, "#status", "you predicted no change")
        assert len(_rows(db, "prediction")) == 2
        page.close()
    finally:
        demo.close()


def test_a_prolific_participant_is_sent_back_to_prolific_with_the_code(tmp_path, browser):
    """The finish page shows the completion code and the browser goes to Prolific's completion URL (the
    request is answered here by the test: no network)."""
    from test_recruitment import PROLIFIC, _study as recruit_study

    from ic_zoo.app.study.ui import build_study_demo

    study = recruit_study(tmp_path, PROLIFIC)
    demo = build_study_demo(study, f"sqlite:///{tmp_path / 'r.sqlite'}")
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.route("https://app.prolific.com/**", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<html><body>Prolific: thank you</body></html>"))
        page.goto(url + "?PROLIFIC_PID=5f0c0ffee0000000000000b7&STUDY_ID=S1&SESSION_ID=X1", wait_until="load")
        page.wait_for_selector("#agree", state="visible", timeout=60_000)
        page.locator("#agree").click()
        _wait_text(page, "#task_header", "Task 1 of 1")
        _pick(page, "q0_choice", "leaf")
        page.locator("#submit").click()
        _wait_text(page, "#done", "C1A2B3")
        page.wait_for_url("https://app.prolific.com/submissions/complete?cc=C1A2B3", timeout=30_000)
        assert "Prolific: thank you" in page.content()
        page.close()
    finally:
        demo.close()


def test_the_analysis_report_is_readable_at_a_normal_window_width(tmp_path, browser):
    """Issue 39 item 6: the report at 1280 px: the page does not run off the window (a wide table scrolls in its
    own box), every table's text and every title is of a readable size, the figures fit."""
    from test_study_analysis import _halves, _simulate, _task_parts

    from ic_zoo.study import analysis as A
    from ic_zoo.study import db as D

    img, disc, leaf = _task_parts()
    db = _simulate(tmp_path, "rep", [(f"P{k}", _halves(disc)) for k in range(4)])
    eng = D.engine_for(db)
    A.analyze(eng, tmp_path / "out", explainers=["gradcam", "occlusion"], n_boot=50, n_random=1, log=lambda s: None)
    eng.dispose()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto((tmp_path / "out" / "report.html").as_uri(), wait_until="load")
    got = page.evaluate("""() => ({
        page: document.documentElement.scrollWidth, window: window.innerWidth,
        cells: Math.min(...[...document.querySelectorAll('td, th')].map((e) => parseFloat(getComputedStyle(e).fontSize))),
        titles: Math.min(...[...document.querySelectorAll('h2, h3')].map((e) => parseFloat(getComputedStyle(e).fontSize))),
        wide: [...document.querySelectorAll('table')].filter((t) => t.getBoundingClientRect().width > window.innerWidth)
              .filter((t) => getComputedStyle(t.parentElement).overflowX !== 'auto').length,
        images: Math.max(...[...document.querySelectorAll('img')].map((e) => e.getBoundingClientRect().right)),
        tables: document.querySelectorAll('table').length})""")
    assert got["page"] <= got["window"], got  # no sideways scrolling of the page
    assert got["cells"] >= 13 and got["titles"] >= 16 and got["wide"] == 0 and got["tables"] >= 4, got
    assert got["images"] <= got["window"], got
    page.close()
