"""The statistics the study analyses share: bootstrap weights over participants and BCa intervals."""
from __future__ import annotations

import numpy as np


def interval(values: np.ndarray, point: float, jackknife: np.ndarray | None = None) -> list:
    """[point, low, high]: a 95 % bias-corrected bootstrap interval from the bootstrap values (NaN-free).

    Efron's BCa (Efron 1987, "Better bootstrap confidence intervals", JASA 82; the default of
    ``scipy.stats.bootstrap``) when the leave-one-participant-out values ``jackknife`` are given, else its
    bias-corrected special case (acceleration 0). With z0 = Phi^-1(share of bootstrap values below the
    point, ties counting half) and a = sum(d^3) / (6 sum(d^2)^1.5), d the jackknife values' mean minus
    each of them, the bounds are the bootstrap values' quantiles Phi(z0 + (z0 + z) / (1 - a (z0 + z)))
    for z = Phi^-1(0.025) and Phi^-1(0.975). A statistic that resampling biases (the IoU of a mean map's
    top share: a resampled mean map is blurrier) moves its interval instead of stretching it to the point,
    so the point can lie outside its interval; that is reported, not hidden."""
    from scipy.special import ndtr, ndtri

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v) or not np.isfinite(point):
        return [point, float("nan"), float("nan")]
    if np.ptp(v) == 0:
        return [float(point), float(v[0]), float(v[0])]
    share = (np.sum(v < point) + 0.5 * np.sum(v == point)) / len(v)
    z0 = float(ndtri(np.clip(share, 0.5 / len(v), 1 - 0.5 / len(v))))
    a = 0.0
    j = np.asarray(jackknife if jackknife is not None else [], float)
    j = j[np.isfinite(j)]
    if len(j) > 1 and np.ptp(j) > 0:
        d = j.mean() - j
        a = float(np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5))
    q = [float(ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))) for z in ndtri([0.025, 0.975])]
    low, high = np.percentile(v, [100 * q[0], 100 * q[1]])
    return [float(point), float(low), float(high)]


def mean_interval(v: np.ndarray, W: np.ndarray) -> list:
    """[mean, low, high] of per-participant values ``v`` (NaN: not measured for that participant) over
    the bootstrap weights ``W`` (b, n), BCa with the leave-one-out means as the jackknife."""
    v = np.asarray(v, float)
    ok = np.isfinite(v)
    point = float(np.mean(v[ok])) if ok.any() else float("nan")
    if len(v) < 2 or not ok.any():
        return [point, float("nan"), float("nan")]
    wb = W * ok[None, :]
    jack = leave_one_out(v[ok]) if ok.sum() > 1 else None
    return interval((wb @ np.where(ok, v, 0.0)) / np.maximum(wb.sum(1), 1e-12), point, jack)


def leave_one_out(finals: np.ndarray) -> np.ndarray:
    """The mean of the participants' values ``finals`` (P, ...) without each one in turn (P >= 2): the
    jackknife of a mean, of maps (P, h, w) or of numbers (P,)."""
    return (finals.sum(0)[None] - finals) / (len(finals) - 1)


def bootstrap_weights(n: int, b: int, seed: int) -> np.ndarray:
    """(b, n) weights of n participants in b resamples with replacement (each row sums to 1)."""
    rng = np.random.default_rng(seed)
    if not n or not b:  # no participants, or no resamples asked (--bootstrap 0): no intervals
        return np.zeros((b, n))
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(b)])
    return counts / max(n, 1)
