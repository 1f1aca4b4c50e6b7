"""Issue 39 item 4: the long table's models recover a planted effect (interval excluding 0) and find none
where none was planted (interval including 0)."""
from __future__ import annotations

import numpy as np
import pytest

from ic_zoo.study import models as M


def _agreement(effect: float, seed: int) -> list[dict]:
    """24 participants x 4 tasks x 2 models: IoU = 0.4 + effect for model B + a participant's and a task's
    own offset + noise."""
    rng = np.random.default_rng(seed)
    pe, te = rng.normal(0, 0.08, 24), rng.normal(0, 0.05, 4)
    rows = []
    for p in range(24):
        for t in range(4):
            for m, add in (("A", 0.0), ("B", effect)):
                rows.append({"participant": f"P{p}", "condition": "", "task": f"t{t}", "model": m, "explainer": "gradcam",
                             "measure": "iou", "value": float(0.4 + add + pe[p] + te[t] + rng.normal(0, 0.06))})
    return rows


def _term(fit, name):
    return next(t for t in fit["terms"] if name in t["term"])


def test_the_mixed_model_recovers_a_planted_model_effect_and_no_effect():
    fit = M.fit_agreement(_agreement(0.1, 1))
    b = _term(fit, "model[T.B")
    assert b["ci_low"] > 0 and b["estimate"] == pytest.approx(0.1, abs=0.03), b
    assert fit["participant_sd"] == pytest.approx(0.08, abs=0.04) and fit["formula"].startswith("iou ~ model")
    nulls = [_term(M.fit_agreement(_agreement(0.0, 100 + k)), "model[T.B") for k in range(20)]
    assert sum(n["ci_low"] < 0 < n["ci_high"] for n in nulls) >= 17  # a 95 % interval: about 19 of 20


def _binary(log_odds: float, seed: int, term="model") -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(40):
        u = rng.normal(0, 0.5)  # a participant's own tendency
        for t in range(6):
            for level, add in (("A", 0.0), ("B", log_odds)):
                prob = 1 / (1 + np.exp(-(-0.2 + add + u)))
                rows.append({"participant": f"P{p}", "condition": level if term == "condition" else "", "task": f"t{t}",
                             "model": level if term == "model" else "m", "explainer": "",
                             "measure": "flipped" if term == "model" else "prediction_correct",
                             "value": float(rng.random() < prob)})
    return rows


def test_the_gee_recovers_a_planted_log_odds_and_no_effect():
    fit = M.fit_binary(_binary(1.0, 3), "flipped", "model", "flips")
    b = _term(fit, "model[T.B")
    assert b["ci_low"] > 0 and b["estimate"] == pytest.approx(1.0 * 0.95, abs=0.35) and b["odds_ratio"] > 1.5
    nulls = [_term(M.fit_binary(_binary(0.0, 200 + k), "flipped", "model", "flips"), "model[T.B") for k in range(20)]
    assert sum(n["ci_low"] < 0 < n["ci_high"] for n in nulls) >= 17
    cond = M.fit_binary(_binary(1.0, 5, "condition"), "prediction_correct", "condition", "prediction accuracy")
    assert _term(cond, "condition[T.B")["ci_low"] > 0


def test_what_cannot_be_fitted_is_one_sentence():
    one_model = [r for r in _agreement(0.1, 1) if r["model"] == "A"]
    assert M.fit_agreement(one_model)["note"].startswith("Not fitted: it needs at least two values of model")
    same = [{**r, "value": 1.0} for r in _binary(0.0, 4)]
    assert M.fit_binary(same, "flipped", "model", "flips")["note"] == "Not fitted: every flipped is 1."
    assert [f["analysis"] for f in M.fit_all(_agreement(0.1, 1))] == ["agreement", "flips", "prediction accuracy"]


def test_the_permutation_test_effect_size_and_ranking_sentence():
    from ic_zoo.study import stats
    from ic_zoo.study.analysis import ranking_note

    assert stats.sign_flip_p([1.0, 1.0, 1.0]) == pytest.approx(2 / 8)  # exact: only all-plus and all-minus
    assert stats.sign_flip_p([1.0, -1.0, 2.0, -2.0]) == pytest.approx(1.0)
    d = np.random.default_rng(0).normal(0.5, 1.0, 40)
    assert stats.sign_flip_p(d) < 0.01 and stats.cohen_dz(d) == pytest.approx(d.mean() / d.std(ddof=1))
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    row = lambda m, iou: {"model": m, "explainer": "gradcam", "iou": iou}  # noqa: E731
    assert "at most 0.05" in ranking_note([row("a", [0.03, 0.0, 0.08]), row("b", [0.01, 0.0, 0.05])])
    assert "cannot tell them apart" in ranking_note([row("a", [0.6, 0.4, 0.7]), row("b", [0.5, 0.35, 0.65])])
    assert "leads" in ranking_note([row("a", [0.7, 0.6, 0.8]), row("b", [0.3, 0.2, 0.4])])
    assert "not tested" in ranking_note([row("a", [0.7, float("nan"), float("nan")]), row("b", [0.3, 0.2, 0.4])])
