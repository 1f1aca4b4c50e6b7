"""Does this map deserve trust? Its deletion AUC beside a random map's.

A class map claims "these pixels matter to the model for this class". The deletion test (Petsiuk et
al., RISE, BMVC 2018) checks the claim on the model itself: remove the map's hottest 1, 2, 5, 10, 20 and
30% of the pixels (here by inpainting, the app's own removal), and follow the class probability; the
area under that curve (mean probability over the steps, the unedited image included) is low when the map
found what matters. The same test on random maps (smooth noise, the explanation benchmark's random
control) of the same image gives the bar a map must clear: a map whose AUC is not below the random maps'
says little about the model, and the score says so.

Every map, the random ones included, is ranked at the random maps' scale (blurred at ``REGION_SIGMA`` =
``RANDOM_SIGMA`` px) before its pixels are deleted. Pixel by pixel, a sharp map (Input x Gradient,
Integrated Gradients: speckle on the right parts) had its hottest pixels removed one by one, inpainting
refilled each from its neighbours, nothing was removed, and the map scored at or below the smooth random
maps: the score measured sharpness against smoothness, not where the map points (on Flower2D its ranking of
explainers agreed with the ground truth's at Spearman 0.3-0.8; see ``ic_zoo.research.trust_agreement``).

Every removal of every map is inpainted on the model-input image and classified in one batched pass
(by default 1 + 2 maps x 6 steps: 13 images, the unedited one shared).

``road()`` is pytorch-grad-cam's ROAD (Rong et al., ICML 2022; ``ROADCombined``, percentiles 20-80),
the library's own measure: noisy linear imputation instead of inpainting, most- and least-relevant
first combined (higher is better).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import priority
from ..explainers._base import is_blank

FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.10, 0.20, 0.30)
N_RANDOM = 2
#: images per forward pass (and per inpainting call) of a deletion curve: the model is held for one batch at
#: a time, and a stroke that arrives waits for the batch in progress only (two images: about 0.1 s on the
#: Lite models on 2 cores; eight made a stroke during a trust follow-up 60 % slower)
FORWARD_BATCH = 2
#: the random maps' spread below which a gap is not called a difference (AUC units)
MARGIN = 0.01
#: below this p(class) on the image itself there is too little left to delete: no verdict
MIN_P = 0.10


#: the random maps' smoothness (Gaussian sigma, px at the model's input)
RANDOM_SIGMA = 4.0
#: every map is ranked at this scale before its pixels are deleted (None: pixel by pixel)
REGION_SIGMA = RANDOM_SIGMA


def random_map(shape: tuple[int, int], rng) -> np.ndarray:
    """A smooth random map (Gaussian noise blurred at sigma 4 px, min-max), the benchmark's control."""
    import cv2

    noise = rng.standard_normal(shape).astype(np.float32)
    m = cv2.GaussianBlur(noise, (0, 0), RANDOM_SIGMA)
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32)


def at_scale(h: np.ndarray, sigma: float | None) -> np.ndarray:
    """``h`` blurred at ``sigma`` px (the order its deletion follows); ``h`` itself when sigma is None."""
    import cv2

    h = np.asarray(h, np.float32)
    return h if not sigma else cv2.GaussianBlur(h, (0, 0), float(sigma))


def deletion_probs(clf, img: np.ndarray, heats, cls: int, fill, fractions=FRACTIONS) -> np.ndarray:
    """p(cls) after removing each map's hottest ``fractions`` of pixels: (n maps, len(fractions)).

    ``img`` is the model-input image (h, w, 3) uint8, ``heats`` maps (n, h, w) at that size, ``fill`` an
    Inpainter. All removals go through the model in one batch (the unedited image once)."""
    import torch

    heats = np.asarray(heats, np.float32)
    if heats.ndim == 2:
        heats = heats[None]
    masks, where = [], []
    for h in heats:
        order = np.argsort(-h.ravel(), kind="stable")
        row = []
        for f in fractions:
            k = int(round(f * h.size))
            if k == 0:
                row.append(0)
                continue
            mask = np.zeros(h.size, bool)
            mask[order[:k]] = True
            masks.append(mask.reshape(h.shape))
            row.append(len(masks))
        where.append(row)
    batch = [img]
    for i in range(0, len(masks), FORWARD_BATCH):
        priority.yield_to_foreground()  # a stroke in progress first (see priority)
        for im in fill.inpaint_many(img, masks[i:i + FORWARD_BATCH]):
            if isinstance(im, Exception):
                raise im
            batch.append(im)
    p = []
    for i in range(0, len(batch), FORWARD_BATCH):  # the model held per batch: a stroke's pass can come between
        priority.yield_to_foreground()
        with clf.lock, torch.inference_mode():
            x = clf.image_to_tensor(np.stack(batch[i:i + FORWARD_BATCH]))
            p.append(torch.softmax(clf.forward(x).float(), 1)[:, int(cls)].cpu().numpy())
    p = np.concatenate(p)
    return np.asarray([[p[i] for i in row] for row in where], np.float64)


def auc(probs: np.ndarray, fractions=FRACTIONS) -> np.ndarray:
    """Area under the deletion curve over the fractions' span, as a mean probability (lower is better)."""
    x = np.asarray(fractions, np.float64)
    return np.trapezoid(np.atleast_2d(probs), x, axis=-1) / (x[-1] - x[0])


@dataclass
class TrustScore:
    """A map's deletion AUC beside random maps' on the same image, model and class."""

    model: str
    label: str
    explainer: str
    inpainter: str
    auc: float  # the map's deletion AUC (lower: its hottest pixels matter more)
    random_auc: float  # mean over the random maps
    random_std: float
    n_random: int
    curve: list[float] = field(default_factory=list)  # p(class) per fraction, the map's
    random_curve: list[float] = field(default_factory=list)  # the random maps' mean curve
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))
    road: float | None = None  # ROADCombined, when asked (higher is better)

    @property
    def verdict(self) -> str:
        """"better than random", "no better than random" or "worse than random"."""
        if not np.isfinite(self.auc):
            return "an empty map, nothing to test"
        if self.curve and self.curve[0] < MIN_P:
            return f"not testable here (p < {MIN_P:.0%} before any deletion)"
        bar = max(MARGIN, self.random_std)
        if self.auc < self.random_auc - bar:
            return "better than random"
        if self.auc > self.random_auc + bar:
            return "worse than random"
        return "no better than random"

    def to_dict(self) -> dict:
        return {"model": self.model, "label": self.label, "explainer": self.explainer, "inpainter": self.inpainter,
                "deletion_auc": round(self.auc, 4) if np.isfinite(self.auc) else None, "random_deletion_auc": round(self.random_auc, 4),
                "random_std": round(self.random_std, 4), "n_random": self.n_random, "verdict": self.verdict,
                "fractions": self.fractions, "curve": [round(v, 4) if np.isfinite(v) else None for v in self.curve],
                "random_curve": [round(v, 4) for v in self.random_curve],
                "road": None if self.road is None else round(self.road, 4)}


def trust_score(clf, img: np.ndarray, heat: np.ndarray, cls: int, fill, *, model: str = "", explainer: str = "",
                n_random: int = N_RANDOM, seed: int = 0, sigma: float | None = REGION_SIGMA) -> TrustScore:
    """The trust score of ``heat`` (h, w) for class ``cls`` on the model-input image ``img``; every map
    ranked at ``sigma`` (``at_scale``) before deletion."""
    heat = np.asarray(heat, np.float32)
    rng = np.random.default_rng(seed)
    rand = [random_map(heat.shape, rng) for _ in range(n_random)]
    empty = bool(is_blank(heat))  # nothing marked: no order to test (an empty map scores nan)
    maps = [at_scale(h, sigma) for h in ([] if empty else [heat]) + rand]
    probs = deletion_probs(clf, img, maps, cls, fill)
    if empty:
        probs = np.concatenate([np.full((1, probs.shape[1]), np.nan), probs])
    aucs = auc(probs)
    return TrustScore(model or clf.name, clf.labels[int(cls)], explainer, getattr(fill, "name", type(fill).__name__),
                      float(aucs[0]), float(aucs[1:].mean()), float(aucs[1:].std()), n_random,
                      [float(v) for v in probs[0]], [float(v) for v in probs[1:].mean(0)])


def road(clf, x, heat: np.ndarray, cls: int, percentiles=(20, 40, 60, 80)) -> float:
    """pytorch-grad-cam's ROADCombined for one map (h, w) at the input ``x``'s size (higher is better)."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    with clf.lock:
        score = ROADCombined(percentiles=list(percentiles))(
            x, np.asarray(heat, np.float32)[None], [ClassifierOutputSoftmaxTarget(int(cls))], clf.logits_module())
    return float(np.asarray(score).ravel()[0])


_road = road  # map_trust's parameter of that name shadows it


def map_trust(session, name: str, cls: int, explainer: str = "gradcam", which: str = "modified", *,
              inpainter: str = "telea", road: bool = False, n_random: int | None = None) -> TrustScore:
    """Does the map deserve trust? ``explainer``'s map of ``cls`` on ``session``'s ``which`` image
    ("original" or "modified"): its deletion AUC by inpainting (``inpainter``) beside ``n_random`` random
    maps' (``.verdict`` says better than, no better than, or worse than random), and with ``road``
    pytorch-grad-cam's ROADCombined too. One batched pass per map; the score is kept in the session's
    result cache, so it is computed once per image version whoever asks first."""
    from ..errors import InputError
    from ..session import get_explainer, get_inpainter

    n_random = N_RANDOM if n_random is None else int(n_random)
    if which not in ("original", "modified"):
        raise InputError(f"which is 'original' or 'modified', not {which!r}.")
    session.explain(name, int(cls), explainer)  # checks the model, class and explainer; maps cached
    ex = get_explainer(explainer)
    with session.lock:
        version = 0 if which == "original" else session.version
        st = session.state(name, version)
        key = (ex.name, int(cls), inpainter, n_random)
        clf = session.classifier(name)
        raw = session.maps(name, version, ex, [int(cls)])[0][0]  # cached by explain() above
        score, x = st.trust.get(key), st.x
    # measured outside the session's lock (a stroke applied meanwhile does not wait for it; the state of
    # this version keeps the score, the same whoever measures it first)
    if score is None:
        score = trust_score(clf, clf.tensor_to_image(x), raw, int(cls), get_inpainter(inpainter),
                            model=name, explainer=ex.name, n_random=n_random)
        with session.lock:
            score = st.trust.setdefault(key, score)
    if road and score.road is None:  # asked for later: added to the score already measured
        score.road = _road(clf, x, raw, int(cls))
    return score
