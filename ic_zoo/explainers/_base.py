"""The explainer contract.

An explainer turns (classifier, input batch, class indices) into class maps at the model-input
resolution. Two kinds:

* **interactive** explainers read everything from the single forward pass an edit already makes:
  they declare ``taps(clf)`` (layers to capture, whether gradients are needed there) and compute maps
  in ``from_run``. Gradients are taken only from the output back to the tapped layer, for all
  requested classes in one batched backward sweep.
* **slow** explainers (Score-CAM, Ablation-CAM, FullGrad, occlusion...) override ``explain`` and run
  whatever extra passes they need, reporting progress through a callback.

Maps are returned twice: ``raw`` (non-negative, in the method's own units, comparable between the
original and the modified image of the same model) and ``normalized`` (min-max per map, exactly what
pytorch-grad-cam returns for the same input).

A map can be **blank**: no positive evidence anywhere (Grad-CAM on an image whose weighted activations are
all negative, which the ReLU leaves at zero). ``is_blank`` is the one test; ``ExplainOutput.blank`` and
the session's ``ClassMaps.blank`` read it, so a caller gets a flag, not only zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Progress = Callable[[float, str], None]


def preview_of(progress: Progress | None) -> Callable[[np.ndarray, np.ndarray], None] | None:
    """A progress that also shows maps before they are final: its ``preview(image, raw)`` method, called by an
    explainer that refines its map (the fast occlusion) with the model-input image (h, w, 3) and the raw maps
    (k, h, w) known so far; None when it has none. The final map never depends on it."""
    show = getattr(progress, "preview", None)
    return show if callable(show) else None


@dataclass
class TapSpec:
    layers: list
    grad: list[bool]
    use_input: list[bool]
    #: a context manager factory held around the tapped pass (e.g. switching a fused attention kernel off
    #: so the attention matrix exists to be tapped); None: nothing
    during: Callable | None = None


#: a raw map none of whose values exceeds this has no positive evidence (float32 round-off of a zero map)
BLANK_EPS = 1e-7


def is_blank(raw: np.ndarray) -> np.ndarray | bool:
    """Per map of ``raw`` (..., h, w): True where no value exceeds ``BLANK_EPS`` (NaN counts as nothing)."""
    raw = np.asarray(raw)
    out = ~(raw > BLANK_EPS).any(axis=(-2, -1))
    return bool(out) if out.ndim == 0 else out


@dataclass
class ExplainOutput:
    raw: np.ndarray  # (k, h, w) float32 >= 0 at model-input resolution
    normalized: np.ndarray  # (k, h, w) float32 in [0, 1]

    @property
    def blank(self) -> np.ndarray:
        """(k,) bool: True for a class whose map has no positive evidence (all zero)."""
        return is_blank(self.raw)


class Explainer:
    shared_between_tabs = True  # one instance serves every tab (memsize.nbytes does not count it)

    name: str = ""
    cost: str = "interactive"  # "interactive" or "slow"
    description: str = ""
    #: False where a map is not evidence for the class (evidence against it, say): such an explainer is never
    #: named as one that gives a map where another's is blank
    positive_evidence: bool = True

    def supports(self, clf) -> str | None:
        """None when this explainer applies to ``clf``, else one sentence saying why not."""
        if getattr(clf, "target_layers", None):
            return None
        return getattr(clf, "cam_refusal", None) or f"{clf.name} declares no CAM target layer"

    # interactive explainers -----------------------------------------------------------------
    def taps(self, clf) -> TapSpec | None:
        return None

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        raise NotImplementedError

    # optional hooks ----------------------------------------------------------------------------
    #: forward passes the last ``explain`` call made, for an explainer that counts them (benchmarks read
    #: it); None for one that does not
    last_passes: int | None = None

    def contrast_from_run(self, clf, run, x, a: int, b: int) -> ExplainOutput:
        """Optional: "why a rather than b", a map of logit[a] - logit[b] from a tapped run (Grad-CAM,
        HiResCAM, FinerCAM). An explainer without it cannot contrast (``contrasts()`` is False)."""
        from ..errors import ExplainerNotSupportedError

        raise ExplainerNotSupportedError(f"{self.name} cannot contrast two classes; use Grad-CAM or HiResCAM.")

    def contrasts(self) -> bool:
        """Whether this explainer implements ``contrast_from_run``."""
        return type(self).contrast_from_run is not Explainer.contrast_from_run

    # every explainer ---------------------------------------------------------------------------
    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        spec = self.taps(clf)
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__} must implement explain() or taps()/from_run()")
        with clf.lock:
            run = clf.run(x, spec.layers, spec.grad, spec.use_input, during=spec.during)
            return self.from_run(clf, run, x, classes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.cost})>"


def resize_maps(maps: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """(k, h, w) -> (k, H, W) with cv2 bilinear, as pytorch-grad-cam resizes (but without normalising)."""
    import cv2

    maps = np.asarray(maps, np.float32)
    if maps.shape[-1] == size_wh[0] and maps.shape[-2] == size_wh[1]:
        return maps.copy()
    return np.stack([cv2.resize(m, size_wh) for m in maps]).astype(np.float32)


def input_size_wh(x) -> tuple[int, int]:
    return int(x.shape[-1]), int(x.shape[-2])


def normalize_like_library(per_layer: list[np.ndarray], size_wh: tuple[int, int]) -> np.ndarray:
    """Min-max normalise maps exactly as pytorch-grad-cam does (per layer: ReLU, scale + resize; then
    mean over layers, scaled again), so maps from any explainer compare with the library's."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    scaled = [scale_cam_image(np.maximum(m, 0), size_wh)[:, None] for m in per_layer]
    return scale_cam_image(np.mean(np.maximum(np.concatenate(scaled, axis=1), 0), axis=1)).astype(np.float32)
