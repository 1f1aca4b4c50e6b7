"""PatchMatch inpainting (Barnes et al. 2009) through the PyPatchMatch wheel, as in the seed demo."""
from __future__ import annotations

import threading

import numpy as np

from ..registry import register
from ._base import DEFAULT_WORK_SIZE, Inpainter

_SEED_LOCK = threading.Lock()  # the native library keeps one global RNG


@register("inpainter", "patchmatch", requires=("patchmatch",), pip="PyPatchMatch",
          description="PatchMatch: copies matching patches from the rest of the image; patch_size is a radius")
class PatchMatch(Inpainter):

    def __init__(self, patch_size: int = 5, seed: int = 0, work_size: int | None = DEFAULT_WORK_SIZE) -> None:
        if not 1 <= int(patch_size) <= 64:
            raise ValueError("patch_size must be between 1 and 64")
        super().__init__(work_size, patch_size=int(patch_size), seed=int(seed))

    def _inpaint(self, image, mask):
        import patchmatch

        with _SEED_LOCK:  # deterministic for a given seed
            patchmatch.set_random_seed(self.params["seed"])
            out = patchmatch.inpaint(image, mask.astype(np.uint8) * 255, patch_size=self.params["patch_size"])
        return np.asarray(out, dtype=np.uint8)
