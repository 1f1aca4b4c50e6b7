"""Issue 39 item 6: groups compared in one humans-vs-models analysis (the conditions of a study, or several
studies): on a planted long table the comparison finds the planted difference (interval excluding 0, right
sign, Hedges' g near the planted standardised difference, the mixed model's group term) and none where none
was planted; Holm adjusts over the whole table; studies of other pictures are one sentence."""
from __future__ import annotations

import numpy as np
import pytest

from ic_zoo.study import groups as G
from ic_zoo.study.errors import StudyError


def _planted(effect: float = 0.15, n: int = 14, seed: int = 3) -> list[dict]:
    """Two groups x n participants x 2 tasks x 2 model maps: IoU 0.4 + a participant's offset + noise, and
    group B higher by ``effect`` on model X only; flips at 0.5 in both groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in ("A", "B"):
        for p in range(n):
            off = rng.normal(0, 0.05)
            for t in ("t0", "t1"):
                for m in ("X", "Y"):
                    v = 0.4 + off + (effect if (g == "B" and m == "X") else 0.0) + rng.normal(0, 0.05)
                    base = {"participant": f"P{p:02d}", "condition": "", "group": g, "task": t, "model": m}
                    rows += [{**base, "explainer": "gradcam", "measure": "iou", "value": float(v)},
                             {**base, "explainer": "", "measure": "flipped", "value": float(rng.random() < 0.5)}]
    return rows


def test_hedges_g_by_hand():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    pooled = np.sqrt((3 * np.var(a, ddof=1) + 2 * np.var(b, ddof=1)) / 5)
    assert G.hedges_g(a, b) == pytest.approx((2.5 - 4.0) / pooled * (1 - 3 / (4 * 7 - 9)))
    assert np.isnan(G.hedges_g(a[:1], b)) and np.isnan(G.hedges_g(np.ones(3), np.ones(3)))


def test_the_planted_group_difference_is_found_and_the_null_is_not():
    res = G.compare(_planted(), ["A", "B"], n_boot=1000, n_perm=2000, seed=0)
    d = {(r["task"], r["model"], r["measure"]): r for r in res["differences"]}
    x, y = d[("all", "X", "iou")], d[("all", "Y", "iou")]
    assert x["groups"] == "A - B" and x["n"] == [14, 14]
    assert x["difference"][2] < 0 and abs(x["difference"][0] + 0.15) < 0.04  # B above A by the planted 0.15
    assert x["p_permutation"] < 0.001 and x["p_holm"] < 0.01 and x["hedges_g"] < -2
    assert y["difference"][1] < 0 < y["difference"][2] and y["p_holm"] > 0.05  # no effect planted on Y
    assert all(r["p_holm"] >= r["p_permutation"] for r in res["differences"])  # Holm only raises p
    f = d[("all", "X", "flipped")]
    assert f["difference"][1] < 0 < f["difference"][2]
    means = {(r["group"], r["task"], r["model"], r["measure"]): r["mean"] for r in res["by_group"]}
    assert means[("B", "t0", "X", "iou")][1] > means[("A", "t0", "X", "iou")][2]  # the intervals do not overlap
    fit = res["models"][0]
    assert fit["formula"] == "iou ~ model + condition + (1 | participant) + (1 | task)"
    term = next(t for t in fit["terms"] if "condition" in t["term"])
    assert term["ci_low"] > 0 and abs(term["estimate"] - 0.075) < 0.04  # B - A averaged over X and Y


def test_a_comparison_needs_two_groups_and_studies_of_the_same_pictures(monkeypatch, tmp_path):
    with pytest.raises(StudyError, match="two groups or more"):
        G.compare(_planted(), ["A"])
    from ic_zoo.study import analysis

    docs = iter([{"title": "one", "study": "k1", "tasks": [{"task": "t0", "image_sha": "aaa"}], "long": []},
                 {"title": "two", "study": "k2", "tasks": [{"task": "t0", "image_sha": "bbb"}], "long": []}])
    monkeypatch.setattr(analysis, "analyze", lambda *a, **k: next(docs))
    monkeypatch.setattr("ic_zoo.study.db.open_engine", lambda url: type("E", (), {"dispose": lambda self: None})())
    from ic_zoo.study.compare import compare_studies

    with pytest.raises(StudyError, match="Task t0 shows another image in two than in one"):
        compare_studies(["sqlite:///a", "sqlite:///b"], tmp_path)
    with pytest.raises(StudyError, match="one --name per --db"):
        compare_studies(["sqlite:///a", "sqlite:///b"], tmp_path, names=["x"])
