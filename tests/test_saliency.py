"""Issue 39 item 3: the spectral-residual saliency control (no model) and the share of human-model agreement it
explains."""
from __future__ import annotations

import numpy as np
import pytest

from ic_zoo.study import saliency as S


def test_an_odd_object_on_a_regular_background_pops_out():
    """Hou & Zhang's pop-out: a regular texture is predictable from its spectrum and fades; the one odd blob
    is what remains."""
    img = np.zeros((128, 128))
    img[:, ::8] = 200  # vertical bars, every 8 pixels
    img[80:92, 30:42] = 255  # the odd one: a square between the bars
    # a camera's noise (a synthetic picture's spectrum has exact zeros, whose log no photo has)
    img = np.clip(img + np.random.default_rng(0).normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    s = S.spectral_residual(np.stack([img] * 3, -1))
    assert s.shape == (128, 128) and 0 <= s.min() < 0.01 and 0.95 < s.max() <= 1 + 1e-6
    y, x = np.unravel_index(np.argmax(s), s.shape)
    assert 74 <= y <= 98 and 24 <= x <= 48, (y, x)
    assert s[80:92, 30:42].mean() > 3 * s[10:40, 70:120].mean()


def test_the_formula_step_by_step():
    """The published steps written out with NumPy and SciPy (64 x 64 grey, log amplitude minus its 3 x 3 mean,
    the phase kept, squared magnitude back, Gaussian 11 x 11 sigma 3), against the module's."""
    import cv2
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(0)
    img = (rng.random((64, 64)) * 255).astype(np.uint8)
    g = img.astype(np.float64) / 255
    f = np.fft.fft2(g)
    la = np.log(np.abs(f) + 1e-12)
    r = la - uniform_filter(la, 3, mode="mirror")
    sal = np.abs(np.fft.ifft2(np.exp(r) * np.exp(1j * np.angle(f)))) ** 2
    sal = cv2.GaussianBlur(sal, (11, 11), 3.0)
    sal = (sal - sal.min()) / (sal.max() - sal.min())
    assert np.allclose(S.spectral_residual(img), sal, atol=1e-5)


def test_the_explained_share():
    rng = np.random.default_rng(1)
    sal = rng.random((32, 32))
    other = rng.random((32, 32))
    # humans and model both follow saliency only: saliency explains all their agreement
    human, model = sal + 0.3 * rng.random((32, 32)), sal + 0.3 * rng.random((32, 32))
    assert S.explained_share(human, model, sal) > 0.9
    # they share something saliency does not have: it explains little
    human, model = other + 0.3 * rng.random((32, 32)), other + 0.3 * rng.random((32, 32))
    assert S.explained_share(human, model, sal) < 0.1
    assert np.isnan(S.explained_share(human, -human, sal))  # no agreement to explain
