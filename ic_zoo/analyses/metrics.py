"""How well does a map find a region? The localisation metrics of explain-bench, the real-photo benchmark
and study mode's humans-vs-models analysis, each a function of a map ``h`` (any real values, higher is
more relevant) and a boolean mask ``m`` of the same shape:

* ``top_m_iou``: keep the |m| hottest pixels (threshold-free, area-matched; ties broken by position) and
  take their IoU with ``m``;
* ``mean_iou``: the IoU of the min-max-normalised map thresholded at 0.05 ... 0.95, averaged;
* ``pointing``: 1 when the hottest pixel lies inside ``m`` (the pointing game), else 0;
* ``energy``: the share of the map's positive mass inside ``m`` (energy-based pointing game);
* ``roc_auc``: P(a positive scores above a negative), ties counted half (the Mann-Whitney U statistic).
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _norm(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, np.float64)
    lo, hi = h.min(), h.max()
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def top_m_iou(h: np.ndarray, m: np.ndarray) -> float:
    k = int(m.sum())
    sel = np.zeros(h.size, bool)
    sel[np.argsort(-h.ravel(), kind="stable")[:k]] = True
    sel = sel.reshape(h.shape)
    return float((sel & m).sum() / max((sel | m).sum(), 1))


def mean_iou(h: np.ndarray, m: np.ndarray) -> float:
    hn = _norm(h)
    return float(np.mean([((hn >= t) & m).sum() / max(((hn >= t) | m).sum(), 1) for t in THRESHOLDS]))


def pointing(h: np.ndarray, m: np.ndarray) -> float:
    return float(m.ravel()[int(np.argmax(h))])


def energy(h: np.ndarray, m: np.ndarray) -> float:
    hp = np.maximum(np.asarray(h, np.float64), 0)
    s = hp.sum()
    return float(hp[m].sum() / s) if s > 0 else 0.0


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U)."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))
