"""Human-model alignment as the Harmonization work reports it (Fel, Rodriguez, Linsley, Serre; NeurIPS 2022),
and the human noise ceiling that gives it a scale.

**The published metrics** (re-implemented from their definitions, on the analysis grid of at most 64 x 64):

- the human map is blurred with Harmonization's Gaussian kernel: ``size`` x ``size`` taps (default 10),
  ``k[u, v] = exp(-(x_v^2 + y_u^2) / (2 sigma^2))`` normalised to sum 1, with ``x_v = v - size // 2`` and
  ``y_u = (size - 1) // 2 - u`` (for an even size the kernel's centre is half a pixel off, as theirs is),
  applied as a cross-correlation with zero padding of ``(size - 1) // 2`` before and ``size // 2`` after each
  axis (TensorFlow's "SAME"); default ``sigma`` 10 (at their 64 x 64, as here). ``blur=0`` leaves it unblurred.
- **Spearman**: the rank correlation of the two maps over all pixels (``scipy.stats.spearmanr``, ties averaged).
- **IoU and Dice of the top 10 %**: each map binarised as ``m > percentile(m, 90)`` (NumPy's linear
  interpolation; strictly above), then ``|A & B| / (|A | B| + 1e-9)`` and ``2 |A & B| / (|A| + |B| + 1e-9)``.
- **alignment**: the agreement divided by the human noise ceiling (below), as their headline score divides
  the Spearman by theirs (0.6575 on ClickMe).

Their zero padding darkens the border of every blurred map by the same vignette, and that alone correlates
any two maps: two halves of participants who removed pixels at random reach a split-half Spearman of about
0.9 (sigma 10 on 32 x 32). The published Spearman is reported as they define it; the ceiling, and the
alignment that is divided by it, use the same kernel with its border normalised (divided by the blur of a map
of ones), so that the ceiling measures the participants, not the padding.

**The human noise ceiling** of a task: how well one half of the participants' mean removal map predicts the
other's. The participants are split into two random halves ``splits`` times (default 50); each time the
Pearson ``r`` of the two halves' blurred mean maps is taken, and their mean corrected to the full sample with Spearman-Brown,
``2 r / (1 + r)`` of the mean ``r`` over the splits: the reliability of the participants' mean map,
what a second cohort of as many participants would correlate with it. Pearson, because Spearman-Brown is
derived for it: on planted cohorts (noisy copies of a region at known noise) it recovers the correlation of
two independent cohorts' maps within 0.04, where the same correction of Spearman's rho misses it by up to
0.11 (a rank transform of maps with large flat regions does not average like the maps). The Spearman ceiling
is reported beside it (``ceiling_spearman``), with each model's published Spearman over it
(``alignment_spearman``, the form of Harmonization's headline score), as points. Its 95 % interval is a jackknife one (each
participant left out in turn, the whole split-half procedure repeated without them; the point -/+ 1.96
jackknife standard errors): a bootstrap resample repeats participants, and a participant in both halves
makes the halves agree by construction, which biases the bootstrap of a split-half statistic. A model's
alignment is left out the same way (its r with the map of the others over their ceiling), so the interval of
the ratio carries the ceiling's uncertainty. With fewer than four participants there is no
ceiling (None).
"""
from __future__ import annotations

import numpy as np

BLUR_SIZE, BLUR_SIGMA = 10, 10.0
TOP_PERCENT = 10
EPSILON = 1e-9


def gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Harmonization's blur kernel (module docstring): (size, size), summing to 1."""
    x = np.arange(size) - size // 2
    y = (size - 1) // 2 - np.arange(size)
    k = np.exp(-(x[None, :] ** 2 + y[:, None] ** 2) / (2.0 * sigma ** 2))
    return k / k.sum()


def blur(m: np.ndarray, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA, normalize: bool = False) -> np.ndarray:
    """``m`` cross-correlated with ``gaussian_kernel(size, sigma)``, zero-padded as TensorFlow's "SAME" pads:
    ``(size - 1) // 2`` before and ``size // 2`` after each axis. ``size`` 0 or ``sigma`` 0: ``m`` unchanged.
    ``normalize``: divided by the blur of a map of ones, so that the zero padding does not darken the border
    (the ceiling's blur; the published metric's is not normalised)."""
    m = np.asarray(m, np.float64)
    if not size or not sigma:
        return m
    from scipy.ndimage import correlate

    # ndimage centres a kernel at index size // 2; "SAME" puts (size - 1) // 2 taps before it
    k, origin = gaussian_kernel(size, sigma), (size - 1) // 2 - size // 2
    out = correlate(m, k, mode="constant", cval=0.0, origin=origin)
    if normalize:
        out = out / correlate(np.ones_like(m), k, mode="constant", cval=0.0, origin=origin)
    return out


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(np.asarray(a, np.float64).ravel())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two maps over all pixels (NaN when either is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def top_mask(m: np.ndarray, percent: float = TOP_PERCENT) -> np.ndarray:
    """The pixels strictly above the map's (100 - percent)-th percentile."""
    m = np.asarray(m, np.float64)
    return m > np.percentile(m, 100 - percent)


def top_iou(a: np.ndarray, b: np.ndarray, percent: float = TOP_PERCENT) -> float:
    ta, tb = top_mask(a, percent), top_mask(b, percent)
    return float(np.sum(ta & tb) / (np.sum(ta | tb) + EPSILON))


def top_dice(a: np.ndarray, b: np.ndarray, percent: float = TOP_PERCENT) -> float:
    ta, tb = top_mask(a, percent), top_mask(b, percent)
    return float(2.0 * np.sum(ta & tb) / (np.sum(ta) + np.sum(tb) + EPSILON))


def published(human: np.ndarray, model: np.ndarray, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> dict:
    """Harmonization's three metrics of a model map against the human map (the human map blurred first)."""
    return published_blurred(blur(human, size, sigma), model)


def published_blurred(blurred_human: np.ndarray, model: np.ndarray) -> dict:
    """:func:`published` of a human map blurred already (an analysis blurs each human map once)."""
    h = blurred_human
    return {"spearman_blurred": spearman(h, model), "iou_top10": top_iou(h, model), "dice_top10": top_dice(h, model)}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two maps over all pixels (NaN when either is constant)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def split_half(finals: np.ndarray, splits: int = 50, seed: int = 0, size: int = BLUR_SIZE,
               sigma: float = BLUR_SIGMA, metric=pearson) -> float:
    """The Spearman-Brown corrected split-half reliability of the participants' maps ``finals`` (P, h, w):
    ``2 r / (1 + r)``, ``r`` the mean over ``splits`` random halvings of the ``metric`` (Pearson by default) of
    the two halves' border-normalised blurred mean maps. NaN with fewer than four participants."""
    finals = np.asarray(finals, np.float64)
    n = len(finals)
    if n < 4:
        return float("nan")
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(splits):
        perm = rng.permutation(n)
        a, b = finals[perm[: n // 2]].mean(0), finals[perm[n // 2:]].mean(0)
        r = metric(blur(a, size, sigma, True), blur(b, size, sigma, True))
        if np.isfinite(r):
            rs.append(r)
    if not rs:
        return float("nan")
    r = float(np.mean(rs))  # the halves' mean correlation, then corrected once (a mean of corrected values is
    return 2 * r / (1 + r) if r > -1 else float("nan")  # pulled down by the correction's curve near -1)


def _jackknife_interval(point: float, loo: np.ndarray) -> list:
    """[point, low, high]: point -/+ 1.96 jackknife standard errors from the leave-one-out values ``loo``."""
    loo = np.asarray(loo, np.float64)
    loo = loo[np.isfinite(loo)]
    if not np.isfinite(point) or len(loo) < 2:
        return [float(point), float("nan"), float("nan")]
    n = len(loo)
    se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
    return [float(point), float(point - 1.959964 * se), float(point + 1.959964 * se)]


def ceiling(finals: np.ndarray, models: dict, splits: int = 50, seed: int = 0, size: int = BLUR_SIZE,
            sigma: float = BLUR_SIGMA) -> dict | None:
    """The task's noise ceiling with its interval, and each model map's alignment (its Pearson r with the
    border-normalised blurred human map over the ceiling) with an interval that carries the ceiling's
    uncertainty; beside them the ceiling in Spearman's rho and each model's published Spearman over it, as
    Harmonization states alignment (points only; module docstring). ``models``: {name: map on the same grid}.
    None with fewer than four participants."""
    finals = np.asarray(finals, np.float64)
    n = len(finals)
    if n < 4:
        return None
    point = split_half(finals, splits, seed, size, sigma)
    point_rho = split_half(finals, splits, seed, size, sigma, metric=spearman)
    human = blur(finals.mean(0), size, sigma, True)
    r = {k: pearson(human, m) for k, m in models.items()}
    # leave each participant out in turn: the ceiling and each ratio without them (a jackknife)
    loo_c, loo_a = [], {k: [] for k in models}
    for i in range(n):
        rest = np.delete(finals, i, axis=0)
        c = split_half(rest, splits, seed, size, sigma) if n > 4 else float("nan")
        loo_c.append(c)
        hr = blur(rest.mean(0), size, sigma, True)
        for k, m in models.items():
            loo_a[k].append(pearson(hr, m) / c if np.isfinite(c) and c > 0 else float("nan"))
    out = {"ceiling": _jackknife_interval(point, loo_c), "ceiling_spearman": point_rho, "participants": n,
           "splits": splits, "blur": {"size": size, "sigma": sigma}, "models": {}}
    raw = blur(finals.mean(0), size, sigma)  # the published metric's blur (zero padding, as theirs)
    for k, m in models.items():
        ratio = r[k] / point if np.isfinite(point) and point > 0 else float("nan")
        rho = spearman(raw, m)
        out["models"][k] = {"pearson_blurred": r[k], "alignment": _jackknife_interval(ratio, loo_a[k]),
                            "spearman_blurred": rho,
                            "alignment_spearman": rho / point_rho if np.isfinite(point_rho) and point_rho > 0
                            else float("nan")}
    return out
