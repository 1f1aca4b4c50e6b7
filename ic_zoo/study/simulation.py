"""Forward simulation: how well participants predict what the models do, and whether the conditions differ.

A predict-then-see trial (a ``prediction`` event in the log) holds, per predicted model, whether each asked
prediction was right (``flip_correct``: will its top-1 change; ``class_correct``: which class will it say,
its top-5 before the edit or "something else"), and ``correct``: every asked part right. The analysis reads
only those events and the condition each participant was given at consent:

- **Simulation accuracy of a participant**: the share of their model predictions that were right (each
  model of each trial counts once), and the same for the flip and the class predictions alone; in the
  learning and the test phase separately where the study has phases.
- **Per condition**: the mean of its participants' accuracies, with a 95 % BCa interval over participants
  (``analysis.interval``: bootstrap resamples of the participants, the leave-one-out means as the jackknife).
- **Between two conditions**: the difference of the means (first minus second) with a 95 % BCa interval
  (participants resampled within each condition; the jackknife leaves out one participant of either), and
  a two-sided permutation test of "no difference" (condition labels shuffled among the two conditions'
  participants, ``n_perm`` times; p = (1 + #|d*| >= |d|) / (1 + n_perm)). With more than two conditions,
  every pair, the p values also given Holm-adjusted over the pairs.
- **Learning**: accuracy by trial (a participant's 1st, 2nd, ... prediction in the order they made them),
  per condition, with its interval.
"""
from __future__ import annotations

import itertools
import json

import numpy as np

from .stats import bootstrap_weights, holm, interval, leave_one_out, mean_interval  # noqa: F401 (holm: the simulation's)

MEASURES = ("correct", "flip_correct", "class_correct")


def predictions(rows: list[dict]) -> list[dict]:
    """One item per participant x trial x predicted model, in the order the participant made them:
    ``participant``, ``task``, ``trial`` (their n-th prediction, from 1), ``phase``, ``model``, and the
    measures that were asked (``correct`` always)."""
    out, n = [], {}
    for r in rows:
        if r["kind"] != "prediction":
            continue
        p = json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
        code = r["code"]
        n[code] = n.get(code, 0) + 1
        for m, o in (p.get("outcome") or {}).items():
            item = {"participant": code, "task": r["task_id"], "trial": n[code], "phase": p.get("phase") or "",
                    "model": m, "confidence": p.get("confidence"),
                    "response_time_s": p.get("response_time_s")}
            for k in MEASURES:
                if k in o:
                    item[k] = float(bool(o[k]))
            out.append(item)
    return out


def per_participant(items: list[dict], measure: str = "correct", phase: str | None = None) -> dict[str, float]:
    """Each participant's accuracy on ``measure`` (the mean of their items that asked it; ``phase``: only
    that phase's)."""
    acc: dict[str, list[float]] = {}
    for it in items:
        if measure in it and (phase is None or it["phase"] == phase):
            acc.setdefault(it["participant"], []).append(it[measure])
    return {p: float(np.mean(v)) for p, v in acc.items()}


def _group_boot(groups: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """Each group's bootstrap means (resampled within the group)."""
    return [bootstrap_weights(len(g), n_boot, seed + 7919 * i) @ g if len(g) else np.zeros(n_boot)
            for i, g in enumerate(groups)]


def difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, n_perm: int = 10000, seed: int = 0) -> dict:
    """mean(a) - mean(b) with its 95 % BCa interval and a two-sided permutation p value."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    out = {"difference": [d, float("nan"), float("nan")], "p_permutation": float("nan"), "n": [len(a), len(b)]}
    if len(a) < 2 or len(b) < 2:
        return out
    ba, bb = _group_boot([a, b], n_boot, seed)
    jack = np.concatenate([leave_one_out(a) - b.mean(), a.mean() - leave_one_out(b)])
    out["difference"] = interval(ba - bb, d, jack)
    pooled = np.concatenate([a, b])
    perms = np.random.default_rng(seed).permuted(np.tile(pooled, (n_perm, 1)), axis=1)
    dp = perms[:, :len(a)].mean(1) - perms[:, len(a):].mean(1)
    out["p_permutation"] = float((1 + np.sum(np.abs(dp) >= abs(d) - 1e-12)) / (1 + n_perm))
    return out


def simulation(rows: list[dict], conditions: dict[str, str], condition_names: list[str], n_boot: int = 2000,
               n_perm: int = 10000, seed: int = 0) -> dict | None:
    """The forward-simulation analysis (module docstring) of the log's ``rows`` (each with its participant's
    ``code``); ``conditions``: participant -> condition name ("" without conditions); ``condition_names``: the
    study's, in its order. None when the log holds no prediction."""
    items = predictions(rows)
    if not items:
        return None
    names = list(condition_names) or [""]
    phases = sorted({it["phase"] for it in items if it["phase"]})
    doc = {"items": len(items), "participants": len({it["participant"] for it in items}), "phases": phases,
           "by_condition": [], "differences": [], "learning": [], "participants_table": []}
    for measure in MEASURES:
        for phase in [None] + phases:
            acc = per_participant(items, measure, phase)
            if not acc:
                continue
            groups = {c: np.array([v for p, v in sorted(acc.items()) if conditions.get(p, "") == c]) for c in names}
            for c in names:
                g = groups[c]
                W = bootstrap_weights(len(g), n_boot, seed)
                doc["by_condition"].append({"condition": c, "measure": measure, "phase": phase or "all",
                                            "participants": len(g), "accuracy": mean_interval(g, W)})
            pairs = list(itertools.combinations(names, 2))
            diffs = [difference(groups[x], groups[y], n_boot, n_perm, seed) for x, y in pairs]
            adj = holm([r["p_permutation"] for r in diffs])
            for (x, y), r, p in zip(pairs, diffs, adj):
                doc["differences"].append({"conditions": f"{x} - {y}", "measure": measure, "phase": phase or "all",
                                           "n": r["n"], "difference": r["difference"], "p_permutation": r["p_permutation"],
                                           "p_holm": p})
    # learning: accuracy by the participant's n-th prediction
    for c in names:
        by_trial: dict[int, dict[str, list[float]]] = {}
        for it in items:
            if conditions.get(it["participant"], "") == c:
                by_trial.setdefault(it["trial"], {}).setdefault(it["participant"], []).append(it["correct"])
        for k in sorted(by_trial):
            v = np.array([np.mean(x) for _, x in sorted(by_trial[k].items())])
            doc["learning"].append({"condition": c, "trial": k, "participants": len(v),
                                    "accuracy": mean_interval(v, bootstrap_weights(len(v), n_boot, seed))})
    acc = per_participant(items)
    for p in sorted(acc):
        row = {"participant": p, "condition": conditions.get(p, ""), "accuracy": acc[p]}
        for measure in MEASURES[1:]:
            a = per_participant([it for it in items if it["participant"] == p], measure)
            row[measure] = a.get(p)
        row["predictions"] = sum(1 for it in items if it["participant"] == p)
        doc["participants_table"].append(row)
    return doc


BY_CONDITION_COLUMNS = ["condition", "measure", "phase", "participants", "accuracy"]
DIFFERENCE_COLUMNS = ["conditions", "measure", "phase", "difference", "p_permutation", "p_holm"]
LEARNING_COLUMNS = ["condition", "trial", "participants", "accuracy"]
PARTICIPANT_COLUMNS = ["participant", "condition", "predictions", "accuracy", "flip_correct", "class_correct"]
