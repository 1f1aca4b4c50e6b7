"""A base for gradient CAM methods, in the spirit of pytorch-grad-cam's ``BaseCAM``.

A new method is one class overriding one hook:

* ``weights(acts, grads)``: channel weights, (k, C), from the target layer's activations (1, C, h, w)
  and the gradients of the k requested logits with respect to them (k, C, h, w); the map is then
  ReLU(sum over channels of weight x activation), as in Grad-CAM; or
* ``cam(acts, grads)``: the maps themselves, (k, h, w), for methods that are not a weighted sum.

Everything else comes with the base: the edit's single forward pass taps the target layers (no extra
pass, all classes' gradients in one batched sweep), the classifier's lock is held, ViT tokens are
reshaped to a grid by the classifier's ``reshape_transform``, nothing is left hooked, and the maps are
normalised exactly as pytorch-grad-cam normalises its own (``normalize_like_library``). See
``plugins/counterfactual_gradcam.py`` for a complete method in a few lines.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._base import ExplainOutput, Explainer, TapSpec, input_size_wh, normalize_like_library, resize_maps


class GradientCAM(Explainer):
    """Subclass and override ``weights`` (or ``cam``); register it as an explainer."""

    uses_gradients = True  # False: ``grads`` is None (a method that reads the activations only)
    one_of_hooks = ("weights", "cam")  # registration refuses a subclass that overrides neither

    def weights(self, acts: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        """(k, C) channel weights; Grad-CAM's are the gradients' spatial means."""
        raise NotImplementedError(f"{type(self).__name__} must override weights(acts, grads) or cam(acts, grads)")

    def cam(self, acts: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        """(k, h, w) maps, before ReLU; by default the weighted sum of the activation channels."""
        w = np.asarray(self.weights(acts, grads), np.float32)
        return np.einsum("kc,chw->khw", w, acts[0])

    def taps(self, clf) -> TapSpec:
        n = len(clf.target_layers)
        return TapSpec(list(clf.target_layers), [self.uses_gradients] * n, [False] * n)

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        classes = [int(c) for c in classes]
        n = len(clf.target_layers)
        rt = clf.reshape_transform
        with clf.lock:
            grads = run.grads(classes, list(range(n))) if self.uses_gradients else [None] * n
        size = input_size_wh(x)
        per_layer, raw_layers = [], []
        for i in range(n):
            a = run.acts[i].detach()
            a = (rt(a) if rt is not None else a).cpu().float().numpy()
            g = None
            if grads[i] is not None:
                g = (rt(grads[i]) if rt is not None else grads[i]).detach().cpu().float().numpy()
            maps = np.maximum(np.asarray(self.cam(a, g), np.float32), 0)
            if maps.shape[0] != len(classes):  # a class-agnostic method: one map for all
                maps = np.broadcast_to(maps[:1], (len(classes),) + maps.shape[1:])
            per_layer.append(maps)
            raw_layers.append(resize_maps(maps, size))
        return ExplainOutput(np.mean(raw_layers, axis=0).astype(np.float32), normalize_like_library(per_layer, size))
