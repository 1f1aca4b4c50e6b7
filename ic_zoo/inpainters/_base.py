"""The inpainter contract: the base class owns the size policy, each inpainter only fills.

``Inpainter.inpaint(image, mask)`` validates the inputs, returns a copy for an empty mask, works on a
downscaled copy when the image is much larger than what the classifiers see (``work_size``, the
shorter side; None to disable), pads to ``pad_multiple`` when the method needs it (LaMa: 8), and
finally pastes back *only the masked pixels*: every other pixel of the result is the input's, byte
for byte, whatever the method did.

Full and near-full masks, the same rule for every inpainter: a method that fills the mask *from the
rest of the image* (``needs_context = True``: Telea, Navier-Stokes, PatchMatch, LaMa, the mean fill)
refuses a mask that leaves less than ``MIN_CONTEXT`` of the image (0.5 %, and at least 64 pixels)
unpainted, with one sentence; left to themselves OpenCV returns the image unchanged and PatchMatch a
black one. A method that transforms the masked pixels themselves (``needs_context = False``: blur,
pixelate) takes any mask, the whole image included.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import BadImageError, MaskError

#: Shorter side above which inpainting runs on a downscaled copy. Classifiers see 224-256 px crops,
#: so 448 keeps twice their detail while keeping PatchMatch / LaMa interactive on big photos.
DEFAULT_WORK_SIZE = 448
#: The least share of the image a context-filling inpainter needs unpainted (and at least MIN_CONTEXT_PX).
MIN_CONTEXT = 0.005
MIN_CONTEXT_PX = 64


#: threads that fill a batch of masks at once (``Inpainter.inpaint_many``, thread-safe inpainters only)
THREADS = max(1, min(4, os.cpu_count() or 1))


def check_inputs(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadImageError(f"Inpainters take RGB uint8 images H x W x 3, not {image.dtype} {image.shape}.")
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        mask = mask > (127 if mask.dtype == np.uint8 and mask.max() > 1 else 0)
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    if mask.shape != image.shape[:2]:
        raise MaskError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                        f"{image.shape[1]}x{image.shape[0]}; resize the mask first (ic_zoo.imageio.load_mask does).")
    return image, mask


class Inpainter:
    """Subclass and implement ``_inpaint(image, mask) -> image`` (RGB uint8, bool mask, same size)."""

    shared_between_tabs = True  # one instance serves every tab (memsize.nbytes does not count it)

    name: str = ""
    pad_multiple: int = 1
    needs_context: bool = True  # fills the mask from the unmasked pixels (False: transforms the masked ones)
    #: whether ``inpaint`` may run on several threads at once (it holds no state between calls and its
    #: work releases the GIL): batch removals (occlusion, LIME) then fill several masks in parallel
    thread_safe: bool = False

    def __init__(self, work_size: int | None = DEFAULT_WORK_SIZE, **params) -> None:
        self.work_size = work_size
        self.params = params

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        image, mask = check_inputs(image, mask)
        out = image.copy()
        if not mask.any():
            return out
        self._check_context(mask)
        H, W = mask.shape
        short = min(H, W)
        if self.work_size and short > self.work_size:
            s = self.work_size / short
            size = (max(1, round(W * s)), max(1, round(H * s)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            # area-average then > 0: every stroke pixel stays inside the small mask
            small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
            self._check_context(small_mask, mask)
            filled = cv2.resize(self._padded(small, small_mask), (W, H), interpolation=cv2.INTER_LINEAR)
        else:
            filled = self._padded(image, mask)
        if filled.shape != image.shape or filled.dtype != np.uint8:
            raise RuntimeError(f"inpainter '{self.name}' returned {filled.dtype} {filled.shape} for {image.shape}")
        out[mask] = filled[mask]
        return out

    def inpaint_many(self, image: np.ndarray, masks) -> list:
        """``inpaint(image, m)`` for each mask, in order, on up to ``THREADS`` threads when the inpainter is
        thread-safe (OpenCV's release the GIL: about 1.6x on 2 cores). A mask the inpainter refuses (too
        little context left) gives its MaskError in place of the image."""
        def one(m):
            try:
                return self.inpaint(image, m)
            except MaskError as e:
                return e

        masks = list(masks)
        workers = min(THREADS, len(masks)) if self.thread_safe else 1
        if workers <= 1:
            return [one(m) for m in masks]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(one, masks))

    def _check_context(self, mask: np.ndarray, full: np.ndarray | None = None) -> None:
        """Refuse a mask that leaves too little of the image for this method to fill it from."""
        if not self.needs_context:
            return
        keep = int((~mask).sum())
        if keep >= max(MIN_CONTEXT_PX, MIN_CONTEXT * mask.size):
            return
        share = float((full if full is not None else mask).mean())
        raise MaskError(
            f"The painted region covers {100 * share:.1f}% of the image, which leaves too little for "
            f"'{self.name or type(self).__name__}' to fill it from (it needs at least {100 * MIN_CONTEXT:g}% "
            "unpainted); undo part of the stroke, or use 'blur', which works on the whole image.")

    def _padded(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = self.pad_multiple
        H, W = mask.shape
        ph, pw = (-H) % m, (-W) % m
        if ph == 0 and pw == 0:
            return self._inpaint(image, mask)
        img_p = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        mask_p = np.pad(mask, ((0, ph), (0, pw)), mode="symmetric")
        return np.ascontiguousarray(self._inpaint(img_p, mask_p)[:H, :W])

    def _inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.params}>"
