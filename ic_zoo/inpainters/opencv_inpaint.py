"""OpenCV inpainters (Telea, Navier-Stokes), blur inside the mask, a mean-colour fill control, and the
contrib build's xphoto inpainters (FSR best and fast, shift-map)."""
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


# -- OpenCV's contrib build (xphoto): frequency-selective reconstruction and shift-map ------------------------
CONTRIB_PIP = "opencv-contrib-python-headless==4.13.0.92"


def contrib_missing() -> str | None:
    """None when OpenCV's contrib module xphoto is here, else the sentence that says how to get it."""
    import cv2

    if hasattr(cv2, "xphoto") and hasattr(cv2.xphoto, "inpaint"):
        return None
    return (f"needs OpenCV's contrib build (cv2.xphoto): pip uninstall -y opencv-python-headless && "
            f"pip install --no-deps {CONTRIB_PIP}")


class _XPhotoInpaint(Inpainter):
    """``cv2.xphoto.inpaint`` (its mask marks the pixels to keep): one of its three algorithms."""

    algorithm = "INPAINT_FSR_FAST"
    thread_safe = True  # OpenCV's C++ releases the GIL; no state between calls

    def __init__(self, work_size: int | None = DEFAULT_WORK_SIZE) -> None:
        super().__init__(work_size)

    def _inpaint(self, image, mask):
        import cv2

        out = np.zeros_like(image)
        keep = np.where(mask, 0, 255).astype(np.uint8)
        cv2.xphoto.inpaint(np.ascontiguousarray(image), keep, out, getattr(cv2.xphoto, self.algorithm))
        return out


@register("inpainter", "fsr_best", requires=("cv2",), check=contrib_missing,
          description="OpenCV contrib: frequency selective reconstruction, best quality (Genser 2018); slow, "
                      "works at 224 px")
class FSRBest(_XPhotoInpaint):
    """FSR's best mode costs about ten times its fast mode (about a minute for a large stroke at 448 px on 2
    cores): it works on a copy at most 224 px on its shorter side, what the classifiers see."""

    algorithm = "INPAINT_FSR_BEST"

    def __init__(self, work_size: int | None = 224) -> None:
        super().__init__(work_size)


@register("inpainter", "fsr_fast", requires=("cv2",), check=contrib_missing,
          description="OpenCV contrib: frequency selective reconstruction, fast mode (Genser 2018)")
class FSRFast(_XPhotoInpaint):
    algorithm = "INPAINT_FSR_FAST"


@register("inpainter", "shiftmap", requires=("cv2",), check=contrib_missing,
          description="OpenCV contrib: shift-map, patches copied from the image (He & Sun 2012)")
class ShiftMap(_XPhotoInpaint):
    algorithm = "INPAINT_SHIFTMAP"
