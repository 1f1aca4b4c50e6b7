"""A bottom-up saliency control that needs no model: the spectral residual (Hou & Zhang, "Saliency detection: a
spectral residual approach", CVPR 2007), as OpenCV's ``StaticSaliencySpectralResidual`` computes it.

The image, in grey (0-1), resized to 64 x 64; ``F`` its 2-D Fourier transform, ``L = log |F|`` its log
amplitude and ``P`` its phase; the spectral residual ``R = L - h * L`` (``h`` the 3 x 3 mean filter, borders
reflected); the map ``S = |F^-1[exp(R + i P)]|^2``, blurred with a Gaussian (11 x 11 taps, sigma 3), scaled to
[0, 1] and resized back to the image. What stands out from the image's own statistics (an odd object on a
regular background) is bright; no classifier is involved, so when people and a model both agree with it, the
agreement may be "both look at what is conspicuous".
"""
from __future__ import annotations

import numpy as np

SIDE = 64


def spectral_residual(image: np.ndarray) -> np.ndarray:
    """The spectral-residual saliency map of an RGB (or grey) image, in [0, 1], at the image's size."""
    import cv2

    img = np.asarray(image)
    grey = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    g = cv2.resize(grey.astype(np.float32) / (255.0 if grey.dtype == np.uint8 else 1.0), (SIDE, SIDE),
                   interpolation=cv2.INTER_AREA).astype(np.float64)
    f = np.fft.fft2(g)
    log_amp = np.log(np.abs(f) + 1e-12)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REFLECT_101)
    s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
    s = cv2.GaussianBlur(s, (11, 11), 3.0)
    s = (s - s.min()) / max(float(s.max() - s.min()), 1e-12)
    return cv2.resize(s.astype(np.float32), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)


def explained_share(human: np.ndarray, model: np.ndarray, saliency: np.ndarray) -> float:
    """How much of the human-model agreement the saliency map accounts for: ``1 - r_partial / r``, with ``r``
    the Pearson r of the human and the model map and ``r_partial`` the same with the saliency map partialled
    out of both (``(r_hm - r_hs r_ms) / sqrt((1 - r_hs^2)(1 - r_ms^2))``). 0: none of it (the agreement is not
    shared with saliency); 1: all of it (clipped to [0, 1]); NaN when there is no positive agreement to explain."""
    def r(a, b):
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")

    r_hm, r_hs, r_ms = r(human, model), r(human, saliency), r(model, saliency)
    if not np.isfinite(r_hm) or r_hm <= 0 or not np.isfinite(r_hs) or not np.isfinite(r_ms):
        return float("nan")
    denom = np.sqrt(max((1 - r_hs ** 2) * (1 - r_ms ** 2), 1e-12))
    partial = (r_hm - r_hs * r_ms) / denom
    return float(np.clip(1 - partial / r_hm, 0.0, 1.0))
