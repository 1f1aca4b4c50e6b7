"""The Gradio app through gradio_client against a local launch: layout, the edit API, undo/redo/reset,
per-user isolation, one-sentence errors, export, the inpainter and sanity checks."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["IC_ZOO_APP_NO_DEMO"] = "1"
import app as app_module  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from ic_zoo.flower2d import generator as g  # noqa: E402

FLOWERS = ["flower2d/squeezenet", "flower2d/resnet", "flower2d/vit"]


@pytest.fixture(scope="module")
def server():
    demo = app_module.build_demo(models=FLOWERS)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def flower(tmp_path_factory):
    """A held-out double-12c flower, its discriminative mask as a painted (red) layer, and a leaf layer."""
    d = tmp_path_factory.mktemp("flower")
    p = g.sample_params("double-12c", 0, "test", 7001)
    img, parts = g.render(p, 192)
    Image.fromarray(img).save(d / "flower.png")
    for name, m in (("disc", g.disc_mask(p, parts)), ("leaf", g.part_mask(parts, "leaf"))):
        import cv2

        m = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if name == "leaf":
            m &= ~g.disc_mask(p, parts)
        layer = np.zeros(m.shape + (4,), np.uint8)
        layer[m] = (255, 0, 0, 255)
        Image.fromarray(layer).save(d / f"{name}.png")
    (d / "notes.png").write_text("not an image")
    return d, p


def _edit(c, bg, layers=(), models=FLOWERS, inpainter="telea", explainer="gradcam"):
    return c.predict({"background": handle_file(str(bg)), "layers": [handle_file(str(x)) for x in layers],
                      "composite": None}, models, inpainter, explainer, app_module.ROWS[0], api_name="/edit")


def _result(out):
    return out[-1]  # the JSON component: EditResult.to_dict()


def test_layout(server):
    demo, url = server
    cfg = demo.config
    comps = {c.get("props", {}).get("elem_id"): c for c in cfg["components"] if c.get("props", {}).get("elem_id")}
    assert comps["editor"]["type"] == "html" and comps["editor_api"]["type"] == "imageeditor"
    for eid in ("upload", "examples", "models", "inpainter", "explainer", "undo", "redo", "reset", "blur_all",
                "original", "rows", "class_search", "history", "results"):
        assert eid in comps, eid
    # the model columns are fixed slots, hidden until a model is shown in them (no gr.render redraw to race)
    slots = [f"model_{i}" for i in range(app_module.MAX_MODELS)]
    assert all(comps[e]["props"]["visible"] is False for e in slots) and f"model_{app_module.MAX_MODELS}" not in comps
    assert not demo.renderables
    # the galleries of map panels show each panel whole (the default, "cover", cut them to their middle)
    assert all(comps[g]["props"]["object_fit"] == "contain" for g in ("slow_maps", "sanity_maps", "vebi_maps"))
    inpainters = [v for _, v in comps["inpainter"]["props"]["choices"]]
    assert {"telea", "ns", "patchmatch", "lama", "blur", "mean_fill", "pixelate"} <= set(inpainters)
    labels = [lab for lab, _ in comps["explainer"]["props"]["choices"]]
    assert "scorecam (slow)" in labels and "gradcam" in labels
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/edit", "/load", "/undo", "/redo", "/reset", "/blur_all", "/export", "/inpainter_check"} <= set(api)
    md = " ".join(str(c.get("props", {}).get("value", "")) for c in cfg["components"] if c["type"] == "markdown")
    assert "What to try" in md and "Δ pp" in md  # the tutorial


def test_edit_undo_redo_reset(server, flower):
    _, url = server
    d, p = flower
    c = Client(url, verbose=False)
    r0 = _result(_edit(c, d / "flower.png"))
    assert r0["n_edits"] == 0
    for m in FLOWERS:
        assert r0["models"][m]["original"]["top5"][0]["index"] == p["label"]
    out = _edit(c, d / "flower.png", [d / "disc.png"])
    r1 = _result(out)
    assert r1["n_edits"] == 1
    flipped = [m for m in FLOWERS if r1["models"][m]["top1_changed"]]
    assert len(flipped) >= 2, r1
    for m in FLOWERS:
        tr = r1["models"][m]["tracked"][0]
        assert tr["index"] == p["label"] and tr["delta_pp"] < -30
    assert "top-1 changed" in out[-2]
    # the editor now holds the modified image: a stroke on the leaf does not change the flower's class
    edited_bg = out[0]["background"]  # outputs seen by the API: editor first
    r2 = _result(_edit(c, edited_bg, [d / "leaf.png"]))
    assert r2["n_edits"] == 2
    for m in FLOWERS:
        assert abs(r2["models"][m]["tracked"][0]["prob_modified"] - r1["models"][m]["tracked"][0]["prob_modified"]) < 0.1
    settings = (FLOWERS, "gradcam", app_module.ROWS[0])
    assert _result(c.predict(*settings, api_name="/undo"))["n_edits"] == 1
    assert _result(c.predict(*settings, api_name="/undo"))["n_edits"] == 0
    ru = _result(c.predict(*settings, api_name="/undo"))  # nothing left to undo: still fine
    assert ru["n_edits"] == 0 and not any(ru["models"][m]["top1_changed"] for m in FLOWERS)
    assert _result(c.predict(*settings, api_name="/redo"))["n_edits"] == 1
    assert _result(c.predict(*settings, api_name="/blur_all"))["n_edits"] == 2
    assert _result(c.predict(*settings, api_name="/reset"))["n_edits"] == 0


def test_upload_any_format_and_bad_files(server, flower, tmp_path):
    _, url = server
    d, _ = flower
    c = Client(url, verbose=False)
    tif = tmp_path / "flower.tif"
    Image.open(d / "flower.png").save(tif)
    out = c.predict(handle_file(str(tif)), FLOWERS, "gradcam", app_module.ROWS[0], api_name="/load")
    assert _result(out)["n_edits"] == 0
    with pytest.raises(Exception) as info:
        c.predict(handle_file(str(d / "notes.png")), FLOWERS, "gradcam", app_module.ROWS[0], api_name="/load")
    assert "not an image" in str(info.value)
    # the server keeps serving and this user's session is intact
    again = _result(c.predict(FLOWERS, "gradcam", app_module.ROWS[0], api_name="/reset"))
    assert again["n_edits"] == 0 and set(again["models"]) == set(FLOWERS)


def test_unavailable_inpainter_is_one_sentence(server, flower, tmp_path, monkeypatch):
    _, url = server
    d, _ = flower
    c = Client(url, verbose=False)
    _edit(c, d / "flower.png")
    with pytest.raises(Exception) as info:  # not a choice at all: Gradio's own sentence
        _edit(c, d / "flower.png", [d / "disc.png"], inpainter="no_such_inpainter")
    assert "not in the list of choices" in str(info.value)
    # LaMa with its weights neither cached nor downloadable (offline): our sentence, with the way out
    import ic_zoo

    monkeypatch.setenv("IC_ZOO_CACHE", str(tmp_path / "no_cache"))
    monkeypatch.setenv("IC_ZOO_LAMA_URL", "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt")
    ic_zoo.REGISTRY.clear_instances()
    try:
        with pytest.raises(Exception) as info:
            _edit(c, d / "flower.png", [d / "disc.png"], inpainter="lama")
        msg = str(info.value)
        assert "'lama'" in msg and "cannot be reached" in msg and "another inpainter" in msg
    finally:
        ic_zoo.REGISTRY.clear_instances()
    assert _result(_edit(c, d / "flower.png", [d / "disc.png"]))["n_edits"] == 1  # nothing lost, still serving


def test_a_refused_stroke_changes_nothing(server, flower):
    """Issue 36 item 5: every setting of a stroke is checked before it is applied; a refused /edit,
    /apply_mask or /blur_all leaves the stroke count as it was (it used to grow, with the right sentence)."""
    _, url = server
    d, _ = flower
    c = Client(url, verbose=False)
    out = _edit(c, d / "flower.png", [d / "disc.png"])
    assert _result(out)["n_edits"] == 1
    canvas = next(o for o in out if isinstance(o, dict) and o.get("background"))["background"]
    bg = canvas["path"] if isinstance(canvas, dict) else canvas
    for bad, said in (({"models": ["no_such_model_xyz"]}, "no_such_model_xyz"),
                      ({"models": []}, "Select at least one model"),
                      ({"explainer": None}, "no explainer called None"),
                      ({"explainer": "no_such_explainer"}, "not in the list of choices")):  # Gradio's own
        with pytest.raises(Exception) as info:
            _edit(c, bg, [d / "leaf.png"], **bad)
        assert said in str(info.value), (bad, str(info.value))
    with pytest.raises(Exception) as info:
        c.predict([], "gradcam", app_module.ROWS[0], api_name="/blur_all")
    assert "Select at least one model" in str(info.value)
    with pytest.raises(Exception) as info:
        c.predict(handle_file(str(d / "leaf.png")), FLOWERS, "telea", None, app_module.ROWS[0], api_name="/apply_mask")
    assert "no explainer called None" in str(info.value)
    # nothing was applied: the count is still 1, and a good stroke makes it 2
    assert _result(c.predict(FLOWERS, "gradcam", app_module.ROWS[0], api_name="/redo"))["n_edits"] == 1
    assert _result(_edit(c, bg, [d / "leaf.png"]))["n_edits"] == 2
    # one model named as a string (not a list) is that model, not its characters
    assert set(_result(c.predict(FLOWERS[0], "gradcam", app_module.ROWS[0], api_name="/undo"))["models"]) == {FLOWERS[0]}


def test_two_users_never_share_state(server, flower):
    _, url = server
    d, _ = flower
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    _edit(a, d / "flower.png")
    _edit(b, d / "flower.png")
    assert _result(_edit(a, d / "flower.png", [d / "disc.png"]))["n_edits"] == 1
    rb = _result(b.predict(FLOWERS, "gradcam", app_module.ROWS[0], api_name="/undo"))
    assert rb["n_edits"] == 0
    ra = _result(a.predict(FLOWERS, "gradcam", app_module.ROWS[0], api_name="/redo"))
    assert ra["n_edits"] == 1  # b's undo did not touch a's stack


def test_export_inpainter_check_sanity_contrast(server, flower):
    _, url = server
    d, _ = flower
    c = Client(url, verbose=False)
    _edit(c, d / "flower.png")
    _edit(c, d / "flower.png", [d / "disc.png"])
    path = c.predict(FLOWERS, "gradcam", api_name="/export")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"original.png", "modified.png", "masks/edit_01.png", "results.json", "results.csv", "history.csv",
                "meta.json"} <= names
        meta = json.loads(z.read("meta.json"))
        assert set(meta["models"]) == set(FLOWERS) and all(len(v["sha256_16"]) == 16 for v in meta["models"].values())
        assert meta["versions"]["torch"] and meta["inpainters"][0]["name"] == "telea"
        assert any(n.startswith("maps/flower2d_squeezenet/") for n in names)
    summary, table = c.predict(FLOWERS, api_name="/inpainter_check")
    import ic_zoo

    # lama included (available in tests through its file:// mirror); the filler test_browser_events registers
    # to refuse every stroke, when that file ran first in this process, is skipped with its sentence
    names = [p.name for p in ic_zoo.list_plugins("inpainter")]
    refusing = names.count("refuses")
    assert f"over {len(names) - refusing} inpainters" in summary
    assert summary.count("skipped") == refusing
    rows = table["data"]
    assert len({r[2] for r in rows}) >= 6  # every inpainter, plugins included
    gallery, text = c.predict(FLOWERS, "gradcam", api_name="/sanity")
    assert len(gallery) == 2 * len(FLOWERS) and "correlation" in text
    labels = g.class_names("double-12c")
    img = c.predict("flower2d/resnet", labels[0], labels[1], "gradcam", api_name="/contrast")
    assert img and os.path.exists(img)
    assert np.asarray(Image.open(img)).shape[0] > 22 + 256  # the panel under a title naming both classes
    # every interactive explainer's map of the shown class, each against the chosen explainer's: gradcam's own
    # map correlates +1.00 with itself; the map of a class other than the shown one would not be the reference
    gallery, text = c.predict("flower2d/resnet", "gradcam", api_name="/compare_explainers")
    caps = {cap.split(":")[0]: cap for _, cap in ((x["image"], x["caption"]) for x in gallery)}
    assert caps["gradcam"] == "gradcam: ρ +1.00" and "hirescam" in caps and "scorecam" not in caps  # slow: elsewhere
    assert len(gallery) >= 8 and text.startswith("**flower2d/resnet**")
    with pytest.raises(Exception, match="not in the list of choices"):  # one sentence, Gradio's own check
        c.predict("flower2d/nothing", "gradcam", api_name="/compare_explainers")


def test_strokes_outside_a_models_crop_are_invisible_to_it(imagenet_weights, photo, tmp_path):
    """Each model's real input crop: paint only outside it and its prediction cannot change."""
    demo = app_module.build_demo(models=["resnet50.a1_in1k"])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        c = Client(url, verbose=False)
        Image.fromarray(photo).save(tmp_path / "cat.png")
        _edit(c, tmp_path / "cat.png", models=["resnet50.a1_in1k"])
        import ic_zoo

        x0, y0, x1, y1 = ic_zoo.get_classifier("resnet50.a1_in1k").input_box(photo.shape)
        layer = np.zeros(photo.shape[:2] + (4,), np.uint8)
        layer[:, : int(x0) - 6] = (255, 0, 0, 255)  # a band left of the crop
        Image.fromarray(layer).save(tmp_path / "outside.png")
        r = _result(_edit(c, tmp_path / "cat.png", [tmp_path / "outside.png"], models=["resnet50.a1_in1k"]))
        assert r["n_edits"] == 1
        assert all(abs(t["delta_pp"]) < 1e-6 for t in r["models"]["resnet50.a1_in1k"]["tracked"])
    finally:
        demo.close()


def test_vebi_in_the_app(server, flower):
    _, url = server
    d, p = flower
    c = Client(url, verbose=False)
    r = _result(_edit(c, d / "flower.png", [d / "disc.png"], explainer="vebi"))
    assert r["n_edits"] == 1 and all("note" not in r["models"][m] for m in FLOWERS)
    labels = g.class_names("double-12c")
    gallery, text = c.predict("flower2d/resnet", labels[p["label"]], api_name="/vebi_features")
    assert len(gallery) >= 1 and "relevant features" in text and "channel" in text


@pytest.mark.slow
def test_importing_the_app_builds_nothing_until_demo_is_asked_for():
    """Before: `import app` built the whole demo (plugins, zoos, the page) as a side effect. Now
    `app.demo` is built on first use, for `gradio app.py` and `from app import demo`."""
    import subprocess
    import sys

    code = ("import app, gradio as gr; assert 'demo' not in vars(app); d = app.demo; "
            "assert isinstance(d, gr.Blocks) and app.demo is d and vars(app)['demo'] is d; print('ok')")
    env = {k: v for k, v in os.environ.items() if k not in ("IC_ZOO_APP_NO_DEMO", "IC_ZOO_STUDY")}
    out = subprocess.run([sys.executable, "-c", code], cwd=str(Path(app_module.__file__).parent), env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_trust_scores_follow_the_columns(server, flower):
    """The columns come at the stroke's speed; the trust score of every model's maps follows (the /trust
    follow-up, public for API clients): the discriminative map of a flower beats random maps."""
    _, url = server
    d, p = flower
    c = Client(url, verbose=False)
    r = _result(_edit(c, d / "flower.png", [d / "disc.png"]))
    assert "trust" not in r  # not measured inside the stroke
    out = c.predict(FLOWERS[0], api_name="/trust")
    doc = next(o for o in out if isinstance(o, dict) and "models" in o)
    assert set(doc["trust"]) == set(FLOWERS)
    for m in FLOWERS:
        t = doc["trust"][m]
        assert set(t) == {"original", "modified"}
        assert t["original"]["explainer"] == "gradcam" and t["original"]["inpainter"] == "telea"
        assert 0 <= t["original"]["deletion_auc"] <= 1 and 0 <= t["original"]["random_deletion_auc"] <= 1
    assert sum(doc["trust"][m]["original"]["verdict"] == "better than random" for m in FLOWERS) >= 2


def test_slow_maps_come_with_their_trust_scores(server, flower):
    _, url = server
    d, _ = flower
    c = Client(url, verbose=False)
    _edit(c, d / "flower.png", [d / "disc.png"])
    job = c.submit(FLOWERS[:2], "occlusion", api_name="/slow_maps")
    gallery, note = job.result()
    assert len(gallery) == 2 and "current image (edit 1)" in note
    for m in FLOWERS[:2]:
        line = next(x for x in note.splitlines() if m in x)
        assert "Trust (deletion AUC" in line and "original" in line and "modified" in line and "random" in line
    # the refining map's steps, as the job showed them (how many the page saw depends on its polls; their
    # order and content do not): each with the refining note, the map in progress last, the final answer last
    from ic_zoo.app.main.tool_handlers import PREVIEW_NOTE

    *steps, last = job.outputs()
    assert last == (gallery, note)
    for pics, step_note in steps:
        assert step_note == PREVIEW_NOTE and "refining (step" in pics[-1]["caption"]


def test_the_slow_maps_show_the_fast_occlusion_refining_and_end_on_the_same_maps(flower):
    """The slow maps' previews (issue 35): every step of the fast occlusion's refinement, of the original and
    of the edited image, goes out packed like the result (the coarse map first), and the final result is
    the one made without previews, bit for bit."""
    import ic_zoo
    from ic_zoo.app import jobs
    from ic_zoo.app.comparison import slow_maps
    from ic_zoo.explainers.occlusion import SCALES

    d, _ = flower
    s = ic_zoo.Session(np.asarray(Image.open(d / "flower.png").convert("RGB")))
    s.apply(np.asarray(Image.open(d / "disc.png").convert("RGBA"))[..., 3] > 0, "telea")
    m = FLOWERS[0]
    classes = {m: int(s.predict(m, "original").order[0])}
    previews = []
    with_steps = jobs.unpack(slow_maps(s, [m], "occlusion", classes, lambda f, n: None, preview=previews.append))
    s2 = ic_zoo.Session(s.original)
    s2.apply(s.edits[0].mask, "telea")
    plain = jobs.unpack(slow_maps(s2, [m], "occlusion", classes, lambda f, n: None))
    assert with_steps == plain
    assert len(previews) == 2 * len(SCALES)  # per image: the coarse map and each level but the last
    for i, p in enumerate(previews):
        doc, files = jobs.unpack(p)
        assert doc["preview"] is True and set(files) == {"step.png"}
        name, caption = doc["pics"][-1]
        assert name == "step.png" and caption.startswith(f"{m}: ")
        assert caption.endswith(f", refining (step {i + 1}, the image the model sees)")


def test_a_tool_asked_by_a_tab_that_moved_here_is_told_so(server, monkeypatch):
    """The proxy names the replica a tab was pinned to (X-IC-Zoo-Pinned); a tab whose replica stopped asks
    this one for a tool (slow maps, undo, sanity...): the moved sentence, not 'Pick an example'."""
    from ic_zoo.app import serve

    _, url = server
    monkeypatch.setenv("IC_ZOO_REPLICA", "r2")
    for api, args in (("/slow_maps", (FLOWERS[:1], "occlusion")), ("/undo", (FLOWERS, "gradcam", app_module.ROWS[0])),
                      ("/sanity", (FLOWERS[:1], "gradcam"))):
        c = Client(url, verbose=False, headers={serve.PINNED_HEADER: "r1"})
        with pytest.raises(Exception) as info:
            c.predict(*args, api_name=api)
        assert serve.MOVED in str(info.value), (api, info.value)
    with pytest.raises(Exception, match="Pick an example or upload an image first"):  # never pinned: no image yet
        Client(url, verbose=False).predict(FLOWERS[:1], "occlusion", api_name="/slow_maps")


def test_a_stroke_answers_the_status_line_first_then_the_columns(server):
    """The page's stroke is answered in two steps (issue 35): first the canvas's new image and the status line
    naming the new edit, with nothing of the columns (they still show the last edit); then the columns of
    this edit, their maps, the JSON, and the status line and the image again, so that the last answer alone
    is the whole result (what an API client reads)."""
    from ic_zoo import imageio

    _, url = server
    image = str(Path(__file__).resolve().parents[1] / "examples" / "flower2d" / "images" / "test_09001.png")
    settings = [FLOWERS, "telea", "gradcam", "original top-5 (tracked)"]
    h, w = imageio.load_image(image).shape[:2]
    stroke = {"v": "1", "w": w, "h": h, "strokes": [{"id": 1, "r": 9.0, "pts": [w * 0.35, h * 0.4, w * 0.6, h * 0.5]}]}
    c = Client(url, verbose=False)
    c.predict(handle_file(image), FLOWERS, "gradcam", settings[-1], api_name="/load")
    job = c.submit(stroke, *settings, api_name="/stroke")
    job.result()
    first, last = job.outputs()
    def changed(out):  # (an unchanged component comes as an empty update; an HTML one with empty props)
        return [i for i, v in enumerate(out) if not (isinstance(v, dict) and v.get("__type__") == "update"
                                                     and not {k: x for k, x in v.items() if k != "__type__"
                                                              and x != {"__type__": "update"}})]
    # the first answer: the canvas (its new image, acknowledging stroke 1) and the status line, nothing else
    assert len(changed(first)) == 2, changed(first)
    canvas, status = (first[i] for i in changed(first))
    assert canvas["ack"] == 1 and canvas["src"].startswith("data:image/jpeg")
    assert status.startswith("1 edit(s);") and "models (their maps follow) in" in status
    # the last: everything, the columns stamped with this edit, the same image, the status with the maps' time
    assert "columns of edit 1." in last
    assert canvas in last
    assert any(isinstance(v, str) and v.startswith("1 edit(s);") and "models and maps in" in v for v in last)
    assert last[-1]["n_edits"] == 1 and set(last[-1]["models"]) == set(FLOWERS)


def test_a_stroke_as_points_is_the_same_edit_as_its_mask(server, tmp_path):
    """/stroke (the page's canvas: points) makes the same edit as /edit with the mask those points paint as
    its stroke layer; the same ids again change nothing; a malformed stroke: one sentence, nothing changed."""
    from gradio_client.exceptions import AppError

    from ic_zoo import imageio
    from ic_zoo.app import painter

    _, url = server

    image = str(Path(__file__).resolve().parents[1] / "examples" / "flower2d" / "images" / "test_09001.png")
    settings = [FLOWERS, "telea", "gradcam", "original top-5 (tracked)"]
    h, w = imageio.load_image(image).shape[:2]
    pts = [w * 0.35, h * 0.40, w * 0.55, h * 0.42, w * 0.60, h * 0.55]
    stroke = {"v": "1", "w": w, "h": h, "strokes": [{"id": 1, "r": 9.0, "pts": pts}]}
    mask = painter.stroke_mask(painter.parse(stroke, 0)[0], (h, w), (h, w))
    layer = np.zeros((h, w, 4), np.uint8)
    layer[mask] = (255, 0, 0, 255)
    Image.fromarray(layer).save(tmp_path / "layer.png")

    a, b = Client(url, verbose=False), Client(url, verbose=False)
    a.predict(handle_file(image), FLOWERS, "gradcam", settings[-1], api_name="/load")
    b.predict(handle_file(image), FLOWERS, "gradcam", settings[-1], api_name="/load")
    ra = a.predict(stroke, *settings, api_name="/stroke")
    rb = b.predict({"background": handle_file(image), "layers": [handle_file(str(tmp_path / "layer.png"))],
                    "composite": None}, *settings, api_name="/edit")
    ja, jb = ra[-1], rb[-1]
    assert ja["n_edits"] == jb["n_edits"] == 1
    for m in FLOWERS:  # the same edit: the same probabilities to the last digit
        assert ja["models"][m]["modified"]["top5"] == jb["models"][m]["modified"]["top5"], m
    # the same stroke sent again (the page resends until acknowledged): applied once
    a.predict(stroke, *settings, api_name="/stroke")  # nothing new: nothing changes (the next is edit 2, not 3)
    two = dict(stroke, strokes=stroke["strokes"] + [{"id": 2, "r": 5.0, "pts": [w * 0.2, h * 0.8]}])
    assert a.predict(two, *settings, api_name="/stroke")[-1]["n_edits"] == 2
    # a malformed stroke: one sentence, nothing changed
    with pytest.raises(AppError) as e:
        a.predict(dict(stroke, strokes=[{"id": 3, "r": -1, "pts": [1, 1]}]), *settings, api_name="/stroke")
    assert "radius must be between" in str(e.value)
    assert a.predict(FLOWERS, "gradcam", settings[-1], api_name="/undo")[-1]["n_edits"] == 1


def test_a_tab_is_sent_a_components_props_once():
    """Issue 35: a prop update (a column's visibility, a picture's label) makes Gradio rebuild the component and
    its config on every event; a stroke sent ten. They go when they change, and again to a new tab (a reloaded
    page starts from the layout's props)."""
    import gradio as gr

    from ic_zoo.app.comparison import props_once, value_with_props
    from ic_zoo.app.main.state import AppState

    with gr.Blocks():
        col, pic = gr.Column(visible=False), gr.Image()
    st = AppState()
    assert props_once(st, col, visible=True) == {col: gr.update(visible=True)}
    assert props_once(st, col, visible=True) == {}  # the page has it
    assert props_once(st, col, visible=False) == {col: gr.update(visible=False)}
    frame = np.zeros((2, 2, 3), np.uint8)
    first = value_with_props(st, pic, frame, label="Modified: cat")
    assert first["label"] == "Modified: cat" and first["value"] is frame
    assert value_with_props(st, pic, frame, label="Modified: cat") is frame  # a plain value: no rebuild
    assert value_with_props(st, pic, frame, label="Modified: dog")["label"] == "Modified: dog"
    assert props_once(AppState(), col, visible=False) == {col: gr.update(visible=False)}  # a new tab


def test_the_domain_button_is_sent_once_while_the_mismatch_lasts():
    """The domain line's button (models and image do not fit) is a prop update: sent when it changes, not with
    every stroke (it was recorded hidden and then shown on each event, so every stroke rebuilt it)."""
    from types import SimpleNamespace

    import gradio as gr

    from ic_zoo.app.main.context import AppContext
    from ic_zoo.app.main.state import AppState

    with gr.Blocks():
        md, btn, js = gr.Markdown(), gr.Button(visible=False), gr.JSON()
    ctx = SimpleNamespace(ui=SimpleNamespace(results=SimpleNamespace(domain_md=md, domain_btn=btn),
                                             tools=SimpleNamespace(result_json=js)),
                          result_doc=lambda st, names, res, mismatch=None: {"mismatch": mismatch})
    st = AppState()
    st.domain = "imagenet"
    first = AppContext.domain_and_json(ctx, st, FLOWERS, None)
    assert first[btn]["visible"] is True and "Flower2D" in first[md] and first[js]["mismatch"]
    again = AppContext.domain_and_json(ctx, st, FLOWERS, None)
    assert btn not in again and again[md] == first[md]  # the page has the button already
    st.domain = "flower2d"
    fits = AppContext.domain_and_json(ctx, st, FLOWERS, None)
    assert fits[btn] == gr.update(visible=False) and fits[md] == "" and not fits[js]["mismatch"]
