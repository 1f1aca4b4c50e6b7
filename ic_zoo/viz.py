"""Turning maps into pictures: jet overlays for class maps, a diverging map for differences."""
from __future__ import annotations

import numpy as np


def _jet(heat: np.ndarray) -> np.ndarray:
    import cv2

    h8 = np.uint8(np.clip(heat, 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(h8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] map (image coordinates) over an RGB image with the jet colormap.

    The map is *not* re-normalised: 0.5 means half the shared maximum, so two overlays made from one
    ClassMaps compare directly (unlike per-image min-max overlays)."""
    heat = np.asarray(heat, np.float32)
    if heat.shape != image.shape[:2]:
        import cv2

        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    col = _jet(heat).astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * col
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def diverging(diff: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """Signed map in [-1, 1] -> RGB: blue where it fell, red where it rose, white at zero; optionally
    blended over a grey version of ``image``."""
    d = np.clip(np.asarray(diff, np.float32), -1, 1)
    pos, neg = np.clip(d, 0, 1), np.clip(-d, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], -1)  # red up, blue down
    rgb = np.clip(rgb, 0, 1) * 255
    if image is not None:
        grey = image.astype(np.float32).mean(axis=2, keepdims=True)
        w = np.abs(d)[..., None] * alpha + (1 - alpha) * 0.0
        rgb = (1 - w) * grey + w * rgb
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def draw_box(image: np.ndarray, box, colour=(255, 200, 0), width: int = 2) -> np.ndarray:
    import cv2

    out = image.copy()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, width)
    return out
