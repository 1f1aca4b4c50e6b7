"""No silent blanks: a map with no positive evidence (Grad-CAM on a shipped Flower2D ViT whose weighted
activations are all negative) is flagged in the library, its JSON, the app and the CLI, with the
interactive explainers that do give a map of the class for that model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import ic_zoo
from ic_zoo.presentation import present
from ic_zoo.explainers._base import ExplainOutput, is_blank
from ic_zoo.flower2d import generator as g
from ic_zoo.session import MAX_ALTERNATIVES, get_explainer

VIT = "flower2d/vit"


@pytest.fixture(scope="module")
def flowers():
    """Two held-out double-12c flowers, each classified right by the shipped ViT: one whose Grad-CAM map of
    its class is all zero (found by a search over the test split, from index 40 to keep it short: 2 or 3
    in every hundred are blank, the first at 44), and one whose map is not."""
    clf, ex = ic_zoo.get_classifier(VIT), get_explainer("gradcam")
    blank = full = None
    for i in range(40, 400):
        p = g.sample_params("double-12c", 0, "test", i)
        img = g.render(p, 64)[0]
        if clf.predict(img).top1 != p["label"]:
            continue
        flag = bool(ex.explain(clf, clf.preprocess(img), [p["label"]]).blank[0])
        if flag and blank is None:
            blank = (img, p["label"])
        elif not flag and full is None:
            full = (img, p["label"])
        if blank is not None and full is not None:
            return {"blank": blank, "full": full}
    pytest.fail("no test flower in 360 has a blank Grad-CAM map on flower2d/vit any more")


def test_the_flag_is_one_test_for_every_explainer():
    raw = np.zeros((3, 4, 4), np.float32)
    raw[1, 2, 2] = 0.5
    raw[2, 0, 0] = 1e-9  # float round-off of a zero map: still blank
    out = ExplainOutput(raw, raw)
    assert out.blank.tolist() == [True, False, True]
    assert is_blank(raw[0]) is True and is_blank(raw[1]) is False


def test_a_blank_map_is_flagged_with_the_explainers_that_give_one(flowers):
    img, c = flowers["blank"]
    s = ic_zoo.Session(img)
    cm = s.explain(VIT, c, "gradcam")
    assert cm.blank and cm.blank_original and cm.blank_modified
    assert float(cm.raw_original.max()) <= 1e-7
    assert cm.alternatives and len(cm.alternatives) <= MAX_ALTERNATIVES and "gradcam" not in cm.alternatives
    clf = s.classifier(VIT)
    for name in cm.alternatives:  # each one named really gives a map of this class here
        ex = get_explainer(name)
        assert ex.cost == "interactive" and ex.supports(clf) is None
        alt = s.explain(VIT, c, name)
        assert not alt.blank and float(alt.raw_original.max()) > 1e-7, name
    # class-agnostic maps and evidence against the class are no answer to "where is the class?"
    assert not {"eigencam", "fem", "kpcacam", "rollout", "counterfactual-gradcam"} & set(cm.alternatives)
    # the JSON of the map, and of the session's result, say so
    d = json.loads(json.dumps(cm.to_dict()))
    assert d["blank"] is True and d["blank_original"] is True and d["blank_alternatives"] == cm.alternatives
    doc = json.loads(json.dumps(s.evaluate([VIT], "gradcam", map_classes=[c]).to_dict()))
    assert doc["models"][VIT]["maps"][str(c)]["blank"] is True
    # a stroke in a corner: the blank map held no mass to lose there, which is not "0 % of the map"
    corner = np.zeros(img.shape[:2], bool)
    corner[:6, :6] = True
    s.apply(corner, "telea")
    from ic_zoo.analyses.stroke_effect import stroke_effect

    assert stroke_effect(s, VIT, "gradcam", c).mass_in_stroke is None


def test_a_map_with_evidence_is_not_flagged(flowers):
    img, c = flowers["full"]
    cm = ic_zoo.Session(img).explain(VIT, c, "gradcam")
    assert not cm.blank and cm.alternatives is None
    d = cm.to_dict()
    assert d["blank"] is False and "blank_alternatives" not in d
    assert present.blank_text(cm) == ""


def test_the_line_beside_a_blank_map(flowers):
    img, c = flowers["blank"]
    cm = ic_zoo.Session(img).explain(VIT, c, "gradcam")
    line = present.blank_text(cm)
    assert line.startswith("No positive evidence for *") and "gradcam map" in line and line.count(".") >= 1
    assert all(a in line for a in cm.alternatives) and line.endswith("give one for this model.")
    assert "*" not in present.blank_text(cm, markdown=False)
    cm.alternatives = []
    assert "no other interactive explainer gives one" in present.blank_text(cm)


def test_the_app_column_says_so(flowers):
    """What a model's column shows (ui.comparison.model_view, as the app draws it): the line under the
    maps, and the JSON entry of the shown maps."""
    from ic_zoo.app.comparison import model_view

    img, c = flowers["blank"]
    s = ic_zoo.Session(img)
    res = s.evaluate([VIT], "gradcam", map_classes=[])
    view, cm = model_view(s, VIT, res.models[VIT], c, "gradcam", trust=False)
    assert view.panel is not None  # the map is still shown, with the line beside it
    assert present.blank_text(cm) in view.info.split("\n\n")
    assert view.map["blank"] is True and view.map["blank_alternatives"] == cm.alternatives
    img2, c2 = flowers["full"]
    s2 = ic_zoo.Session(img2)
    view2, _ = model_view(s2, VIT, s2.evaluate([VIT]).models[VIT], c2, "gradcam", trust=False)
    assert "No positive evidence" not in view2.info and view2.map["blank"] is False


def test_the_app_api_json_says_so(flowers, tmp_path, monkeypatch):
    """Through the app itself (gradio_client against a local launch): /load of the flower, whose column
    shows the blank map of its top-1, returns that map's entry with "blank": true."""
    monkeypatch.setenv("IC_ZOO_APP_NO_DEMO", "1")
    import app as app_module
    from gradio_client import Client, handle_file

    img, c = flowers["blank"]
    Image.fromarray(img).save(tmp_path / "flower.png")
    demo = app_module.build_demo(models=[VIT])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        out = Client(url, verbose=False).predict(handle_file(str(tmp_path / "flower.png")), [VIT], "gradcam",
                                                 app_module.ROWS[0], api_name="/load")
        doc = out[-1]
        assert doc["models"][VIT]["original"]["top5"][0]["index"] == c  # the class the column's maps show
        entry = doc["models"][VIT]["maps"][str(c)]
        assert entry["blank"] is True and entry["blank_alternatives"]
    finally:
        demo.close()


def test_the_cli_prints_the_line(flowers, tmp_path, capsys):
    from ic_zoo.cli import main

    img, c = flowers["blank"]
    Image.fromarray(img).save(tmp_path / "flower.png")
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[:6, :6] = 255  # a corner of background: the map stays blank
    Image.fromarray(mask).save(tmp_path / "mask.png")
    rc = main(["edit", str(tmp_path / "flower.png"), "--mask", str(tmp_path / "mask.png"), "-m", VIT,
               "--class", str(c), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    entry = doc["models"][VIT]["map_files"][str(c)]
    assert entry["blank"] is True and entry["blank_original"] is True
    line = next(x for x in out.splitlines() if "No positive evidence" in x)
    assert line.startswith(f"{VIT}: No positive evidence for {g.class_names('double-12c')[c]}")
    assert all(a in line for a in entry["blank_alternatives"])
