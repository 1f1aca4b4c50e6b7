"""LIME by inpainting: superpixels judged against many backgrounds of others removed. Where the class is
repeated across parts (single-6c: every petal shows the colour), one-at-a-time occlusion paints the small
centre disc as hot as the petals; LIME finds the petals. The ridge fit recovers a known linear model; the
subsets are drawn from a fixed seed, inpainted once and shared by every model that sees the same pixels."""
from __future__ import annotations

import numpy as np
import pytest

import ic_zoo
from ic_zoo.analyses.metrics import pointing, top_m_iou
from ic_zoo.research.explain_bench import select_images
from ic_zoo.explainers import occlusion as occ
from ic_zoo.flower2d import generator as g


@pytest.fixture(scope="module")
def six():
    clf = ic_zoo.create("classifier", "flower2d-6c/resnet", pretrained=True, device="cpu")
    samples, _ = select_images(clf, "single-6c", 4, 0)
    return clf, samples


def test_lime_finds_repeated_evidence_that_occlusion_misses(six):
    clf, samples = six
    lime, occlusion = ic_zoo.create("explainer", "lime"), ic_zoo.create("explainer", "occlusion")
    scores = {"lime": [], "occlusion": []}
    for p, img, parts in samples:
        m = g.disc_mask(p, parts)
        x = clf.preprocess(img)
        for name, ex in (("lime", lime), ("occlusion", occlusion)):
            h = ex.explain(clf, x, [p["label"]]).raw[0]
            scores[name].append((top_m_iou(h, m), pointing(h, m)))
    lime_iou, lime_pt = np.mean(scores["lime"], 0)
    occ_iou, _ = np.mean(scores["occlusion"], 0)
    assert lime_iou >= 0.85 and lime_pt == 1.0, scores
    assert lime_iou > occ_iou + 0.15, scores


def test_ridge_recovers_a_linear_model():
    rng = np.random.default_rng(0)
    kept = rng.random((400, 12)) < 0.5
    w = np.linspace(-1, 1, 12)
    p = (kept @ w + 3.0)[:, None]
    np.testing.assert_allclose(occ.ridge(kept, p, 0.0)[:, 0], w, atol=1e-8)
    shrunk = occ.ridge(kept, p, 50.0)[:, 0]
    assert np.all(np.abs(shrunk) < np.abs(w)) and np.all(np.diff(shrunk) > 0)  # shrunk, order kept


def test_subsets_are_seeded_inpainted_once_and_shared(six):
    clf, samples = six
    _, img, _ = samples[0]
    small = ic_zoo.create("explainer", "lime", n_segments=(30,), samples=32)
    x = clf.preprocess(img)
    a = small.explain(clf, x, [0, 1])
    seen = clf.tensor_to_image(x)
    c = occ.coalitions(seen, 30, "telea", 32, small.keep, 0, 1)
    assert c._images is not None  # made by the call above, kept for the next model
    other = ic_zoo.create("classifier", "flower2d-6c/squeezenet", pretrained=True, device="cpu")
    assert other.tensor_to_image(other.preprocess(img)).tobytes() == seen.tobytes()
    assert occ.coalitions(seen, 30, "telea", 32, small.keep, 0, 1) is c  # the same subsets for another model
    b = small.explain(clf, x, [0, 1])
    np.testing.assert_array_equal(a.raw, b.raw)
    kept, ims = c.images()
    pos = np.searchsorted(c.s.ids, c.s.seg)
    import cv2

    left = kept[0][pos].astype(np.uint8)  # superpixels left in place, less the 1 px the removal is dilated by
    eroded = cv2.erode(left, np.ones((3, 3), np.uint8)) > 0
    assert eroded.any()
    assert (ims[0][eroded] == seen[eroded]).all()


def test_bad_parameters_are_one_sentence():
    from ic_zoo.errors import InputError

    with pytest.raises(InputError, match="samples"):
        ic_zoo.create("explainer", "lime", samples=3)
    with pytest.raises(InputError, match="keep"):
        ic_zoo.create("explainer", "lime", keep=1.5)


def test_parallel_removal_equals_one_at_a_time_and_keeps_refusals_in_place(monkeypatch):
    """Batch removals (LIME's subsets, occlusion's superpixels) fill several masks at once on a
    thread-safe inpainter; the images are the serial ones, in order, and a mask the inpainter refuses
    (too little context) stays a MaskError at its own position rather than shifting the rest."""
    import cv2

    from ic_zoo.errors import MaskError

    rng = np.random.default_rng(3)
    image = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    masks = [rng.random((48, 48)) < f for f in (0.05, 0.1, 1.0, 0.15, 0.0, 0.2) * 6]
    s = occ.Segmentation(image, 30, "telea", 1)
    from ic_zoo.inpainters import _base

    monkeypatch.setattr(_base, "THREADS", 1)
    serial = s.remove_many(masks)
    monkeypatch.setattr(_base, "THREADS", 2)
    parallel = s.remove_many(masks)
    assert len(parallel) == len(masks)
    for a, b, m in zip(serial, parallel, masks):
        assert isinstance(a, MaskError) == isinstance(b, MaskError) == bool(m.all())
        if not m.all():
            assert np.array_equal(a, b)
            grown = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # dilate=1
            assert np.array_equal(b[~grown], image[~grown])
    assert np.array_equal(parallel[4], image)  # an empty removal is the image itself


def test_pointing_misses_records_the_plateau_and_the_exact_part_removal():
    """benchmarks/pointing_misses.py, small form: Grad-CAM on the single-6c ResNet misses the petals on
    most images (pointing 0.47 in the table); each miss says how much of the map's top plateau lies in the
    mask (below 1, since its peak pixel is outside) and p(class) with the peak's part re-rendered away,
    which equals the model's own p(class) on that re-render."""
    import importlib.util
    import torch
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "pointing_misses", Path(__file__).resolve().parents[1] / "benchmarks" / "pointing_misses.py")
    pm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pm)
    r = pm.misses("flower2d-6c/resnet", "single-6c", "gradcam", 4, 1)
    assert r["images"] == 4 and r["misses"], r
    clf = ic_zoo.create("classifier", "flower2d-6c/resnet", pretrained=True, device="cpu")
    samples, _ = select_images(clf, "single-6c", 4, 0)
    for miss in r["misses"]:
        assert miss["plateau_px"] >= 1 and 0.0 <= miss["plateau_in_mask"] < 1.0
        assert miss["part_at_peak"] != "petal"
        p, img, parts = samples[miss["image"]]
        gone = g.render(p, img.shape[0], remove=[miss["part_at_peak"]])[0]
        with torch.inference_mode():
            want = torch.softmax(clf.forward(clf.image_to_tensor(gone[None])).float(), 1)[0, p["label"]].item()
        assert abs(miss["p_class_part_removed"] - want) < 1e-3
        assert 0.0 <= miss["p_class"] <= 1.0
        kept, gone = miss["p_class_half_mask_removed"], miss["p_class_half_mask_and_part_removed"]
        assert 0.0 <= kept <= 1.0 and 0.0 <= gone <= 1.0
    # an empty part changes nothing, and the draws are seeded (the same figures again); the whole mask
    # removed as well costs the class more than half of it
    p, img, parts = samples[0]
    m = g.disc_mask(p, parts)
    kept, same = pm.half_mask_removed(clf, img, m, np.zeros_like(m), p["label"], 7)
    assert kept == same and (kept, same) == pm.half_mask_removed(clf, img, m, np.zeros_like(m), p["label"], 7)
    assert pm.half_mask_removed(clf, img, m, m, p["label"], 7)[1] < kept


def test_another_class_costs_no_forward_pass_and_gives_the_same_map(six):
    """Each model classifies the subsets once and keeps every class: the map of a second class, asked for
    alone, is the one a joint call gives, with no forward pass; another model classifies them itself."""
    clf, samples = six
    _, img, _ = samples[1]
    small = ic_zoo.create("explainer", "lime", n_segments=(30,), samples=32)
    x = clf.preprocess(img)
    joint = small.explain(clf, x, [0, 3]).raw
    calls = []
    real = clf.forward
    clf.forward = lambda t: (calls.append(len(t)), real(t))[1]
    try:
        alone = small.explain(clf, x, [3]).raw
    finally:
        del clf.forward
    assert calls == []
    np.testing.assert_allclose(alone[0], joint[1], rtol=1e-6, atol=1e-9)
    other = ic_zoo.create("classifier", "flower2d-6c/squeezenet", pretrained=True, device="cpu")
    real_o = other.forward
    other.forward = lambda t: (calls.append(len(t)), real_o(t))[1]
    small.explain(other, other.preprocess(img), [3])
    assert sum(calls) == len(occ.coalitions(clf.tensor_to_image(x), 30, "telea", 32, small.keep, 0, 1).images()[1])
