"""Every event brings the page up to date (issue 34, items 1, 2, 3 and 5), in headless Chromium, on
`python app.py` offline (the embedded ImageNet zoo for photos, the Flower2D zoo for flowers): the tools'
model pickers and class boxes follow a zoo switch, the trust line arrives after every event that changes
the shown map, the busy sign shows on the canvas while a stroke is processed, and a library sentence with
``<name>`` placeholders is shown whole."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import app as app_module  # noqa: E402
from test_browser import BROWSER_MARKS, ROOT, _screen_point, _status, _wait_status, browser  # noqa: E402,F401

pytestmark = BROWSER_MARKS
FLOWER = ROOT / "examples" / "flower2d" / "images" / "test_09001.png"
GATE = threading.Event()  # the test inpainter 'held' fills a stroke only once this is set
GATE.set()
DEMO: list = []  # the app the module's pages talk to (its tabs' states are read by the canvas tests)


def _register_held():
    """A test-only inpainter that waits for GATE: a stroke stays in flight exactly as long as the test
    wants (no timing)."""
    import ic_zoo
    from ic_zoo import Inpainter, discovery

    discovery.ensure_loaded()
    if "held" in {s.name for s in ic_zoo.list_plugins("inpainter")}:
        return

    class Held(Inpainter):
        needs_context = False

        def _inpaint(self, image, mask):
            assert GATE.wait(300), "the test never released the stroke"
            return np.full_like(image, 128)

    ic_zoo.register("inpainter", "held", Held, description="grey fill once the test releases it (tests only)")

    class Refuses(Inpainter):
        needs_context = False

        def _inpaint(self, image, mask):
            from ic_zoo.errors import InputError

            raise InputError("This filler refuses every stroke (tests only).")

    ic_zoo.register("inpainter", "refuses", Refuses, description="refuses every stroke (tests only)")


@pytest.fixture(scope="module")
def url(no_hub_weights):
    _register_held()
    demo = app_module.build_demo()
    _, u, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    DEMO.append(demo)
    yield u
    DEMO.clear()
    from ic_zoo.app import serve

    serve.drain(demo, 300)  # the last stroke's follow-ups (its trust scores) may still run
    demo.close()
    demo.ic_zoo_tabs.close()


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


SEEN_PENDING = """() => {
  window.__pending = false;
  const look = () => { const e = document.querySelector('#model_0_info');
                       if (e && e.innerText.includes('being measured')) window.__pending = true; };
  window.__watch && window.__watch.disconnect();
  window.__watch = new MutationObserver(look);
  window.__watch.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


IDLE = ("() => [...document.querySelectorAll('[data-testid=\"status-tracker\"]:not(.hide)')]"
        ".every(t => !!t.querySelector('.clear-status') || !t.querySelector('.progress-text, .loading, .eta-bar'))")


def _trust_arrives(page, event):
    """``event`` redraws the first column with a trust line still being measured; its result follows.
    Each event starts once no tracker on the page shows progress, and is tried once: since the columns are
    fixed slots updated in the event's own answer (issue 34 item 4), no redraw can swallow it."""
    page.wait_for_function(IDLE, timeout=120_000)
    page.evaluate(SEEN_PENDING)
    event()
    try:
        page.wait_for_function("() => window.__pending", timeout=60_000)
        page.wait_for_function("() => { const e = document.querySelector('#model_0_info'); return !!e &&"
                               " e.innerText.includes('Trust (deletion AUC') && "
                               "!e.innerText.includes('being measured'); }", timeout=120_000)
    except Exception as exc:  # noqa: BLE001 - reported with what the page shows
        raise AssertionError(f"no trust line after {event.__name__}: "
                             f"{page.locator('#model_0_info').inner_text()}") from exc


def test_the_trust_line_arrives_after_every_event_that_changes_the_map(url, browser):
    page = _open(browser, url)
    _wait_text(page, "#model_0_info", "Trust (deletion AUC")  # the image's load runs the follow-up already

    def row_click():
        page.locator("#model_0_table").get_by_test_id("cell-1-0").click()

    def class_search():
        box = page.locator("#class_search input").first
        box.click()
        page.get_by_role("option").nth(2).click()

    def explainer():
        box = page.locator("#explainer input").first
        box.click()
        page.get_by_role("option", name="layercam", exact=True).click()

    def rows_toggle():
        page.locator("#rows").get_by_text("modified top-5").click()

    for event in (row_click, class_search, explainer, rows_toggle):
        _trust_arrives(page, event)
    page.close()


BUSY = "() => getComputedStyle(document.querySelector('#editor .ic-paint-stage'), '::after').content"


def _stroke(page, y=128, x0=90, x1=170, size=256):
    pts = [(x, y + dy) for dy in (-6, 0, 6) for x in (x0, x1)]
    page.mouse.move(*_screen_point(page, (size, size), *pts[0]))
    page.mouse.down()
    for x, yy in pts[1:]:
        page.mouse.move(*_screen_point(page, (size, size), x, yy), steps=5)
    page.mouse.up()


def _use_inpainter(page, name):
    """Pick ``name`` in the inpainter box (the test fillers 'held' and 'refuses' among them)."""
    page.locator("#inpainter input").first.click()
    page.get_by_role("option", name=name, exact=True).click()


def test_the_busy_sign_shows_on_the_canvas_while_a_stroke_is_processed(url, browser):
    page = _open(browser, url)
    _use_inpainter(page, "held")
    page.wait_for_timeout(500)
    assert "Classifying" not in page.evaluate(BUSY)
    GATE.clear()  # the stroke stays in flight until the sign has been seen
    try:
        _stroke(page)
        page.wait_for_function(f"() => ({BUSY})().includes('Classifying')", timeout=60_000)
    finally:
        GATE.set()
    _wait_status(page, "1 edit(s)")
    page.wait_for_function(f"() => !({BUSY})().includes('Classifying')", timeout=30_000)
    page.close()


def test_the_unknown_model_sentence_is_shown_whole(url, browser):
    page = _open(browser, url)
    picker = page.locator("#models input").first
    picker.click()
    picker.fill("no_such_model_anywhere")
    picker.press("Enter")
    _wait_status(page, "There is no model called 'no_such_model_anywhere'")
    text = _status(page)
    assert "timm:<name>, torchvision:<name>, hf-hub:<repo id> or clip:<repo id>=<class>,<class>,..." in text, text
    page.close()


AGREE = """() => {
  const picked = [...document.querySelectorAll('#models .token')].map(t => t.innerText.replace('×', '').trim());
  const cols = [...document.querySelectorAll('#model_columns > [id^=model_]')].filter(c => c.offsetParent !== null);
  const status = document.querySelector('#status').innerText;
  return picked.length > 0 && picked.every(p => p.startsWith('flower2d/')) && cols.length === picked.length
    && cols.every((c, i) => c.querySelector('[id$=_title]').innerText.includes(picked[i])
                             && c.querySelector('[id$=_table]').innerText.includes('petals'))
    && status.includes('0 edit(s)') && !/processing|queue:/.test(status)
    && document.querySelector('#model_columns_at').textContent.includes('columns of edit 0.');
}"""


def test_rapid_example_switches_leave_columns_picker_and_canvas_agreeing(url, browser):
    """Photo <-> flower examples clicked as fast as a person can (each click before the last one's answer):
    no request fails (before the fixed slots, Gradio's route lookup answered 500s while gr.render redrew
    the columns), the last click is not dropped (Gradio's default trigger mode ignored a click while the
    previous example was being classified, leaving the page on the photo before the flower clicked last),
    and the page settles with the columns showing the picker's models, of the last image, at edit 0."""
    page = _open(browser, url, image=None)
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    thumbs = page.locator("#examples button.thumbnail-item")
    n = thumbs.count()
    for k in range(6):  # photo, flower, photo, ... each click 300 ms after the last
        thumbs.nth(k % 2 and n - 1 - k // 2 or k // 2).click()
        page.wait_for_timeout(300)
    thumbs.nth(n - 1).click()  # the last: a flower
    try:
        page.wait_for_function(AGREE, timeout=180_000)
    except Exception as exc:  # noqa: BLE001 - reported with what the page shows
        cols = page.locator("#model_columns").inner_text()
        raise AssertionError(f"the page did not settle on the flower: {_status(page)!r} / {cols[:600]!r}") from exc
    assert not failed, failed
    page.close()


ROWS_IN_VIEW = """(i) => {
  const t = document.querySelector(`#model_${i}_table`);
  const box = (t.querySelector('.virtual-table-viewport') || t).getBoundingClientRect();
  const rows = [...t.querySelectorAll('[role=row].virtual-row')];
  return [rows.length, rows.filter(r => { const b = r.getBoundingClientRect();
                                          return b.top >= box.top - 1 && b.bottom <= box.bottom + 1; }).length,
          Math.max(...rows.map(r => r.getBoundingClientRect().height)),
          [...t.querySelectorAll('.body-cell.first-column [title]')].map(s => [s.innerText, s.title])];
}"""
BROKEN_NUMBERS = """() => [...document.querySelectorAll('[id^=model_][id$=_table] .body-cell:not(.first-column)')]
  .filter(c => c.offsetParent !== null)
  .filter(c => { const w = document.createTreeWalker(c, NodeFilter.SHOW_TEXT); let n, broken = false;
                 while ((n = w.nextNode())) { if (!n.textContent.trim()) continue;
                   const r = document.createRange(); r.selectNodeContents(n);
                   if (new Set([...r.getClientRects()].map(b => Math.round(b.top))).size > 1) broken = true; }
                 return broken; })
  .map(c => c.innerText)"""


def test_all_five_rows_at_a_glance_with_short_labels_and_the_full_one_on_hover(url, browser):
    """Issue 34 items 8 and "top-5 at a glance": every column shows its five rows without scrolling; an
    ImageNet label by its first synonym ("tabby" for "tabby, tabby cat"), two lines at most, the full label
    on hover; a Flower2D label, whose first part is no synonym, whole (wrapped, never cut)."""
    page = _open(browser, url, image=None)
    page.locator("#examples button.thumbnail-item").first.click()  # Chelsea the cat: the ImageNet zoo
    page.wait_for_function("() => (document.querySelector('#model_0_table') || {innerText: ''}).innerText.includes('tabby')",
                           timeout=180_000)
    page.wait_for_function(IDLE, timeout=120_000)
    for i in range(3):
        n, shown, tallest, cells = page.evaluate(ROWS_IN_VIEW, i)
        assert n == 5 and shown == 5 and tallest < 60, (i, n, shown, tallest)  # at most two lines a row
        assert all(full.startswith(short.rstrip("…")) for short, full in cells), cells
    *_, cells = page.evaluate(ROWS_IN_VIEW, 0)
    assert ["tabby", "tabby, tabby cat"] in cells, cells
    for width in (1400, 400):  # no number broken over two lines ("98.⏎0"), on a desktop and a phone
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(300)
        assert not page.evaluate(BROKEN_NUMBERS), (width, page.evaluate(BROKEN_NUMBERS))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.locator("#examples button.thumbnail-item").last.click()  # a flower
    page.wait_for_function("() => (document.querySelector('#model_0_table') || {innerText: ''}).innerText.includes('petals')",
                           timeout=180_000)
    page.wait_for_function(IDLE, timeout=120_000)
    # the table's text changes before its cells' titles are redrawn (Gradio's virtual table): wait for those
    page.wait_for_function(f"() => ({ROWS_IN_VIEW})(0)[3].every(([s, f]) => f.includes('petals'))", timeout=30_000)
    n, shown, _, cells = page.evaluate(ROWS_IN_VIEW, 0)
    assert n == 5 and shown == 5 and all(short == full for short, full in cells), cells  # whole, not cut
    page.close()


ERROR_SHOWN = ("() => [...document.querySelectorAll('[data-testid=\"status-tracker\"]')]"
               ".filter(t => t.offsetParent !== null && /\\bError\\b/.test(t.innerText)).length")


def test_the_error_label_goes_with_the_next_event_that_succeeds(url, browser):
    page = _open(browser, url)
    box = page.locator("#class_search input").first
    box.fill("no such class anywhere")
    box.press("Enter")
    page.wait_for_function(f"() => ({ERROR_SHOWN})() > 0", timeout=60_000)
    page.wait_for_function(IDLE, timeout=120_000)
    page.locator("#rows").get_by_text("modified top-5").click()  # an event that succeeds
    page.wait_for_function("() => document.querySelector('#model_columns_at').textContent.includes('edit 0')",
                           timeout=60_000)
    page.wait_for_function(IDLE, timeout=120_000)
    page.wait_for_timeout(500)
    assert page.evaluate(ERROR_SHOWN) == 0, page.locator("#status").inner_text()
    page.close()


TRACKER_ERRORS = "() => document.querySelectorAll('[data-testid=\"status-tracker\"] .clear-status').length"


def test_a_failed_event_leaves_no_error_label_behind(url, browser):
    """Issue 34, item 6: a failed event's red "Error" label (Gradio's tracker on every output) stuck after
    its sentence's toast had closed. It goes with the toast; the next stroke works as usual."""
    page = _open(browser, url)
    _use_inpainter(page, "refuses")
    page.wait_for_timeout(300)
    _stroke(page)
    page.wait_for_selector("[data-testid='toast-body']", timeout=120_000)
    assert "This filler refuses every stroke" in page.locator("[data-testid='toast-text']").first.inner_text()
    assert page.evaluate(TRACKER_ERRORS) > 0  # Gradio's labels, while the sentence shows
    page.locator("[data-testid='toast-close']").first.click()  # the person closes the sentence
    page.wait_for_function(f"() => ({TRACKER_ERRORS})() === 0", timeout=30_000)
    assert not page.locator("[data-testid='toast-body']").count()
    _use_inpainter(page, "telea")
    page.wait_for_timeout(300)
    _stroke(page, y=60)
    _wait_status(page, "1 edit(s)")
    assert page.evaluate(TRACKER_ERRORS) == 0
    page.close()


# -- the canvas sends the stroke, not the canvas (issue 35) ------------------------------------------------------
INK = ("() => { const c = document.querySelector('#editor .ic-paint-ink'); const d = c.getContext('2d')"
       ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; "
       "return n; }")
SHOWN = ("() => { const i = document.querySelector('#editor .ic-paint-img'); const c = document.createElement('canvas');"
         " c.width = i.naturalWidth; c.height = i.naturalHeight; const x = c.getContext('2d'); x.drawImage(i, 0, 0);"
         " return [c.width, c.height, Array.from(x.getImageData(0, 0, c.width, c.height).data)]; }")


def _the_tab(shown: np.ndarray):
    """The tab of this module's app whose canvas shows ``shown`` (the module's other pages left tabs too)."""
    tabs = [st for st in DEMO[0].ic_zoo_tabs.states() if st.session is not None and st.displayed is not None
            and st.displayed.shape == shown.shape]
    return min(tabs, key=lambda st: np.abs(st.displayed.astype(int) - shown).mean())


def _shown(page) -> np.ndarray:
    w, h, px = page.evaluate(SHOWN)
    return np.asarray(px, np.uint8).reshape(h, w, 4)[..., :3]


def test_a_stroke_sends_its_points_and_the_page_shows_the_image_it_made(url, browser):
    page = _open(browser, url)
    sent = []
    page.on("request", lambda r: sent.append((r.url, len(r.post_data_buffer or b""))))
    before = _shown(page)
    _stroke(page)
    _wait_status(page, "1 edit(s)")
    page.wait_for_function("() => document.querySelector('#editor .ic-paint').dataset.v !== undefined")
    page.wait_for_timeout(300)
    assert not [u for u, _ in sent if "/upload" in u], sent  # no picture goes up
    joins = [n for u, n in sent if "/queue/join" in u]
    assert joins and max(joins) < 4096, joins  # the stroke's points: well under a kilobyte or four
    shown = _shown(page)
    st = _the_tab(shown)
    truth = st.displayed  # what the server made (the modified image, the models' frames burned in)
    assert shown.shape == truth.shape
    mse = float(((shown.astype(float) - truth) ** 2).mean())
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 30  # the page shows that image (JPEG at quality 92: > 30 dB)
    changed = st.session.edits[-1].mask  # and not the one before it: where the stroke was, it is the new one
    now, then = np.abs(shown.astype(int) - truth)[changed].mean(), np.abs(shown.astype(int) - before)[changed].mean()
    assert then > 3 * now, (now, then)
    assert page.evaluate(INK) == 0  # the stroke's ink went when its answer came
    page.close()


def test_a_stroke_painted_while_another_is_processed_joins_the_next_edit(url, browser):
    page = _open(browser, url)
    _use_inpainter(page, "held")
    page.wait_for_timeout(500)
    GATE.clear()  # the first stroke stays in flight while the second is painted
    try:
        _stroke(page, y=200)
        page.wait_for_function(f"() => ({BUSY})().includes('Classifying')", timeout=60_000)
        _stroke(page, y=60)
        assert page.evaluate(INK) > 0  # both drawn, nothing applied yet
    finally:
        GATE.set()
    _wait_status(page, "2 edit(s)")
    page.wait_for_function(f"() => ({INK})() === 0", timeout=30_000)
    s = _the_tab(_shown(page)).session
    assert len(s.edits) == 2
    first, second = s.edits[0].mask, s.edits[1].mask
    assert first[190:210].any() and not first[50:70].any()  # one edit per stroke, in the order painted
    assert second[50:70].any() and not second[190:210].any()
    page.close()


def test_the_status_line_comes_first_and_the_columns_follow_of_the_same_edit(url, browser, monkeypatch):
    """A stroke is answered in two steps (issue 35): while the server holds its second step, the page already
    shows the new image and the status line naming the new edit, the columns still stamped with the last
    one; released, the columns show the new edit and the status line the time of the maps too. Nothing here
    waits on the clock: the second step is held until the page has shown the first."""
    from ic_zoo.app.main.context import AppContext

    hold, steps = threading.Event(), AppContext.show_steps

    def held(self, *args, **kwargs):
        parts = steps(self, *args, **kwargs)
        yield next(parts)
        if kwargs.get("early", True):  # (``show``, which every other event uses, takes them in one)
            assert hold.wait(120)
        yield from parts

    monkeypatch.setattr(AppContext, "show_steps", held)
    page = _open(browser, url)
    try:
        before = _shown(page)
        _stroke(page)
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('1 edit(s)')",
                               timeout=120_000)
        assert "their maps follow" in page.locator("#status").inner_text()
        assert "columns of edit 0." in page.locator("#model_columns_at").text_content()
        page.wait_for_function(f"() => ({INK})() === 0", timeout=30_000)  # the stroke acknowledged
        shown = _shown(page)
        st = _the_tab(shown)
        assert len(st.session.edits) == 1 and not np.array_equal(shown, before)  # the new image is shown
    finally:
        hold.set()
    _wait_status(page, "1 edit(s)")  # and the columns of edit 1
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('models and maps in')",
                           timeout=60_000)
    page.close()


def test_the_slow_maps_show_the_occlusion_refining_then_the_final_maps(url, browser, monkeypatch):
    """The fast occlusion's map is shown as it is refined (issue 35): the slow-maps job is held after its
    first step until the page shows it (the coarse map, captioned as refining, under the refining note);
    released, the final maps replace it with the note of the edit they are of. Nothing waits on the clock."""
    from ic_zoo.app.main import context
    from ic_zoo.app.main.tool_handlers import PREVIEW_NOTE

    release, slow_maps = threading.Event(), context.slow_maps

    def held(session, names, explainer, classes, progress, preview=None):
        def first_held(data):
            preview(data)
            assert release.wait(120)  # the page shows this step before the job goes on

        return slow_maps(session, names, explainer, classes, progress, preview=first_held if preview else None)

    monkeypatch.setattr(context, "slow_maps", held)
    page = _open(browser, url)
    try:
        page.locator("#explainer input").first.click()
        page.get_by_role("option", name="occlusion (slow)", exact=True).click()
        page.get_by_role("tab", name="Slow maps").click()
        page.get_by_role("button", name="Compute the chosen slow explainer").click()
        _wait_text(page, "#slow_note", PREVIEW_NOTE.strip("*")[:40])
        page.wait_for_function("() => [...document.querySelectorAll('#slow_maps img')].some((i) => "
                               "(i.alt || '').includes('refining (step 1') || (i.closest('button') || i)"
                               ".innerText?.includes?.('refining (step 1'))", timeout=60_000)
    finally:
        release.set()
    _wait_text(page, "#slow_note", "These maps are of the current image")
    page.wait_for_function("() => document.querySelectorAll('#slow_maps img').length > 0 && "
                           "!document.querySelector('#slow_maps').innerText.includes('refining')", timeout=120_000)
    page.close()
