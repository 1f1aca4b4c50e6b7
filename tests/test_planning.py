"""Issue 39 item 5: the sample-size planner. Its expected interval width at N, predicted from a pilot, matches
the width the analysis's own intervals have on simulated studies of that N; its power is the share of such
studies that find a planted difference."""
from __future__ import annotations

import numpy as np
import pytest

from ic_zoo.study import planning as P
from ic_zoo.study.stats import bootstrap_weights, mean_interval


def _rows(values: dict, measure="iou", model="m", explainer="gradcam", condition=""):
    return [{"participant": p, "condition": condition, "task": "t0", "model": model, "explainer": explainer,
             "measure": measure, "value": v} for p, v in values.items()]


def test_the_predicted_width_matches_simulated_studies():
    gen = np.random.default_rng(0)
    draw = lambda n: np.clip(gen.normal(0.45, 0.18, n), 0, 1)  # noqa: E731 - the planted population
    pilot = _rows({f"P{k}": float(v) for k, v in enumerate(draw(30))})
    doc = P.plan(pilot, ns=(20, 40), resamples=400)
    fig = doc["figures"][0]
    assert fig["figure"] == "iou: m (gradcam)" and fig["pilot_participants"] == 30
    for n in (20, 40):
        observed = []
        for s in range(200):  # studies of n from the population, with the analysis's own BCa interval
            v = draw(n)
            _, lo, hi = mean_interval(v, bootstrap_weights(n, 300, s))
            observed.append(hi - lo)
        assert fig["width"][n] == pytest.approx(np.median(observed), rel=0.2), (n, fig["width"][n], np.median(observed))


def test_power_rises_with_n_and_is_near_the_test_level_without_a_difference():
    rng = np.random.default_rng(1)
    a = {f"P{k}": float(v) for k, v in enumerate(rng.normal(0.5, 0.1, 25))}
    b = {p: v - 0.05 + float(rng.normal(0, 0.1)) for p, v in a.items()}
    rows = _rows(a, model="A") + _rows(b, model="B")
    doc = P.plan(rows, ns=(10, 40, 80), difference=0.05, resamples=600)
    pw = doc["power"][0]
    assert pw["comparison"] == "iou: A (gradcam) - B (gradcam)" and pw["design"].startswith("paired")
    assert pw["power"][10] < pw["power"][40] < pw["power"][80] and pw["power"][80] > 0.8
    none = P.plan(rows, ns=(40,), difference=0.0, resamples=1000)["power"][0]["power"][40]
    assert none < 0.1  # no difference: found about as often as the test's level, 0.05
    groups = _rows(a, "prediction_correct", condition="maps") + _rows({f"Q{k}": v for k, v in enumerate(b.values())},
                                                                      "prediction_correct", condition="none")
    c = P.plan(groups, ns=(20, 80), difference=0.1, resamples=600)["power"][0]
    assert c["comparison"] == "prediction_correct: maps - none" and c["design"].startswith("conditions")
    assert c["power"][20] < c["power"][80]
    assert "power to detect a difference of 0.1" in P.format_text(P.plan(groups, ns=(20,), resamples=50))
