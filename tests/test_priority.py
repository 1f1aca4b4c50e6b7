"""Interactive work first (issue 35): background work waits at its checkpoints while an event a person waits
for runs, and goes on when it ends; the trust score it computes is the same either way."""
from __future__ import annotations

import threading

import numpy as np

from ic_zoo import priority


def test_background_waits_at_its_checkpoint_while_a_foreground_event_runs():
    inside, release, passed = threading.Event(), threading.Event(), threading.Event()

    def event():
        with priority.foreground():
            inside.set()
            assert release.wait(60)

    def background():
        priority.yield_to_foreground(timeout=60)
        passed.set()

    fg = threading.Thread(target=event)
    fg.start()
    assert inside.wait(60) and priority.busy()
    bg = threading.Thread(target=background)
    bg.start()
    assert not passed.wait(0.3)  # held while the event runs (any wait here is only the test's patience)
    release.set()
    fg.join(60)
    assert passed.wait(60) and not priority.busy()
    bg.join(60)


def test_no_foreground_event_no_wait_and_a_bounded_one():
    priority.yield_to_foreground(timeout=60)  # returns at once: nothing runs
    with priority.foreground():
        priority.yield_to_foreground(timeout=0.01)  # bounded: never stuck behind a stream of events
    assert not priority.busy()


def test_a_trust_score_is_the_same_whether_or_not_it_yielded():
    """The checkpoints change when the work is done, not its result."""
    import ic_zoo
    from ic_zoo.analyses import trust

    clf = ic_zoo.create("classifier", "flower2d/squeezenet")
    rng = np.random.default_rng(0)
    h, w = clf.input_size
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    heat = rng.random((h, w)).astype(np.float32)
    fill = ic_zoo.create("inpainter", "telea")
    alone = trust.trust_score(clf, img, heat, 3, fill)
    release = threading.Event()
    got = {}

    def background():
        got["score"] = trust.trust_score(clf, img, heat, 3, fill)

    with priority.foreground():
        t = threading.Thread(target=background)
        t.start()
        assert not release.wait(0.2)  # (the background is held at its first checkpoint meanwhile)
    t.join(120)
    assert got["score"].auc == alone.auc and got["score"].random_auc == alone.random_auc


def test_a_handler_answering_in_steps_keeps_its_wrappers_until_its_last_step():
    """A stroke answers in two steps (a generator): the foreground is held, its tab marked in use, and a
    failure in either step is one sentence, until the last step; an abandoned one releases them (close)."""
    import inspect

    import gradio as gr
    import pytest

    from ic_zoo.app.guard import guarded
    from ic_zoo.app.main.context import _foreground
    from ic_zoo.app.main.state import AppState
    from ic_zoo.app.tab_store import Tabs

    tabs = Tabs(AppState)
    st = AppState()

    def steps(state, fail=False):
        yield (priority.busy(), bool(tabs._busy.get(id(state))))
        if fail:
            raise ValueError("boom")
        yield (priority.busy(), bool(tabs._busy.get(id(state))))

    handler = tabs.hold(guarded(_foreground(steps)))
    assert inspect.isgeneratorfunction(handler)
    assert list(handler(st)) == [(True, True), (True, True)]
    assert not priority.busy() and not tabs._busy
    g = handler(st, fail=True)
    assert next(g) == (True, True)
    with pytest.raises(gr.Error) as e:
        next(g)
    assert "Something went wrong (boom)" in e.value.message
    assert not priority.busy() and not tabs._busy
    g = handler(st)
    next(g)
    g.close()  # a step never asked for (the page went away)
    assert not priority.busy() and not tabs._busy
