"""Helpers shared by the Gradio apps (the main app and study mode): editor values and one-sentence errors.

Imported only by the apps: ``import ic_zoo`` never imports Gradio.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os

import gradio as gr
import numpy as np

from . import imageio
from .errors import IcZooError

log = logging.getLogger("ic_zoo.app")
BRUSH = "#ff0000"


def guarded(fn):
    """Every failure reaches the user as one sentence; edits already made are kept."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except IcZooError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001
            log.exception("handler %s failed", fn.__name__)
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise gr.Error(f"Something went wrong ({msg}); your earlier edits are kept, please try again.",
                           print_exception=False) from None

    return wrapper


def on_zero_gpu() -> bool:
    """A Hugging Face Space on ZeroGPU hardware (which sets SPACES_ZERO_GPU) with the ``spaces`` package."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
    return flag and importlib.util.find_spec("spaces") is not None


class _WireTable:
    """A styled table on its way out of a ZeroGPU worker: the DataFrame crosses, the style is re-applied."""

    def __init__(self, df) -> None:
        self.df = df


def _map_leaves(value, leaf):
    """``leaf`` applied to every value inside nested lists, tuples and dicts (a handler's outputs)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_map_leaves(v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: _map_leaves(v, leaf) for k, v in value.items()}
    return leaf(value)


def _to_wire(value):
    return _map_leaves(value, lambda v: _WireTable(v.data) if type(v).__name__ == "Styler" and hasattr(v, "data")
                       else v)


def _from_wire(value):
    from .present import style_table

    return _map_leaves(value, lambda v: style_table(v.df) if isinstance(v, _WireTable) else v)


def gpu(fn, duration: int | None = None):
    """``fn`` inside ``@spaces.GPU`` on ZeroGPU (a GPU is attached for each call), ``fn`` itself elsewhere.

    ZeroGPU runs the call in a forked worker and pickles its arguments and its result, so the result
    goes out as picklable values (styled tables as their DataFrame) and is restyled here; the session
    state pickles without its caches (see ``Session.__getstate__``). ``spaces`` is optional: it is
    imported only on ZeroGPU. ``IC_ZOO_GPU_DURATION`` (seconds) sets the longest a call may hold the GPU
    (default 60)."""
    if not on_zero_gpu():
        return fn
    import spaces

    duration = duration or int(os.environ.get("IC_ZOO_GPU_DURATION", "60"))

    @functools.wraps(fn)
    def in_worker(*args, **kwargs):
        return _to_wire(fn(*args, **kwargs))

    remote = spaces.GPU(duration=duration)(in_worker)

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        return _from_wire(remote(*args, **kwargs))

    return handler


def model_call(fn):
    """A handler that runs models: one sentence for every failure (``guarded``), on a ZeroGPU GPU when the
    Space has one (``gpu``)."""
    return gpu(guarded(fn))


def editor_rgb(img) -> np.ndarray | None:
    """An editor background (RGBA or RGB) as an RGB uint8 array, transparency composed over white."""
    if img is None:
        return None
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return imageio.as_rgb_array(a) if a.dtype != np.uint8 or a.ndim != 3 else np.ascontiguousarray(a)


def stroke_mask(value) -> np.ndarray | None:
    """Painted pixels: opaque brush-red pixels of any layer (the eraser leaves transparency)."""
    if not value or value.get("background") is None:
        return None
    shape = np.asarray(value["background"]).shape[:2]
    m = np.zeros(shape, bool)
    for layer in value.get("layers") or []:
        a = np.asarray(layer)
        if a.ndim != 3 or a.shape[:2] != shape:
            continue
        if a.shape[2] == 4:
            m |= (a[..., 3] > 0) & (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
        else:
            m |= (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
    return m


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """The same picture, up to the canvas's rounding (mean absolute difference under one grey level)."""
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 1.0


def fit_max_side(img: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def write_editor_png(img: np.ndarray, path) -> str:
    """Lossless (the next event must give these pixels back) but fast: PNG at compression level 1."""
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return str(path)


def editor(label: str, height: int = 520, elem_id: str = "editor") -> gr.ImageEditor:
    """The painting canvas: one fixed red brush, no uploads or transforms (the mask must align)."""
    return gr.ImageEditor(
        label=label, type="numpy", image_mode="RGBA", sources=(), layers=False, transforms=(), format="png",
        elem_id=elem_id, height=height, brush=gr.Brush(colors=[BRUSH], color_mode="fixed", default_size=12),
        eraser=gr.Eraser(default_size=12))
