"""True CAM (Zhou et al. 2016), the seed demo's method: for a head made of global average pooling and
a linear (or 1x1-conv) layer, the map of class c is its weights applied at every position,
``M_c(x, y) = w_c . f(x, y)``, whose spatial mean is the logit up to the bias. For SqueezeNet the
1x1-conv class maps after their ReLU are used as they are (the seed's CAM). No gradients needed; for a
linear head CAM equals Grad-CAM up to scale."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..registry import register
from ._base import ExplainOutput, Explainer, TapSpec, input_size_wh, normalize_like_library, resize_maps


@register("explainer", "cam", requires=("pytorch_grad_cam",),
          description="CAM (Zhou et al. 2016): class weights applied to the last feature map; GAP heads only")
class TrueCAM(Explainer):

    def supports(self, clf) -> str | None:
        if clf.cam_head() is None:
            return (f"CAM needs a global-average-pooling + linear head, which {clf.name} does not have; "
                    "use Grad-CAM or HiResCAM instead")
        return None

    def taps(self, clf) -> TapSpec:
        head = clf.cam_head()
        return TapSpec([head.layer], [False], [head.use_input])

    def from_run(self, clf, run, x, classes: Sequence[int]) -> ExplainOutput:
        import torch

        head = clf.cam_head()
        classes = [int(c) for c in classes]
        with torch.no_grad():
            maps = head.to_maps(run.acts[0].detach(), classes)[0].float().cpu().numpy()
        maps = np.maximum(maps, 0)
        size = input_size_wh(x)
        return ExplainOutput(resize_maps(maps, size), normalize_like_library([maps], size))
