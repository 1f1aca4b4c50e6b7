"""Gradient attributions through Captum (https://captum.ai), for every classifier.

The attribution math is Captum's own; this module only feeds it the classifier's logits module, holds
the classifier's lock, and turns Captum's (k, 3, h, w) attributions into the explainer contract's class
maps:

* the map is the attribution summed over the colour channels (FunnyBirds sums attributions the same way
  when it scores parts), and its positive part is kept: the evidence *for* the class, as the CAMs keep
  ReLU(map). ``raw`` is that positive part in the method's own units; ``normalized`` is min-max per map,
  as pytorch-grad-cam normalises its own.

Four methods:

* ``inputxgradient``: Input x Gradient (Shrikumar et al. 2016), one backward per request, all classes in
  one batch: interactive. It is the method of FunnyBirds' reference row, so the part-level protocol can be
  compared with it.
* ``integratedgradients``: Integrated Gradients (Sundararajan et al., ICML 2017), from the all-zero
  baseline of the normalised input (the dataset's mean colour), 32 Gauss-Legendre steps in batches:
  slow.
* ``smoothgrad``: SmoothGrad (Smilkov et al. 2017) through Captum's NoiseTunnel around the gradient's
  magnitude (Saliency, as Captum defines it), 16 samples with noise of 15% of the input's range (the paper's 10-20%), a fixed
  seed so the same request gives the same map, the process's random state untouched: slow.
* ``captum-occlusion``: Captum's sliding-window Occlusion with a baseline (the mean colour), windows of an
  eighth of the input side, half-window strides: slow. The project's own ``occlusion`` removes regions by
  inpainting instead; this one is the field's reference form.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, Progress, input_size_wh, normalize_like_library

IG_STEPS = 32
SG_SAMPLES = 16
SG_NOISE = 0.15  # share of the input's value range
SEED = 0


def _batch(clf) -> int:
    """Images per Captum forward/backward batch: bounded so a large model's backward fits on a CPU."""
    return 64 if getattr(clf.device, "type", "cpu") == "cuda" else 16


IXG = ("Input x Gradient (Shrikumar et al. 2016), through Captum: the input times the class logit's gradient, "
       "summed over colour; FunnyBirds' reference method; one backward")
IG = (f"Integrated Gradients (Sundararajan et al. 2017), through Captum: {IG_STEPS} steps from the mean-colour "
      f"baseline; {IG_STEPS} forward and backward passes per class")
SG = (f"SmoothGrad (Smilkov et al. 2017), through Captum's NoiseTunnel: the gradient averaged over {SG_SAMPLES} "
      f"noisy copies; {SG_SAMPLES} backward passes per class")
OCC = ("Captum's sliding-window Occlusion with the mean colour as baseline (windows of 1/8 the side, half "
       "strides): about 225 forward passes per class; the project's 'occlusion' inpaints regions instead")


class CaptumExplainer(Explainer):
    """One Captum attribution method; subclasses say which and with what arguments (``attribute``)."""

    per_class = True  # one Captum call per class (progress per class); False: all classes in one call

    def supports(self, clf) -> str | None:
        return None  # any differentiable classifier: Captum needs only the logits module

    def attribute(self, clf, module, x, targets: list[int]):
        raise NotImplementedError

    @contextlib.contextmanager
    def _gradients(self, clf):
        """Gradient mode on, the model's grads cleared after (parameters stay frozen: only the input's
        gradient is taken)."""
        import torch

        with torch.enable_grad():
            try:
                yield
            finally:
                clf.model.zero_grad(set_to_none=True)

    def explain(self, clf, x, classes: Sequence[int], progress: Progress | None = None) -> ExplainOutput:
        classes = [int(c) for c in classes]
        size = input_size_wh(x)
        groups = [[c] for c in classes] if self.per_class else [classes]
        maps = []
        with clf.lock, self._gradients(clf):
            module = clf.logits_module()
            for j, group in enumerate(groups):
                if progress is not None and self.per_class:
                    progress(j / len(groups), f"{self.name}: class {group[0]} ({j + 1}/{len(groups)})")
                xs = x.detach().expand(len(group), *x.shape[1:]).clone().requires_grad_(True)
                attr = self.attribute(clf, module, xs, group)
                maps.append(attr.detach().float().sum(1).cpu().numpy())
        if progress is not None:
            progress(1.0, f"{self.name}: done")
        raw = np.maximum(np.concatenate(maps), 0).astype(np.float32)
        return ExplainOutput(raw, normalize_like_library([raw], size))


class InputXGradient(CaptumExplainer):
    description, cost = IXG, "interactive"
    per_class = False

    def attribute(self, clf, module, x, targets):
        from captum.attr import InputXGradient as Method

        return Method(module).attribute(x, target=targets)


class IntegratedGradients(CaptumExplainer):
    description, cost = IG, "slow"

    def attribute(self, clf, module, x, targets):
        from captum.attr import IntegratedGradients as Method

        return Method(module).attribute(x, baselines=0.0, target=targets, n_steps=IG_STEPS,
                                        internal_batch_size=_batch(clf))


def smoothgrad_stdev(x) -> float:
    x = x.detach()
    return float(SG_NOISE * (x.max() - x.min()))


class SmoothGrad(CaptumExplainer):
    description, cost = SG, "slow"

    def attribute(self, clf, module, x, targets):
        import torch
        from captum.attr import NoiseTunnel, Saliency

        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(SEED)
            return NoiseTunnel(Saliency(module)).attribute(
                x, nt_type="smoothgrad", nt_samples=SG_SAMPLES, nt_samples_batch_size=_batch(clf),
                stdevs=smoothgrad_stdev(x), target=targets)


def occlusion_window(x) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(window, strides) for Captum's Occlusion: an eighth of the input side, half-window strides."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    wh, ww = max(2, h // 8), max(2, w // 8)
    return (int(x.shape[1]), wh, ww), (int(x.shape[1]), max(1, wh // 2), max(1, ww // 2))


class CaptumOcclusion(CaptumExplainer):
    description, cost = OCC, "slow"

    def attribute(self, clf, module, x, targets):
        import torch
        from captum.attr import Occlusion

        window, strides = occlusion_window(x)
        with torch.no_grad():
            return Occlusion(module).attribute(x, sliding_window_shapes=window, strides=strides, baselines=0.0,
                                               target=targets, perturbations_per_eval=_batch(clf))


for _name, _cls in (("inputxgradient", InputXGradient), ("integratedgradients", IntegratedGradients),
                    ("smoothgrad", SmoothGrad), ("captum-occlusion", CaptumOcclusion)):  # description, cost: the class's
    register("explainer", _name, _cls, requires=("captum",), pip="pip install captum", library="captum")
