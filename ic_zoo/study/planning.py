"""Sample-size planning from a pilot: ``python -m ic_zoo study plan --db pilot.sqlite``.

The pilot's per-participant values come from its analysis's long table (``models.py``): for each headline
figure (a measure of one model, explainer or condition: ``iou`` and ``spearman`` per model map, ``flipped``
per model, ``prediction_correct`` per condition), each participant's mean. For each planned number of
participants N (default 10, 20, 40, 80):

- **expected interval width**: ``resamples`` studies of N participants drawn with replacement from the pilot's
  values; in each, the width of the 95 % t interval of the mean, ``2 t(0.975, N - 1) s / sqrt(N)``; the
  median over the studies. (The analysis's BCa intervals of a mean are as wide, to within a few percent.)
- **power** to detect a stated ``difference`` (in the measure's units) between two model maps (paired: the
  same participants; their per-participant differences, centred on the stated difference, resampled; a
  paired t test at 0.05) and between two conditions (two groups of N, each resampled from its own centred
  values, one shifted by the difference; Welch's t test at 0.05): the share of simulated studies that find it.
"""
from __future__ import annotations

import itertools

import numpy as np

DEFAULT_NS = (10, 20, 40, 80)


def per_participant(long_rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """{(measure, what): {participant: mean value}}; ``what`` names the model map ("model (explainer)"), the
    model, or for ``prediction_correct`` the condition."""
    acc: dict = {}
    for r in long_rows:
        v = r["value"]
        if v is None or not np.isfinite(v):
            continue
        if r["measure"] == "prediction_correct":
            what = r["condition"] or "all participants"
        else:
            what = r["model"] + (f" ({r['explainer']})" if r["explainer"] else "")
        acc.setdefault((r["measure"], what), {}).setdefault(r["participant"], []).append(float(v))
    return {k: {p: float(np.mean(v)) for p, v in d.items()} for k, d in acc.items()}


def expected_width(values: np.ndarray, n: int, resamples: int, rng) -> float:
    """The median width of the 95 % t interval of the mean over ``resamples`` studies of ``n`` participants."""
    from scipy.stats import t

    values = np.asarray(values, np.float64)
    idx = rng.integers(0, len(values), (resamples, n))
    sd = values[idx].std(1, ddof=1)
    return float(np.median(2 * t.ppf(0.975, n - 1) * sd / np.sqrt(n)))


def paired_power(diffs: np.ndarray, n: int, difference: float, resamples: int, rng) -> float:
    from scipy.stats import ttest_1samp

    d = np.asarray(diffs, np.float64)
    d = d - d.mean() + difference
    idx = rng.integers(0, len(d), (resamples, n))
    p = ttest_1samp(d[idx], 0.0, axis=1).pvalue
    return float(np.mean(p < 0.05))


def group_power(a: np.ndarray, b: np.ndarray, n: int, difference: float, resamples: int, rng) -> float:
    from scipy.stats import ttest_ind

    a = np.asarray(a, np.float64) - np.mean(a) + difference
    b = np.asarray(b, np.float64) - np.mean(b)
    ia, ib = rng.integers(0, len(a), (resamples, n)), rng.integers(0, len(b), (resamples, n))
    p = ttest_ind(a[ia], b[ib], axis=1, equal_var=False).pvalue
    return float(np.mean(p < 0.05))


def plan(long_rows: list[dict], ns=DEFAULT_NS, difference: float = 0.1, resamples: int = 1000,
         seed: int = 0) -> dict:
    """The planner's tables (module docstring)."""
    rng = np.random.default_rng(seed)
    values = per_participant(long_rows)
    figures, power = [], []
    for (measure, what), d in sorted(values.items()):
        v = np.array(list(d.values()))
        if len(v) < 2:
            continue
        figures.append({"figure": f"{measure}: {what}", "pilot_participants": len(v), "pilot_mean": float(v.mean()),
                        "pilot_sd": float(v.std(ddof=1)),
                        "width": {int(n): expected_width(v, int(n), resamples, rng) for n in ns}})
    by_measure: dict = {}
    for (measure, what), d in values.items():
        by_measure.setdefault(measure, {})[what] = d
    for measure, whats in sorted(by_measure.items()):
        for x, y in itertools.combinations(sorted(whats), 2):
            if measure == "prediction_correct":  # conditions: different participants
                a, b = np.array(list(whats[x].values())), np.array(list(whats[y].values()))
                if len(a) < 2 or len(b) < 2:
                    continue
                pw = {int(n): group_power(a, b, int(n), difference, resamples, rng) for n in ns}
                kind = "conditions, N per condition"
            else:  # model maps: the same participants
                both = sorted(set(whats[x]) & set(whats[y]))
                if len(both) < 2:
                    continue
                diffs = np.array([whats[x][p] - whats[y][p] for p in both])
                pw = {int(n): paired_power(diffs, int(n), difference, resamples, rng) for n in ns}
                kind = "paired, N participants"
            power.append({"comparison": f"{measure}: {x} - {y}", "design": kind, "difference": difference,
                          "power": pw})
    return {"ns": [int(n) for n in ns], "difference": difference, "resamples": resamples, "figures": figures,
            "power": power}


def format_text(doc: dict) -> str:
    ns = doc["ns"]
    lines = ["expected width of the 95 % interval (median over simulated studies):",
             f"  {'figure':60s} {'pilot':>10s} " + " ".join(f"{'N=' + str(n):>8s}" for n in ns)]
    for f in doc["figures"]:
        lines.append(f"  {f['figure'][:60]:60s} {f['pilot_mean']:6.2f} n={f['pilot_participants']:<2d} "
                     + " ".join(f"{f['width'][n]:8.3f}" for n in ns))
    lines.append(f"power to detect a difference of {doc['difference']:g} (share of simulated studies, tests at 0.05):")
    for p in doc["power"]:
        lines.append(f"  {p['comparison'][:60]:60s} {p['design']:>28s} " + " ".join(f"{p['power'][n]:8.2f}" for n in ns))
    return "\n".join(lines)
