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


def sign_flip_p(d: np.ndarray, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided permutation p of "the participants' differences ``d`` are centred on 0": each difference's sign
    flipped at random (all 2^n patterns when n <= 12), p = (1 + #|mean*| >= |mean|) / (1 + patterns) (exact:
    the share of patterns). NaN with fewer than two differences."""
    d = np.asarray(d, np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return float("nan")
    obs = abs(d.mean())
    if n <= 12:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs((signs * d).mean(1)) >= obs - 1e-12))
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], (n_perm, n))
    return float((1 + np.sum(np.abs((signs * d).mean(1)) >= obs - 1e-12)) / (1 + n_perm))


def cohen_dz(d: np.ndarray) -> float:
    """The effect size of paired differences: their mean over their standard deviation (Cohen's d_z)."""
    d = np.asarray(d, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2 or d.std(ddof=1) == 0:
        return float("nan")
    return float(d.mean() / d.std(ddof=1))


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment of the p values ``ps`` (NaN left as NaN)."""
    idx = [i for i, p in enumerate(ps) if np.isfinite(p)]
    order = sorted(idx, key=lambda i: ps[i])
    out, running = [float("nan")] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * ps[i]))
        out[i] = running
    return out
