"""Example plugin: a mosaic 'inpainter' that shows the masked region as coarse blocks.

Drop a file like this one into ./plugins (or IC_ZOO_PLUGINS_DIR) and it is loaded at start-up; see
plugins/README.md for the contract. It is deliberately small: the base class does the validation,
the size policy and the paste-back, so a plugin only implements `_inpaint`.
"""
import numpy as np

from ic_zoo import Inpainter, register


@register("inpainter", "pixelate", description="mosaic of block x block cells over the mask (example plugin)")
class Pixelate(Inpainter):
    needs_context = False  # averages the masked cells themselves: works on the whole image too

    def __init__(self, block: int = 16, work_size=None):
        if int(block) < 1:
            raise ValueError("block must be at least 1 pixel")
        super().__init__(work_size, block=int(block))

    def _inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b = self.params["block"]
        h, w = mask.shape
        out = image.copy()
        for y in range(0, h, b):
            for x in range(0, w, b):
                cell = (slice(y, y + b), slice(x, x + b))
                if mask[cell].any():
                    out[cell] = image[cell].reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
        return out
