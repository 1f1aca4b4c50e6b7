"""The presentation functions (ic_zoo.presentation.present): what the app shows, computed without Gradio."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import ic_zoo
from ic_zoo.presentation import present
from ic_zoo.flower2d import generator as g


@pytest.fixture(scope="module")
def edited():
    """A real session on a Flower2D flower with its discriminative part removed (the class flips)."""
    p = g.sample_params("double-12c", 3, "test", 7003)
    img, parts = g.render(p, 128)
    s = ic_zoo.Session(img)
    s.apply(g.disc_mask(p, parts), "telea")
    res = s.evaluate(["flower2d/squeezenet"], explainer="gradcam")
    return s, res.models["flower2d/squeezenet"], p


def test_short_and_model_title(edited):
    _, r, _ = edited
    assert present.short("x" * 50, 10) == "x" * 9 + "…" and present.short("abc") == "abc"
    title = present.model_title("flower2d/squeezenet", r)
    assert r.top1_changed and "~~" in title and "→" in title  # the old top-1 struck through, the new one named


def test_class_rows_follow_the_tracked_or_the_modified_classes(edited):
    _, r, p = edited
    tracked = present.class_rows(r, "tracked")
    assert [row["index"] for row in tracked] == [c.index for c in r.original]
    assert tracked[0]["index"] == p["label"] and tracked[0]["delta_pp"] < 0
    mod = present.class_rows(r, "modified")
    assert [row["index"] for row in mod] == [c.index for c in r.modified]
    assert [row["rank_modified"] for row in mod] == list(range(1, len(mod) + 1))
    for row in mod:  # where each class of the modified top-k stood in the original
        assert row["rank_original"] == int((r.probs_original > r.probs_original[row["index"]]).sum()) + 1
    df = present.table_frame(tracked).data
    assert list(df.columns) == ["class", "orig. %", "mod. %", "Δ pp"]
    assert df["orig. %"].iloc[0] == pytest.approx(100 * tracked[0]["original"])


def test_map_panel_has_three_captioned_tiles_and_the_colour_bars(edited):
    s, r, _ = edited
    cm = s.explain("flower2d/squeezenet", r.original[0].index)
    panel = present.map_panel(s.original, s.modified, cm, width=200)
    assert panel.shape[1] == 3 * 200 + 8
    # the bottom strip: the jet bar under the first two tiles, the diverging bar (white in the middle) under the third
    bar_row = panel[-28 + 5]
    assert not np.array_equal(bar_row[10], bar_row[390])  # jet runs from blue to red
    assert (bar_row[404 + 100] > 240).all()  # the difference bar is white at 0
    unchanged = SimpleNamespace(original=cm.original, modified=cm.original, difference=np.zeros_like(cm.original),
                                label=cm.label, explainer=cm.explainer, scale=cm.scale)
    same = present.map_panel(s.original, s.original, unchanged, width=200)
    diff_tile = same[22:-28, 408:]
    assert np.abs(diff_tile.astype(int) - diff_tile.mean(axis=2, keepdims=True)).max() < 4  # grey: no change


def test_coinciding_crops_stay_distinguishable():
    img = np.full((160, 160, 3), 128, np.uint8)
    box = (0.0, 0.0, 160.0, 160.0)
    boxes = {"a": box, "b": box, "c": box}
    for out in (present.boxes_overlay(img, boxes)[:160], present.burn_frames(img, boxes)):
        colours = {tuple(int(v) for v in out[80, x]) for x in range(0, 12)}
        for i in range(3):
            assert present.PALETTE[i] in colours, (i, colours)  # every model's frame is visible
    assert (img == 128).all()  # the input is never drawn on


def test_stroke_effect_text_tells_a_blur_from_a_stroke():
    from dataclasses import replace

    from ic_zoo.analyses.stroke_effect import StrokeEffect

    eff = StrokeEffect("m", 281, "tabby cat", prob_before=0.8, prob_after=0.3, delta_pp=-50.0, stroke_area=1.0,
                       mass_in_stroke=1.0, explainer="gradcam")
    blur = SimpleNamespace(inpainter="blur", params={"sigma": 3.0}, area=100, mask=np.ones((10, 10), bool))
    txt = present.stroke_effect_text(eff, blur)
    assert txt.startswith("The whole image was blurred (sigma 3)") and "covered" not in txt
    stroke = SimpleNamespace(inpainter="telea", params={}, area=5, mask=np.ones((10, 10), bool))
    assert present.stroke_effect_text(replace(eff, stroke_area=0.05, mass_in_stroke=0.4), stroke).startswith(
        "Last stroke covered 5.0% of the image and 40%")
    assert present.stroke_effect_text(None) == ""


def _check(deltas, flips=0):
    from ic_zoo.analyses.inpainter_check import Filled, InpainterCheck, ModelCheck

    rows = {f"f{i}": Filled(prob=0.5, delta_pp=d, top1=0, top1_label="x", flipped=i < flips)
            for i, d in enumerate(deltas)}
    ds = np.array(deltas)
    model = ModelCheck(cls=0, label="cat", prob_before=0.8123456789, by_inpainter=rows,
                       spread_pp=float(ds.max() - ds.min()), std_pp=float(ds.std()), flip_votes=flips)
    return InpainterCheck(mask_pixels=40, used="telea", skipped={"lama": "not installed"}, models={"m": model})


def test_inpainter_check_gives_a_verdict_only_when_the_effect_beats_its_spread():
    small = _check([-1.0, -0.2, -2.1])  # the case: a -1 pp effect
    assert "no verdict" in present.inpainter_check_summary(small)
    assert "holds across fillers" not in present.inpainter_check_summary(small)
    big = _check([-40.0, -44.0, -38.0])
    assert "the effect (-40.0 pp) holds across fillers" in present.inpainter_check_summary(big)
    # the case: a median of -83.8 pp, but blur only -10.5 pp: not "holds", and blur is named
    mixed = _check([-83.8, -10.5, -84.3, -85.0])
    text = present.inpainter_check_summary(mixed)
    assert "holds across fillers" not in text and "f1 gives -10.5 pp" in text and "disagree" in text, text
    split = _check([-40.0, -44.0, -38.0], flips=1)
    assert "disagree on the top-1" in present.inpainter_check_summary(split)
    assert "lama skipped: not installed" in present.inpainter_check_summary(big)
    df = present.inpainter_check_frame(big)
    assert df["before %"].iloc[0] == 81.2  # rounded, not 14 decimals


def test_history_image_and_plugins_table(edited):
    s, _, _ = edited
    from ic_zoo.analyses.history import history

    h = history(s, "flower2d/squeezenet")
    img = present.history_image(h, width=400, height=200)
    assert img.shape == (200, 400, 3) and img.dtype == np.uint8
    md = present.plugins_markdown(None, ic_zoo.list_plugins("inpainter"))
    assert md.startswith("| kind | name | status | source |") and "`telea`" in md


def test_slow_maps_say_when_the_image_changed_under_them():
    now = SimpleNamespace(version=7, edits=[object(), object()])
    assert present.slow_maps_note((7, 2), now) == "These maps are of the current image (edit 2)."
    # an undo and a new stroke: the same count, another image
    stale = present.slow_maps_note((5, 2), now)
    assert "from edit 2, of an image that has changed since (now at edit 2)" in stale and "compute them again" in stale


def test_a_titled_panel_names_both_classes_above_it():
    from ic_zoo.presentation import present

    img = np.zeros((40, 300, 3), np.uint8)
    out = present.titled(img, "why 'a' rather than 'b'")
    assert out.shape == (62, 300, 3) and (out[:22] < 255).any() and (out[22:] == img).all()


def test_progress_never_goes_backwards_across_steps():
    """Several explainers (or images) each report 0..1: the bar the user sees only moves forward."""
    from ic_zoo.app import guard

    seen = []
    forward = guard.monotonic(lambda f, desc=None: seen.append((f, desc)))
    for f in (0.2, 0.778, 0.667, 0.889, 0.1, 1.0):
        forward(f, desc=f"step at {f}")
    assert [f for f, _ in seen] == [0.2, 0.778, 0.778, 0.889, 0.889, 1.0]
    assert seen[2][1] == "step at 0.667"  # the words still follow the step
    forward(None, desc="indeterminate")  # a non-number passes through
    assert seen[-1] == (None, "indeterminate")


def test_the_status_line_after_a_success_says_what_happened_and_no_earlier_error():
    mask = np.zeros((8, 8), bool)
    mask[:2, :2] = True
    stroke = SimpleNamespace(inpainter="telea", seconds=0.012, area=int(mask.sum()), mask=mask)
    blur = SimpleNamespace(inpainter="blur", seconds=0.003, area=64, mask=np.ones((8, 8), bool))
    line = present.status_line(SimpleNamespace(edits=[stroke]), 0.25, ["resnet"])
    assert line == ("1 edit(s); last inpainted with telea in 12 ms; models and maps in 250 ms; "
                    "**top-1 changed for resnet**")
    assert "blurred" in present.status_line(SimpleNamespace(edits=[stroke, blur]), 0.1, [])
    assert present.status_line(SimpleNamespace(edits=[]), 0.1, [], notice="Resized to 768 px.").startswith(
        "Resized to 768 px. 0 edit(s)")
    assert present.status_line(SimpleNamespace(edits=[]), 0.1, []).startswith("0 edit(s); models")


def test_short_names_are_first_synonyms_only_where_they_name_one_class():
    from ic_zoo.presentation import present

    labels = ["dock, dockage, docking facility", "tabby, tabby cat", "tiger cat", "red petals, green centre",
              "red petals, orange centre", "crane", "crane, bird"]
    short = present.first_synonyms(labels)
    assert short == {"dock, dockage, docking facility": "dock", "tabby, tabby cat": "tabby"}  # "crane" is two
    cell = present.label_cell("tabby, tabby cat", short)
    assert cell == '<span title="tabby, tabby cat">tabby</span>'
    evil = present.label_cell('<img src=x onerror=alert(1)>, "x"')
    assert "<img" not in evil and "&lt;img" in evil and '&quot;x&quot;' in evil


def test_server_paths_are_left_out_of_what_a_page_shows():
    import gradio as gr

    from ic_zoo.presentation import present
    from ic_zoo.errors import WeightsUnavailableError
    from ic_zoo.app.guard import guarded

    sentence = ("'hf-hub:a/b' is not in the cache folder /root/.cache/huggingface/hub and huggingface.co cannot "
                "be reached; see https://huggingface.co/a/b or ~/.cache/torch/x.pt")
    shown = present.md_text(sentence)
    assert "/root" not in shown and "~/.cache" not in shown and "[a folder on the server]" in shown
    assert "hf-hub:a/b" in shown and "https://huggingface.co/a/b" in shown  # a repo id and a URL are kept

    @guarded
    def handler():
        raise WeightsUnavailableError(sentence)

    with pytest.raises(gr.Error) as e:
        handler()
    assert "/root" not in e.value.message and "cache folder [a folder on the server]" in e.value.message
    from ic_zoo.analyses.inpainter_check import InpainterCheck

    check = InpainterCheck(40, "telea", {"lama": "weights not found at /home/u/.cache/torch/hub/big-lama.pt"})
    assert "/home" not in present.inpainter_check_summary(check)
