"""Statistics as papers report them: the per-participant long table and the models fitted to it (statsmodels).

The **long table** (``participants_long.csv``): one row per participant x task x model x measure, with the
columns ``participant, condition, task, model, explainer, measure, value``. The measures: ``iou`` and
``spearman`` (the participant's own final removal against the model's map: IoU of the top regions at the
participant's own removed area, and Spearman over all pixels), ``flipped`` (1 when the participant's edits
changed the model's top-1 at some point), ``drop_pp_per_removed_pct``, and for predict-then-see studies
``prediction_correct`` (each model of each trial). It loads unchanged in R: ``d <- read.csv(...)``.

The models (each fitted when the data hold what it compares, otherwise a sentence says why not):

- **agreement**: ``iou ~ model + (1 | participant) + (1 | task)``, a linear mixed model (``MixedLM``, REML;
  the task's random intercept as a variance component, so participant and task are crossed), the model
  being "model (explainer)", the first in alphabetical order the reference. In R:
  ``lmer(value ~ model + (1 | participant) + (1 | task), data = subset(d, measure == "iou"))``.
- **flips**: ``flipped ~ model``, a logistic GEE with an exchangeable correlation within participants
  (population-averaged log-odds; ``geeglm(..., id = participant, corstr = "exchangeable")`` in R).
- **prediction accuracy by condition**: ``prediction_correct ~ condition``, the same GEE.

Each term is reported with its estimate, 95 % interval (Wald) and p value; the GEEs' also as odds ratios.
"""
from __future__ import annotations

import warnings

import numpy as np

LONG_COLUMNS = ["participant", "condition", "task", "model", "explainer", "measure", "value"]
MODEL_COLUMNS = ["analysis", "formula", "term", "estimate", "ci_low", "ci_high", "p", "odds_ratio", "n", "groups"]


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _terms(result, analysis: str, formula: str, n: int, groups: int, odds: bool) -> list[dict]:
    ci = result.conf_int()
    out = []
    for term in result.params.index:
        if term.startswith(("Group", "task Var")) or term.endswith(" Var"):
            continue  # variance components are reported in the sentence, not as terms
        est = float(result.params[term])
        lo, hi = (float(v) for v in ci.loc[term])
        out.append({"analysis": analysis, "formula": formula, "term": term, "estimate": est, "ci_low": lo,
                    "ci_high": hi, "p": float(result.pvalues[term]),
                    "odds_ratio": float(np.exp(est)) if odds else None, "n": n, "groups": groups})
    return out


def fit_agreement(rows: list[dict], measure: str = "iou", term: str = "model") -> dict:
    """The agreement model (module docstring) on the long table's ``measure`` rows; ``term``: its fixed
    effects ("model", or "model + condition" to compare groups too)."""
    import statsmodels.formula.api as smf

    d = _frame([r for r in rows if r["measure"] == measure and np.isfinite(r["value"])])
    if not d.empty:
        d = d.assign(model=d["model"] + np.where(d["explainer"] != "", " (" + d["explainer"] + ")", ""), everyone=1)
    # a term with one value compares nothing (one model map, when groups are compared): left out
    asked = [t.strip() for t in term.split("+")]
    varying = [t for t in asked if not d.empty and d[t].nunique() > 1]
    term = " + ".join(varying or asked)
    formula = f"{measure} ~ {term} + (1 | participant) + (1 | task)"
    if not varying or d["participant"].nunique() < 3:
        return {"analysis": "agreement", "formula": formula, "terms": [],
                "note": f"Not fitted: it needs at least two values of {term} and three participants with strokes."}
    # crossed random intercepts: one group holding every row, participant and task as variance components
    vc = {"participant": "0 + C(participant)"}
    if d["task"].nunique() > 1:
        vc["task"] = "0 + C(task)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = smf.mixedlm(f"value ~ {term}", d, groups="everyone", re_formula="0", vc_formula=vc).fit(reml=True)
    note = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught}))[:300]
    sd = {name: float(np.sqrt(max(v, 0.0))) for name, v in zip(res.model.exog_vc.names, res.vcomp)}
    return {"analysis": "agreement", "formula": formula, "method": "linear mixed model (REML), participant and "
            "task crossed random intercepts", "terms": _terms(res, "agreement", formula, len(d),
                                                             d["participant"].nunique(), False),
            "participant_sd": sd.get("participant"), "task_sd": sd.get("task"),
            "residual_sd": float(np.sqrt(res.scale)), "note": note}


def fit_binary(rows: list[dict], measure: str, term: str, analysis: str) -> dict:
    """A logistic GEE of the ``measure`` rows on ``term`` (model or condition), exchangeable within participants."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    formula = f"{measure} ~ {term}"
    d = _frame([r for r in rows if r["measure"] == measure and np.isfinite(r["value"])])
    if d.empty or d[term].nunique() < 2 or d["participant"].nunique() < 3:
        return {"analysis": analysis, "formula": formula, "terms": [],
                "note": f"Not fitted: it needs at least two values of {term} and three participants."}
    if d["value"].nunique() < 2:
        return {"analysis": analysis, "formula": formula, "terms": [],
                "note": f"Not fitted: every {measure} is {d['value'].iloc[0]:g}."}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = smf.gee(f"value ~ {term}", groups="participant", data=d, family=sm.families.Binomial(),
                          cov_struct=sm.cov_struct.Exchangeable()).fit()
        except Exception as exc:  # noqa: BLE001 - e.g. perfect separation (every A flipped, no B): said, not raised
            return {"analysis": analysis, "formula": formula, "terms": [],
                    "note": f"Not fitted: {str(exc).splitlines()[0][:200]}"}
    note = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught}))[:300]
    return {"analysis": analysis, "formula": formula, "method": "logistic GEE, exchangeable within participants",
            "terms": _terms(res, analysis, formula, len(d), d["participant"].nunique(), True), "note": note}


def fit_all(rows: list[dict]) -> list[dict]:
    """Every model the long table supports (module docstring)."""
    return [fit_agreement(rows, "iou"), fit_binary(rows, "flipped", "model", "flips"),
            fit_binary(rows, "prediction_correct", "condition", "prediction accuracy")]
