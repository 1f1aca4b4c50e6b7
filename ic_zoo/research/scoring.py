"""What explain-bench and its other protocols share: the explainers a full run scores, the control maps, the
deletion AUC and the Flower2D image selection (a module of its own so that each protocol imports it without
importing the others)."""
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


#: the Flower2D protocols' image size (the models' input)
SIZE = 64


def select_images(clf, variant: str, n: int, seed: int, max_tries: int = 2000):
    """n held-out samples the model gets right and that pass the recolour test."""
    from ..flower2d import generator as g

    C = g.num_classes(variant)
    out, i, tries = [], 40000 + 1000 * seed, 0
    while len(out) < n and tries < max_tries:
        p = g.sample_params(variant, 0, "test", i)
        i += 1
        tries += 1
        img, parts = g.render(p, SIZE)
        y = p["label"]
        if clf.predict(img).top1 != y:
            continue
        target = (y + 1 + i % (C - 1)) % C
        cf, _ = g.render(p, SIZE, recolor=g.counterfactual(p, target))
        if clf.predict(cf).top1 != target:
            continue
        out.append((p, img, parts))
    return out, tries
