"""What explain-bench and its photo protocol share: the explainers a full run scores, the control maps and
the deletion AUC (a module of its own so that each protocol imports it without importing the other)."""
from __future__ import annotations

import numpy as np

ALL_EXPLAINERS = ("cam", "gradcam", "gradcam++", "hirescam", "layercam", "eigencam", "finercam", "refinecam",
                  "scorecam", "scorecam-topk", "ablationcam", "ablationcam-topk", "fullgrad", "fem", "kpcacam",
                  "shapleycam", "rollout", "chefer", "legrad", "inputxgradient", "integratedgradients", "smoothgrad",
                  "captum-occlusion", "vebi", "vebi-nofix", "occlusion", "occlusion-exhaustive", "lime")
CONTROLS = ("gt", "random", "centre")


def control_map(name: str, m: np.ndarray, rng) -> np.ndarray:
    if name == "gt":
        return m.astype(np.float32)
    if name == "random":
        from ..analyses.trust import random_map

        return random_map(m.shape, rng)
    if name == "centre":
        yy, xx = np.mgrid[0:m.shape[0], 0:m.shape[1]]
        s = 0.25 * m.shape[0]
        return np.exp(-(((yy - m.shape[0] / 2) ** 2 + (xx - m.shape[1] / 2) ** 2) / (2 * s * s))).astype(np.float32)
    raise ValueError(name)


def deletion_auc(clf, img: np.ndarray, h: np.ndarray, y: int, fill) -> float:
    """The deletion AUC of map ``h`` (the trust score's measure, ``trust.deletion_probs``)."""
    from ..analyses.trust import auc, deletion_probs

    return float(auc(deletion_probs(clf, img, h, y, fill))[0])
