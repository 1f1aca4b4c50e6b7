"""Groups compared in one humans-vs-models analysis: the conditions of one study, or several studies of the
same task images (``python -m ic_zoo study compare``).

The analysis reads the per-participant long table (``models.py``: one value per participant x task x model
x measure), each row tagged with its participant's **group** (the condition given at consent, or the study
it came from). For every task (and ``all``: each participant's mean over the tasks they did), every model
map and every measure:

- **Per group**: the mean of its participants' values with a 95 % BCa interval over participants
  (``stats.mean_interval``).
- **Between two groups** (every pair, first minus second): the difference of the means with a 95 % BCa
  interval (participants resampled within each group; ``simulation.difference``), a two-sided permutation
  p (group labels shuffled among the two groups' participants), and Hedges' g (the difference over the
  pooled standard deviation, small-sample corrected). The p values are Holm-adjusted over the whole family:
  every task x model map x measure x pair of the comparison (``p_holm``).
- **The mixed model**: ``iou ~ model + group + (1 | participant) + (1 | task)`` on the long table of every
  group, and the flips as a logistic GEE on the group (``models.py``), the group being the ``condition``
  column there.

The measures compared: ``iou`` and ``spearman`` (a participant's own final removal against the model's map),
``flipped``, ``drop_pp_per_removed_pct`` and ``human_minus_random_pp`` (how much more their final removal
lowered the class's probability than the same mask at random places).

The statistics only: ``analysis`` renders them in a study's report, ``compare`` runs several studies.
"""
from __future__ import annotations

import itertools

import numpy as np

from .errors import StudyError
from .stats import bootstrap_weights, holm, mean_interval

MEASURES = ("iou", "spearman", "flipped", "drop_pp_per_removed_pct", "human_minus_random_pp")
BY_GROUP_COLUMNS = ["task", "model", "explainer", "measure", "group", "participants", "mean"]
DIFFERENCE_COLUMNS = ["task", "model", "explainer", "measure", "groups", "n_first", "n_second", "difference", "hedges_g",
                      "p_permutation", "p_holm"]


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """The standardised difference of two independent groups' means: (mean a - mean b) over the pooled
    standard deviation, times Hedges' small-sample correction 1 - 3 / (4 (na + nb) - 9). NaN when either
    group has fewer than two values or both are constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return float("nan")
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9)))


def _values(rows: list[dict]) -> dict:
    """(task, model, explainer, measure) -> group -> participant -> value, with ``all`` tasks as each
    participant's mean over their tasks."""
    out: dict = {}
    for r in rows:
        if r["measure"] in MEASURES and np.isfinite(r["value"]):
            out.setdefault((r["task"], r["model"], r["explainer"], r["measure"]), {}).setdefault(
                r["group"], {}).setdefault(r["participant"], []).append(float(r["value"]))
    tasks = {k[0] for k in out}
    if len(tasks) > 1:
        for (t, m, e, ms), by in list(out.items()):
            agg = out.setdefault(("all", m, e, ms), {})
            for g, people in by.items():
                for p, v in people.items():
                    agg.setdefault(g, {}).setdefault(p, []).extend(v)
    return {k: {g: np.array([np.mean(v) for _, v in sorted(p.items())]) for g, p in by.items()}
            for k, by in out.items()}


def compare(rows: list[dict], groups: list[str], n_boot: int = 2000, n_perm: int = 10000, seed: int = 0) -> dict:
    """The comparison (module docstring) of the long table ``rows`` (each with a ``group``) between
    ``groups``, in that order. ``by_group`` and ``differences`` rows, and ``models`` (the mixed model and the
    GEE, or a sentence why not)."""
    from . import models
    from .simulation import difference

    if len(groups) < 2:
        raise StudyError("A comparison needs two groups or more (conditions of one study, or several studies).")
    values = _values(rows)
    doc: dict = {"groups": list(groups), "by_group": [], "differences": []}
    for key in sorted(values, key=lambda k: (k[0] != "all", k[0], k[1], k[2], MEASURES.index(k[3]))):
        by = values[key]
        base = dict(zip(("task", "model", "explainer", "measure"), key))
        for g in groups:
            v = by.get(g, np.zeros(0))
            doc["by_group"].append({**base, "group": g, "participants": len(v),
                                    "mean": mean_interval(v, bootstrap_weights(len(v), n_boot, seed))})
        for x, y in itertools.combinations(groups, 2):
            a, b = by.get(x, np.zeros(0)), by.get(y, np.zeros(0))
            r = difference(a, b, n_boot, n_perm, seed)
            doc["differences"].append({**base, "groups": f"{x} - {y}", "n": r["n"], "n_first": r["n"][0],
                                       "n_second": r["n"][1], "difference": r["difference"],
                                       "hedges_g": hedges_g(a, b), "p_permutation": r["p_permutation"]})
    for r, p in zip(doc["differences"], holm([r["p_permutation"] for r in doc["differences"]])):
        r["p_holm"] = p
    # the models: the group as the long table's condition, each participant known by group and id (two
    # studies may both have a P01)
    as_condition = [{**r, "condition": r["group"], "participant": f"{r['group']}/{r['participant']}"} for r in rows]
    try:
        doc["models"] = [models.fit_agreement(as_condition, "iou", term="model + condition"),
                         models.fit_binary(as_condition, "flipped", "condition", "flips by group")]
    except ImportError:  # statsmodels is the 'stats' extra
        doc["models"] = [{"analysis": "agreement", "formula": "", "terms": [],
                          "note": "Not fitted: the models need statsmodels (pip install 'ic-zoo[stats]')."}]
    return doc


def of_conditions(doc: dict, names: list[str], n_boot: int, seed: int) -> dict | None:
    """The conditions of one analysed study compared (``analysis.analyze``'s ``doc``), or None without two
    conditions that have participants in the long table."""
    rows = [{**r, "group": r["condition"]} for r in doc.get("long", []) if r["condition"]]
    present = [c for c in names if any(r["group"] == c for r in rows)]
    if len(present) < 2:
        return None
    return compare(rows, present, n_boot=n_boot, seed=seed)
