"""The study page never hangs (issue 33, item 3): every failure a participant can meet ends in the reload
sentence within the watchdog's bound (ic_zoo/app/watchdog.py). Headless Chromium against one study
server, with the bounds made short (IC_ZOO_WATCHDOG_S=3, IC_ZOO_WATCHDOG_MAX_S=8) so that every wait
here is the watchdog's own time-out, not the machine's speed:

* an event the server takes but never answers on this tab's stream (it went to another replica: the
  stream sends only heartbeats), and one that starts and never finishes;
* a slow event (longer than the quiet bound, shorter than the maximum) is answered, no sentence;
* the queue answering 404 / 502 / 503, Gradio's "Session not found" inside the stream, a result image
  answered 403;
* the server restarted under the page (its tab is gone): the page's next change is told to reload.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from test_browser import BROWSER_MARKS, browser  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]
pytestmark = BROWSER_MARKS
QUIET, MAX = 3, 8
SSE_SESSION_GONE = ('data: {"msg": "unexpected_error", "message": "404: Not Found", "session_not_found": true, '
                    '"success": false}\n\n')


def _build(db):
    from ic_zoo.study import load_study
    from ic_zoo.app.study.ui import build_study_demo

    return build_study_demo(load_study(ROOT / "examples" / "study" / "flower_study.yaml"), db, pretrained=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("IC_ZOO_WATCHDOG_S", "IC_ZOO_WATCHDOG_MAX_S")}
    os.environ.update(IC_ZOO_WATCHDOG_S=str(QUIET), IC_ZOO_WATCHDOG_MAX_S=str(MAX))
    db = f"sqlite:///{tmp_path_factory.mktemp('watchdog') / 'log.sqlite'}"
    box = {"db": db, "demo": _build(db)}
    _, box["url"], _ = box["demo"].launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True,
                                          quiet=True)
    yield box
    box["demo"].close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _on_task(browser, url, who):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(f"{url}?participant={who}", wait_until="load")
    page.wait_for_selector("#agree", state="visible", timeout=60_000)
    page.locator("#agree").click()
    page.wait_for_function("() => (document.querySelector('#status') || {}).innerText?.includes('0 stroke(s)')",
                           timeout=120_000)
    page.wait_for_function("() => !!window.__icZooWatchdog", timeout=10_000)
    return page


def _notice(page, timeout_s) -> float:
    """Seconds until the reload banner shows (fails after ``timeout_s``)."""
    t0 = time.monotonic()
    page.wait_for_selector("#ic_reload_notice", state="visible", timeout=timeout_s * 1000)
    return time.monotonic() - t0


def _sentence_shown(page):
    from ic_zoo.app.study.ui import MOVED

    text = page.locator("#ic_reload_notice").inner_text()
    assert MOVED in text, text
    assert page.locator("#ic_reload_button").is_visible()


def _click_reset(page):
    page.locator("#reset").click()


class _Hooks:
    """Test-only hooks on the running server's queue: an event accepted and then lost (what a tab whose
    join and stream reach two replicas sees), or a handler held until released."""

    def __init__(self, demo):
        self.queue, self.push = demo._queue, demo._queue.push

    def lose_events(self):
        from gradio.queueing import AsyncQueue

        q = self.queue

        async def elsewhere(body, request, username):  # the join is answered; nothing of it comes back here
            async with q.pending_message_lock:
                if body.session_hash not in q.pending_messages_per_session:
                    q.pending_messages_per_session[body.session_hash] = AsyncQueue()
            return True, uuid.uuid4().hex, "success"

        q.push = elsewhere

    def restore(self):
        self.queue.push = self.push


def test_an_event_lost_on_the_way_ends_in_the_sentence_after_the_quiet_bound(study, browser):
    page = _on_task(browser, study["url"], "WD01")
    hooks = _Hooks(study["demo"])
    try:
        hooks.lose_events()
        t0 = time.monotonic()
        _click_reset(page)
        waited = _notice(page, QUIET + 20)  # the bound plus slack for the page
        elapsed = time.monotonic() - t0
    finally:
        hooks.restore()
    _sentence_shown(page)
    why = page.evaluate("() => window.__icZooWatchdog.tripped")
    # two ways to notice, both right: the quiet bound passes with the event unanswered, or Gradio ends the
    # tab's stream (it may, with nothing of the tab's left to send) while the event still waits
    assert "no answer" in why or "with an event unanswered" in why, why
    if "no answer" in why:
        assert elapsed >= QUIET - 0.5, (elapsed, waited)  # not before the bound: it waited for an answer
    page.close()


def test_a_slow_event_is_answered_and_a_stuck_one_ends_in_the_sentence(study, browser, monkeypatch):
    from ic_zoo.app.study import ui

    page = _on_task(browser, study["url"], "WD02")
    gate, hold = threading.Event(), {"s": None}
    orig_need = ui.StudyApp.need_task

    def need_task(self, st, request=None, base=None):  # every change's handler starts here
        if hold["s"] is not None:
            gate.wait(hold["s"])
        return orig_need(self, st, request, base)

    monkeypatch.setattr(ui.StudyApp, "need_task", need_task)
    try:
        hold["s"] = QUIET + 2  # slower than the quiet bound, well inside the maximum: answered, no sentence
        _click_reset(page)
        page.wait_for_function("() => document.body.innerText.includes('Nothing to reset')", timeout=60_000)
        assert page.locator("#ic_reload_notice").count() == 0, page.evaluate("() => window.__icZooWatchdog.tripped")
        hold["s"] = 600  # started, never finished
        t0 = time.monotonic()
        _click_reset(page)
        _notice(page, MAX + 20)
        assert time.monotonic() - t0 >= MAX - 0.5
        why = page.evaluate("() => window.__icZooWatchdog.tripped")
        assert "not finished" in why, why
        _sentence_shown(page)
    finally:
        hold["s"] = None
        gate.set()
    page.close()


@pytest.mark.parametrize("where,answer", [
    ("**/queue/data**", 404), ("**/queue/data**", "session gone"), ("**/queue/join**", 502),
    ("**/queue/join**", 503), ("**/gradio_api/file=**", 403)])
def test_a_failing_answer_ends_in_the_sentence_at_once(study, browser, where, answer):
    page = _on_task(browser, study["url"], f"WD{abs(hash((where, answer))) % 10**6}")

    def fulfil(route):
        if answer == "session gone":  # what Gradio sends for a session this server does not know
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=SSE_SESSION_GONE)
        else:
            route.fulfill(status=answer, body=json.dumps({"detail": "proxy"}), content_type="application/json")

    page.route(where, fulfil)
    t0 = time.monotonic()
    if "file=" in where:  # the page's images asked again, from a server that "cannot give" them
        page.evaluate("() => document.querySelectorAll('img').forEach((i) => { if (i.src.includes('/gradio_api/file=')) i.src = i.src + '&again=1'; })")
    else:
        _click_reset(page)
    waited = _notice(page, QUIET + 20)
    why = page.evaluate("() => window.__icZooWatchdog.tripped")
    assert "no answer" not in why and "not finished" not in why, why  # told at once, not by the time-out
    assert time.monotonic() - t0 < QUIET + 15, waited
    _sentence_shown(page)
    page.close()


def test_a_stroke_whose_event_the_proxy_cannot_deliver_ends_in_the_sentence(study, browser):
    """A stroke goes up as its points, in the event itself (no upload before it): a 502 there (the replica
    died) ends in the sentence at once, not after the quiet bound."""
    page = _on_task(browser, study["url"], "WDSTROKE")
    hit, uploads = [], []
    page.on("request", lambda r: uploads.append(r.url) if "/upload" in r.url else None)

    def fail(route):
        hit.append(route.request.url)
        route.fulfill(status=502, body="<html>502 Bad Gateway</html>", content_type="text/html")

    img = page.locator("#editor .ic-paint-img")
    img.wait_for(state="visible", timeout=60_000)  # drawn after the task's image (later on a busy machine)
    page.wait_for_timeout(1000)
    page.route("**/queue/join**", fail)  # only now: the task's own set-up is not a stroke
    box = img.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
    page.mouse.up()
    waited = _notice(page, QUIET + 20)
    assert hit, "the stroke sent no event"
    assert not uploads, uploads  # the stroke's points ride in the event
    why = page.evaluate("() => window.__icZooWatchdog.tripped")
    assert "answered 502" in why, why
    assert waited < QUIET, waited  # at once, not by the quiet bound
    _sentence_shown(page)
    page.close()


def test_a_restarted_server_reloads_the_page_or_tells_it(study, browser):
    """The server restarts under the page (its tab and Gradio's session are gone). Gradio's page notices on
    its heartbeat stream ("Connection Lost") and reloads itself once a server answers: the participant
    resumes from the log. A change that reaches the new server first, from a page still showing a task
    (its base is a logged event), is told to reload: through gradio_client here."""
    from gradio_client import Client

    from ic_zoo.app.study.ui import MOVED

    page = _on_task(browser, study["url"], "WD03")
    port = int(study["url"].rstrip("/").rsplit(":", 1)[1])
    study["demo"].close()
    study["demo"] = _build(study["db"])
    study["demo"].launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    _click_reset(page)
    page.wait_for_function(
        "(s) => document.body.innerText.includes(s) || "
        "(document.querySelector('#participant_note') || {}).innerText?.includes('Welcome back')",
        arg=MOVED, timeout=(QUIET + 40) * 1000)
    page.close()
    c = Client(study["url"], verbose=False, analytics_enabled=False)
    with pytest.raises(Exception) as moved:
        c.predict(0, 5, api_name="/study_reset")  # a page at event 5, on a server that has no tab for it
    assert MOVED in str(moved.value), str(moved.value)
    with pytest.raises(Exception) as fresh:
        c.predict(0, -1, api_name="/study_reset")  # no base: not a moved page, the consent comes first
    assert "consent" in str(fresh.value), str(fresh.value)
