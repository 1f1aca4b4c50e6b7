"""The part-level protocol (FunnyBirds' definitions, Flower2D's exact re-render): on cases whose answers
are known, each metric gives its known value."""
from __future__ import annotations

import numpy as np
import pytest

from ic_zoo.research import explain_parts as P
from ic_zoo.research.explain_bench import SIZE, select_images
from ic_zoo.flower2d import generator as g
from ic_zoo.session import get_classifier


@pytest.fixture(scope="module")
def resnet12():
    clf = get_classifier("flower2d/resnet")
    return clf, select_images(clf, "double-12c", 6, 0)[0]


def _scores(clf, samples, make_map):
    per = []
    for params, img, parts in samples:
        h = make_map(params, parts)
        per.append(P.score_image(clf, lambda x, cls, h=h: np.stack([h] * len(cls)), params, img, parts, SIZE))
    return P.aggregate(per), per


def test_the_ground_truth_map_scores_what_its_definition_says(resnet12):
    """The mask of the discriminative parts, on images the model classifies by those parts (the recolour
    test): the important parts at the chosen threshold are exactly petal and centre, so CSDC = PC = DC = 1
    (removing both flips the class, keeping only them keeps it), D = 1 (no part whose removal leaves the
    logit within 5% is marked), and TS = 0: the mask is the same map for every class, so it never weights
    a class's own part above another class's map."""
    clf, samples = resnet12
    s, per = _scores(clf, samples, lambda p, parts: g.disc_mask(p, parts).astype(np.float32))
    assert s["csdc"] == 1.0 and s["pc"] == 1.0 and s["dc"] == 1.0 and s["d"] == 1.0, s
    assert s["ts"] == 0.0 and s["ts_pairs"] >= 1
    assert s["com"] == 1.0 and s["mean"] == pytest.approx((1.0 + s["sd"] + 0.0) / 3)
    assert s["bi"] == 1.0  # stem and leaf do not move this model (part selectivity 1.0)
    assert s["sd"] > 0.75  # the two large drops get the two large importances


def test_a_map_on_the_nuisance_parts_is_distracted_and_incomplete(resnet12):
    """A map on stem and leaf only: at the thresholds where it marks only those (lower ones also take in
    the 1 px rim of the petals that touch them, as FunnyBirds' dilation does), it marks irrelevant parts
    (the image's D share is above 0), the minimal sufficient set is missed (CSDC 0), removing them
    changes nothing (DC 0) and keeping only them loses the class (PC 0)."""
    clf, samples = resnet12
    nuisance = lambda p, parts: np.isin(parts, [g.PARTS["stem"], g.PARTS["leaf"]]).astype(np.float32)  # noqa: E731
    _, per = _scores(clf, samples, nuisance)
    for (params, img, parts), r in zip(samples, per):
        h = nuisance(params, parts)
        present = [k for k in P.PARTS if (parts == g.PARTS[k]).any()]
        imp = {k: v for k, v in P.part_importance(h, parts).items() if k in present}
        only = np.array([bool(s) and s <= {"stem", "leaf"} for s in P.important_parts(imp, h.sum())])
        assert only.any()
        assert (r["d"][only] > 0).all() and (r["csdc"][only] == 0).all()
        assert (r["dc"][only] == 0).all() and (r["pc"][only] == 0).all()


def test_part_importance_is_the_mass_inside_each_dilated_part():
    p = g.sample_params("double-12c", 0, "test", 3)
    _, parts = g.render(p, SIZE)
    h = (parts == g.PARTS["centre"]).astype(np.float64)
    imp = P.part_importance(h, parts)
    assert imp["centre"] == h.sum()
    assert imp["petal"] > 0  # the petals touch the centre: the 1 px dilation takes in its rim
    assert imp["stem"] == 0 or imp["stem"] < imp["centre"]
    sets = P.important_parts(imp, h.sum())
    assert sets[0] >= {"centre"} and sets[-1] == {"centre"}


def test_the_removal_gap_compares_inpainting_with_exact_removal(resnet12):
    clf, samples = resnet12
    gap = P.removal_gap(clf, samples[:3], SIZE, inpainters=("telea", "mean_fill", "lama"))
    assert -1 <= gap["telea"]["spearman"] <= 1 and 0 <= gap["telea"]["dc_agreement"] <= 1
    assert gap["telea"]["images"] == 3
    if "unavailable" not in gap["lama"]:
        assert "spearman" in gap["lama"]


def test_the_protocol_runs_from_the_cli_and_writes_its_tables(tmp_path, capsys):
    from ic_zoo.cli import main

    out, md = tmp_path / "parts.json", tmp_path / "parts.md"
    assert main(["explain-bench", "--protocol", "parts", "--quick", "--variants", "double-12c", "--n", "3",
                 "--explainers", "gradcam", "--json", str(out), "--markdown", str(md)]) == 0
    import json

    doc = json.loads(out.read_text())
    names = {r["explainer"] for r in doc["part_protocol"]}
    assert names == {"gradcam", "gt", "random"}
    assert md.read_text() == P.format_markdown(doc) and "ResNet-50 + Input×Gradient" in md.read_text()
    gt = next(r for r in doc["part_protocol"] if r["explainer"] == "gt")["scores"]
    rnd = next(r for r in doc["part_protocol"] if r["explainer"] == "random")["scores"]
    assert gt["com"] > rnd["com"]


def test_a_published_part_table_gains_explainers_without_rerunning_the_rest():
    """explain-bench --protocol parts --update: re-measured rows replace theirs, new ones are added, the
    others stay; a table of other images (another n) is refused with one sentence."""
    from ic_zoo.errors import InputError
    from ic_zoo.research.explain_parts import merge

    def row(e, com):
        return {"variant": "double-12c", "model": "flower2d/resnet", "explainer": e, "control": e == "gt",
                "scores": {"com": com, "images": 4}}

    cfg = {"n": 4, "gap_n": 2, "explainers": ["gradcam", "cam"], "controls": ["gt"], "thresholds": 80}
    old = {"config": {"size": 64}, "parts_config": cfg, "part_protocol": [row("gradcam", 0.5), row("cam", 0.4),
                                                                          row("gt", 1.0)],
           "removal_gap": [{"variant": "double-12c", "model": "flower2d/resnet", "inpainters": {"telea": {}}}]}
    new = {"config": {"size": 64}, "parts_config": {**cfg, "explainers": ["cam", "inputxgradient"]},
           "part_protocol": [row("cam", 0.45), row("inputxgradient", 0.6)], "removal_gap": [], "seconds": 3.0}
    out = merge(old, new)
    got = {r["explainer"]: r["scores"]["com"] for r in out["part_protocol"]}
    assert got == {"gradcam": 0.5, "cam": 0.45, "gt": 1.0, "inputxgradient": 0.6}
    assert out["parts_config"]["explainers"] == ["gradcam", "cam", "inputxgradient"]
    assert out["removal_gap"] == old["removal_gap"] and out["updates"][-1]["explainers"] == ["cam", "inputxgradient"]
    with pytest.raises(InputError, match="n=4"):
        merge(old, {**new, "parts_config": {**new["parts_config"], "n": 6}})
    # a full run (--protocol all --update): the region table's merge carries the part-level rows the same way
    from ic_zoo.research.explain_bench import merge as merge_full

    region = {"config": {"variants": ["double-12c"], "explainers": ["gradcam", "cam"], "n": 4, "seeds": 1,
                         "size": 64, "fractions": [0.0]}, "machine": {}, "results": [], "parts": [], "seconds": 9.0}
    full = merge_full({**old, **region}, {**new, **region, "config": {**region["config"], "explainers": ["cam"]}})
    assert {r["explainer"]: r["scores"]["com"] for r in full["part_protocol"]} == got
    assert full["parts_config"]["explainers"] == ["gradcam", "cam", "inputxgradient"]


def test_the_full_run_reads_the_region_maps_instead_of_explaining_again(monkeypatch):
    """explain-bench --protocol all: the part-level protocol scores the region protocol's own maps of the
    true class (its images are the first seed's first ones), so each is made once, and the scores equal
    those of the part-level protocol run alone."""
    from ic_zoo.research import explain_bench as EB
    from ic_zoo.session import get_explainer

    ex = get_explainer("gradcam")
    calls = []
    real = type(ex).explain

    def counting(self, clf, x, classes, progress=None):
        calls.append(tuple(classes))
        return real(self, clf, x, classes, progress)

    monkeypatch.setattr(type(ex), "explain", counting)
    doc = EB.run(variants=["single-6c"], explainers=["gradcam"], n=3, seeds=1, quick=True, log=lambda s: None,
                 parts=3)
    assert len(calls) == 3  # the region protocol's three maps; single-6c has no TS pairs to explain
    alone = P.run_parts(["single-6c"], None, ["gradcam"], EB.select_images, EB.control_map, n=3, quick=True,
                        size=SIZE, log=lambda s: None)
    assert len(calls) == 6
    shared = {r["explainer"]: r["scores"] for r in doc["part_protocol"]}
    assert shared == {r["explainer"]: r["scores"] for r in alone["part_protocol"]}
    assert {r["explainer"] for r in doc["results"]} == {"gradcam", "gt", "random", "centre"}


def test_target_sensitivity_counts_rounding_noise_as_a_tie(resnet12):
    """A class-agnostic map whose copies differ by float rounding only (KPCA-CAM's two maps of one image
    differ by ~5e-7) scores TS = 0, as an exactly repeated map does; a map that moves to each class's
    shared part scores TS = 1."""
    clf, samples = resnet12
    rng = np.random.default_rng(0)
    noisy, following = [], []
    for params, img, parts in samples:
        h = g.disc_mask(params, parts).astype(np.float32)

        def jitter(x, cls, h=h):
            return np.stack([h + rng.uniform(0, 1e-6, h.shape).astype(np.float32) for _ in cls])

        def follow(x, cls, params=params, parts=parts, h=h):
            y = int(params["label"])
            tc = P.ts_classes(params["variant"], y)
            out = []
            for c in cls:  # the map of c1 sits on its shared petals, the map of c2 on its shared centre
                part = "petal" if tc and c == tc[0] else "centre" if tc and c == tc[1] else None
                out.append(g.part_mask(parts, part).astype(np.float32) if part else h)
            return np.stack(out)

        noisy.append(P.score_image(clf, jitter, params, img, parts, SIZE))
        following.append(P.score_image(clf, follow, params, img, parts, SIZE))
    ts_noisy = [v for r in noisy if r["ts"] is not None for v in r["ts"]]
    ts_follow = [v for r in following if r["ts"] is not None for v in r["ts"]]
    assert ts_noisy and ts_follow
    assert set(ts_noisy) == {0.0} and set(ts_follow) == {1.0}


# -- parts-5c: FunnyBirds' structure, where the protocol separates the maps --------------------------------
@pytest.fixture(scope="module")
def resnet5():
    clf = get_classifier("flower2d-5c/resnet")
    return clf, select_images(clf, "parts-5c", 6, 0)[0]


def test_parts5_items_removals_and_ts_pairs():
    """Six items (five parts and the background objects): 64 subsets per image; TS pairs share disjoint
    parts with the target, and each pair's classes agree with it exactly on their shared parts."""
    assert g.removable("parts-5c") == ("stem", "leaf", "petal", "centre", "pot", "object")
    pairs = {y: P.ts_classes("parts-5c", y) for y in range(10)}
    assert sum(v is not None for v in pairs.values()) >= 6  # classes with no such pair are left out of TS
    for y, pair in pairs.items():
        if pair is None:
            continue
        c1, c2, s1, s2 = pair
        assert y not in (c1, c2) and s1 and s2 and not set(s1) & set(s2)
        for c, s in ((c1, s1), (c2, s2)):
            same = [k for k, a, b in zip(g.P5_PARTS, g.P5_CLASSES[y], g.P5_CLASSES[c]) if a == b]
            assert same == s


def test_parts5_truth_beats_random_and_a_map_on_the_objects_is_distracted(resnet5):
    """On the trained parts-5c ResNet: the class's own set scores PC = D = 1 and CSDC about 1; a map on the
    background objects marks irrelevant items (D < 1) and misses the set (CSDC 0); the random control is
    far below the truth."""
    clf, samples = resnet5
    assert len(samples) == 6
    gt, _ = _scores(clf, samples, lambda p, parts: g.disc_mask(p, parts).astype(np.float32))
    # (a thin stem in a three-part set can hold less than the threshold's share of the mask's mass: CSDC < 1)
    assert gt["csdc"] >= 0.9 and gt["pc"] == 1.0 and gt["d"] == 1.0 and gt["dc"] >= 0.8, gt
    objects, per = _scores(clf, samples, lambda p, parts: (parts == g.PARTS["object"]).astype(np.float32))
    assert objects["csdc"] == 0.0 and objects["d"] < 1.0 and objects["dc"] == 0.0, objects
    rng = np.random.default_rng(0)
    from ic_zoo.research.scoring import control_map

    rnd, _ = _scores(clf, samples, lambda p, parts: control_map("random", g.disc_mask(p, parts), rng))
    assert gt["com"] - rnd["com"] >= 0.2, (gt, rnd)
    rem = P.Removals(clf, samples[0][0], SIZE)
    assert len(rem.subsets) == 64
