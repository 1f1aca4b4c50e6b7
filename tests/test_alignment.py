"""Issue 39 items 1-2: the published alignment metrics (Harmonization) on arrays worked by hand, and the human
noise ceiling recovering a planted noise level."""
from __future__ import annotations

import numpy as np
import pytest

from ic_zoo.study import alignment as A


def _same_padding_loop(m, k):
    """TensorFlow's "SAME" cross-correlation, written out: (size - 1) // 2 zeros before, size // 2 after."""
    size = k.shape[0]
    p = np.pad(m, (((size - 1) // 2, size // 2),) * 2)
    h, w = m.shape
    return sum(k[u, v] * p[u:u + h, v:v + w] for u in range(size) for v in range(size))


def test_the_kernel_is_harmonizations():
    k = A.gaussian_kernel(3, 1.0)  # worked by hand: exp(-(x^2 + y^2) / 2), x, y in -1..1, normalised
    e = np.exp(-0.5)
    raw = np.array([[e * e, e, e * e], [e, 1, e], [e * e, e, e * e]])
    assert np.allclose(k, raw / raw.sum())
    k10 = A.gaussian_kernel()
    assert k10.shape == (10, 10) and k10.sum() == pytest.approx(1)
    # an even kernel's peak is at row 4 (y = 0), column 5 (x = 0): half a pixel off, as theirs
    assert np.unravel_index(np.argmax(k10), k10.shape) == (4, 5)


@pytest.mark.parametrize("size", [3, 4, 10])
def test_the_blur_is_a_same_padded_cross_correlation(size):
    rng = np.random.default_rng(size)
    m = rng.random((17, 23))
    assert np.allclose(A.blur(m, size, 2.0), _same_padding_loop(m, A.gaussian_kernel(size, 2.0)))
    d = np.zeros((9, 9))
    d[4, 4] = 1.0  # a delta spreads into the (flipped) kernel around it
    out = A.blur(d, 3, 1.0)
    assert out[4, 4] == pytest.approx(A.gaussian_kernel(3, 1.0)[1, 1]) and out.sum() == pytest.approx(1)
    assert np.array_equal(A.blur(m, 0, 0), m)
    assert np.allclose(A.blur(np.full((12, 12), 0.3), 10, 10.0, normalize=True), 0.3)  # no vignette


def test_top_ten_percent_iou_and_dice_worked_by_hand():
    a = np.arange(20, dtype=float).reshape(4, 5)  # 90th percentile 17.1: the top is {18, 19}
    b = np.zeros((4, 5))
    b.flat[[19, 3]] = [5.0, 4.0]  # percentile 0.4 (linear): the top is {19, 3}
    assert A.top_mask(a).sum() == 2 and A.top_mask(b).sum() == 2
    assert A.top_iou(a, b) == pytest.approx(1 / 3, abs=1e-8)  # {19} of {3, 18, 19}
    assert A.top_dice(a, b) == pytest.approx(2 * 1 / 4, abs=1e-8)
    assert A.top_iou(a, a) == pytest.approx(1) and A.top_dice(a, a) == pytest.approx(1)


def test_spearman_over_pixels():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert A.spearman(a, a ** 3) == pytest.approx(1) and A.spearman(a, -a) == pytest.approx(-1)
    assert A.spearman(a, np.array([[1.0, 1.0], [2.0, 2.0]])) == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.5, 1.5, 3.5, 3.5])[0, 1])
    assert np.isnan(A.spearman(a, np.ones((2, 2))))


def _cohort(rng, truth, n, flip):
    """n participants, each a noisy copy of the truth: every pixel flipped with probability ``flip``."""
    return np.stack([np.where(rng.random(truth.shape) < flip, ~truth, truth) for _ in range(n)]).astype(float)


@pytest.mark.parametrize("flip", [0.15, 0.3, 0.42, 0.47])
def test_the_ceiling_recovers_a_planted_noise_level(flip):
    """The split-half estimate from one cohort against the reliability it estimates: the correlation of two
    independent cohorts' blurred mean maps from the same planted generator (the truth plus known noise)."""
    rng = np.random.default_rng(7)
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:26] = True
    n = 16
    replicate = np.mean([A.pearson(A.blur(_cohort(rng, truth, n, flip).mean(0), normalize=True),
                                   A.blur(_cohort(rng, truth, n, flip).mean(0), normalize=True))
                         for _ in range(40)])
    estimates = [A.split_half(_cohort(rng, truth, n, flip), splits=30, seed=k) for k in range(10)]
    assert abs(np.mean(estimates) - replicate) <= 0.05, (np.mean(estimates), replicate)


def test_the_ceiling_has_an_interval_and_alignment_carries_it():
    rng = np.random.default_rng(3)
    truth = np.zeros((32, 32), bool)
    truth[8:20, 10:26] = True
    finals = _cohort(rng, truth, 12, 0.3)
    good, unrelated = A.blur(truth.astype(float)), rng.random(truth.shape)  # a smooth map on the truth
    out = A.ceiling(finals, {"good": good, "unrelated": unrelated}, splits=20)
    c, lo, hi = out["ceiling"]
    assert lo <= c <= hi and 0 < c <= 1
    g, u = out["models"]["good"]["alignment"], out["models"]["unrelated"]["alignment"]
    assert g[0] > 0.5 and g[1] < g[0] < g[2] and abs(u[0]) < 0.2
    assert g[0] == pytest.approx(out["models"]["good"]["pearson_blurred"] / c)
    assert out["models"]["good"]["spearman_blurred"] == pytest.approx(A.spearman(A.blur(finals.mean(0)), good))
    assert A.ceiling(finals[:3], {"good": good}) is None  # too few participants: no ceiling
    big = np.zeros((64, 64), bool)  # the analysis grid's size, where the blur's sigma (10) is Harmonization's
    big[16:40, 20:52] = True
    noise = _cohort(rng, big, 12, 0.5)  # people removing at random: a ceiling near 0
    assert abs(A.split_half(noise, splits=30)) < 0.25 and abs(A.split_half(noise, splits=30, metric=A.spearman)) < 0.25
    # (the published blur's zero padding alone would correlate them: the vignette every blurred map shares)
    a, b = noise[:6].mean(0), noise[6:].mean(0)
    assert A.spearman(A.blur(a), A.blur(b)) > 0.5 > abs(A.spearman(A.blur(a, normalize=True), A.blur(b, normalize=True)))
