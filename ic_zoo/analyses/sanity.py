"""Does the map depend on what the model learned? The model-randomisation sanity check (Adebayo et al.,
NeurIPS 2018): the same explainer on a copy of the model whose head has random weights."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sanity:
    """The map of ``cls`` on the modified image (``real``) beside the same explainer's map on the model with
    a randomised head (``randomized``), both max-normalised in image coordinates, and the Pearson
    correlation of the raw maps (0 when either is constant). A high correlation means the map says little
    about what was learned."""

    model: str
    cls: int
    label: str
    explainer: str
    real: np.ndarray
    randomized: np.ndarray
    correlation: float

    def to_dict(self) -> dict:
        return {"model": self.model, "class": self.cls, "label": self.label, "explainer": self.explainer,
                "real": self.real, "randomized": self.randomized, "correlation": self.correlation}


def sanity(session, name: str, cls: int, explainer: str = "gradcam") -> Sanity:
    """The sanity check of ``explainer``'s map of ``cls`` on ``session``'s modified image."""
    from ..classifiers._base import paste_maps
    from ..session import get_explainer

    ex = get_explainer(explainer)
    with session.lock:
        clf = session.classifier(name)
        rand = clf.cached("randomized_head", clf.with_randomized_head)
        real = session.explain(name, int(cls), explainer)
        x = session.state(name, session.version).x
        r = ex.explain(rand, x, [int(cls)]).raw[0]
        a, b = real.raw_modified.ravel(), r.ravel()
        corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
        box = clf.input_box(session.original.shape)
        rnd = paste_maps((r / max(float(r.max()), 1e-12))[None], box, session.original.shape[:2])[0]
        real_img = paste_maps((real.raw_modified / max(float(real.raw_modified.max()), 1e-12))[None], box,
                              session.original.shape[:2])[0]
        return Sanity(name, int(cls), clf.labels[int(cls)], explainer, real_img, rnd, corr)
