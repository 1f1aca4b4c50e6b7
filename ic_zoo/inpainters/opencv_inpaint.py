"""OpenCV inpainters (Telea, Navier-Stokes), blur inside the mask, and a mean-colour fill control."""
from __future__ import annotations

import numpy as np

from ..registry import register
from ._base import DEFAULT_WORK_SIZE, Inpainter


class _OpenCVInpaint(Inpainter):
    flag_name = "INPAINT_TELEA"
    thread_safe = True  # cv2.inpaint releases the GIL

    def __init__(self, radius: float = 3.0, work_size: int | None = DEFAULT_WORK_SIZE) -> None:
        if not radius > 0:
            raise ValueError("the inpainting radius must be positive")
        super().__init__(work_size, radius=float(radius))

    def _inpaint(self, image, mask):
        import cv2

        return cv2.inpaint(image, mask.astype(np.uint8) * 255, self.params["radius"], getattr(cv2, self.flag_name))


@register("inpainter", "telea", requires=("cv2",), description="OpenCV fast marching (Telea 2004); radius in px")
class Telea(_OpenCVInpaint):
    flag_name = "INPAINT_TELEA"


@register("inpainter", "ns", requires=("cv2",), description="OpenCV Navier-Stokes (Bertalmio 2001); radius in px")
class NavierStokes(_OpenCVInpaint):
    flag_name = "INPAINT_NS"


@register("inpainter", "blur", requires=("cv2",),
          description="Gaussian blur inside the mask (the seed's blur tool); sigma in px")
class Blur(Inpainter):
    thread_safe = True
    needs_context = False  # blurs the masked pixels themselves: any mask, the whole image included

    def __init__(self, sigma: float = 8.0, work_size: int | None = DEFAULT_WORK_SIZE) -> None:
        if not sigma > 0:
            raise ValueError("the blur sigma must be positive")
        super().__init__(work_size, sigma=float(sigma))

    def _inpaint(self, image, mask):
        import cv2

        return cv2.GaussianBlur(image, (0, 0), self.params["sigma"], borderType=cv2.BORDER_REFLECT)


@register("inpainter", "mean_fill", description="fills the mask with the mean colour of the unmasked pixels (a control)")
class MeanFill(Inpainter):
    thread_safe = True

    def __init__(self, work_size: int | None = None) -> None:
        super().__init__(work_size)

    def _inpaint(self, image, mask):
        keep = ~mask  # never empty: the base class refuses masks without context
        colour = image[keep].mean(axis=0)
        out = image.copy()
        out[mask] = np.round(colour).astype(np.uint8)
        return out
