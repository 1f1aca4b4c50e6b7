"""Export the example photos from scikit-image (public domain / CC0) and their hand-made masks, and
draw the Flower2D examples.

    python examples/make_examples.py

Writes chelsea.jpg, coffee.jpg, camera.jpg, astronaut.jpg, rocket.jpg and chelsea_mask.png (the cat's eyes) next to
this file, the prepared edits of the predict-then-see study in study/ (``STUDY_MASKS``), and flower2d/ (six held-out double-12c flowers at 256 px with their discriminative masks, part
maps and parameters). Licences: see LICENSES.md.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent
PHOTOS = {"chelsea": data.chelsea, "coffee": data.coffee, "camera": data.camera, "astronaut": data.astronaut,
          "rocket": data.rocket}


def chelsea_mask(shape) -> np.ndarray:
    """Both of Chelsea's eyes, as a person would paint them."""
    m = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(m, (170, 113), (40, 33), 0, 0, 360, 255, -1)
    cv2.ellipse(m, (318, 136), (30, 30), 0, 0, 360, 255, -1)
    return m


def _ellipse(shape, centre, axes, angle=0) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(m, centre, axes, angle, 0, 360, 255, -1)
    return m


def _rect(shape, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


#: the prepared edits of the predict-then-see example study (examples/study/predict_study.yaml), each drawn
#: by hand on the photo as a participant would paint it: the cup with its crema, the rocket's body, one of the
#: launch towers, the astronaut's face
STUDY_MASKS = {
    "coffee_cup_mask.png": ("coffee", lambda s: _ellipse(s, (285, 170), (120, 110))),
    "rocket_body_mask.png": ("rocket", lambda s: _rect(s, 300, 120, 345, 410)),
    "rocket_tower_mask.png": ("rocket", lambda s: _rect(s, 560, 0, 640, 427)),
    "astronaut_face_mask.png": ("astronaut", lambda s: _ellipse(s, (230, 120), (60, 75))),
}


def main() -> None:
    for name, fn in PHOTOS.items():
        img = fn()  # camera is grey: saved as a grey JPEG, read back as RGB
        Image.fromarray(img).save(HERE / f"{name}.jpg", quality=92)
    Image.fromarray(chelsea_mask(data.chelsea().shape)).save(HERE / "chelsea_mask.png")
    for name, (photo, draw) in STUDY_MASKS.items():
        Image.fromarray(draw(PHOTOS[photo]().shape)).save(HERE / "study" / name)
    import sys

    sys.path.insert(0, str(HERE.parent))
    from ic_zoo.cli import main as cli

    cli(["flower2d", "generate", "--variant", "double-12c", "--split", "test", "--n", "6", "--size", "256",
         "--start", "9000", "--out", str(HERE / "flower2d")])
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.jpg"))), "and chelsea_mask.png")


if __name__ == "__main__":
    main()
