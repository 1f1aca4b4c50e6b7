"""Issue 40 item 2: the real-photo localisation benchmark. The photos are read from installed packages; each
drawn mask has its photo's size and goes through the model's own resize and crop; the sanity rows hold (the
mask scores 1.0, a random map the mask's area share); a mask of the wrong size is one sentence; a missing
package's photos are skipped with the reason; the command runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ic_zoo.errors import InputError
from ic_zoo.research import explain_photos as P

LITE0 = "tf_efficientnet_lite0.in1k"


def test_every_mask_is_its_photos_size_and_neither_empty_nor_full():
    for p in P.PHOTOS:
        img, mask = P.load(p)
        if img is None:  # its package is not installed here
            continue
        assert mask.dtype == bool and 0.02 < mask.mean() < 0.7, p.id


def test_the_mask_goes_through_the_models_own_resize_and_crop():
    import cv2

    from ic_zoo.session import get_classifier

    clf = get_classifier(LITE0)
    img, mask = P.load(P.PHOTOS[0])
    x, seen, m = P.model_frame(clf, img, mask)
    assert m.shape == seen.shape[:2] == tuple(x.shape[-2:])
    x0, y0, x1, y1 = (int(round(v)) for v in clf.input_box(img.shape))  # the region the model sees
    ref = cv2.resize(mask[max(y0, 0):y1, max(x0, 0):x1].astype(np.uint8), m.shape[::-1],
                     interpolation=cv2.INTER_NEAREST) > 0
    assert (ref & m).sum() / (ref | m).sum() > 0.95


def test_the_sanity_rows_hold_on_every_photo():
    """gt: top-|M| IoU, pointing and energy 1; random: energy and pointing about the area share (+-0.05)."""
    doc = P.run_photos(models=[LITE0], explainers=[], log=lambda s: None)
    rows = {r["explainer"]: r["metrics"] for r in doc["results"]}
    assert rows["gt"]["top_m_iou"] == pytest.approx(1.0) and rows["gt"]["pointing"] == 1.0
    assert rows["gt"]["energy"] == pytest.approx(1.0)
    area = float(np.mean(list(doc["areas"][LITE0].values())))
    assert abs(rows["random"]["energy"] - area) <= 0.05, (rows["random"], area)
    assert rows["gt"]["deletion_auc"] < rows["random"]["deletion_auc"]  # the object matters to the model
    assert np.isnan(rows["gt"]["road"]) and doc["skipped"] == []
    assert "| *gt* (control) | 1.00 / 1.00 / 1.00 /" in P.format_markdown(doc)


def test_a_wrong_sized_mask_is_one_sentence_and_a_missing_package_is_skipped(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "coffee.png")
    monkeypatch.setattr(P, "MASKS", tmp_path)
    with pytest.raises(InputError, match=r"The mask of coffee is 20 x 10 but its photo is 600 x 400"):
        P.load(P.PHOTOS[0])
    gone = P.Photo("gone", "no_such_package_here", "x.png", 1, "nothing", "never")
    monkeypatch.setattr(P, "PHOTOS", (gone,))
    doc = P.run_photos(models=[LITE0], explainers=[], log=lambda s: None)
    assert doc["photos"] == [] and doc["skipped"] == [
        "gone: the package 'no_such_package_here' is not installed, so its photo x.png is skipped."]


def test_the_command_scores_an_explainer_on_a_photo(tmp_path, capsys):
    from ic_zoo.cli import main

    out = tmp_path / "p.json"
    assert main(["explain-bench", "--protocol", "photos", "--models", LITE0, "--explainers", "gradcam",
                 "--photos", "cheetah", "--json", str(out), "--markdown", str(tmp_path / "p.md")]) == 0
    doc = json.loads(out.read_text())
    g = next(r for r in doc["results"] if r["explainer"] == "gradcam")
    assert set(g["per_photo"]) == {"cheetah"} and 0 <= g["metrics"]["top_m_iou"] <= 1
    assert (tmp_path / "p_photos.md").read_text().startswith("| photo | from |")
    assert "| gradcam |" in capsys.readouterr().out
