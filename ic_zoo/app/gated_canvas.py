"""The gated canvas (``gr.ImageEditor`` whose every image passes the library's input gate) and the editor
values both apps read and write: the background as RGB, the painted mask, the PNG the canvas composes."""
from __future__ import annotations

import functools
import os

import gradio as gr
import numpy as np
from gradio.components.base import server

from .. import imageio
from ..errors import IcZooError
from . import gradio_internals

BRUSH = "#ff0000"
BRUSH_SIZE = 12  # the canvas's default brush, as the line under it and the page script say


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
    """Painted pixels: opaque brush-red pixels of any layer (the eraser leaves transparency). A layer of
    another size than the background is resized to fit, with a warning, as ``load_mask`` does."""
    if not value or value.get("background") is None:
        return None
    shape = np.asarray(value["background"]).shape[:2]
    m = np.zeros(shape, bool)
    for i, layer in enumerate(value.get("layers") or []):
        a = np.asarray(layer)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise gr.Error(f"Stroke layer {i + 1} is not a colour image ({a.shape}); reload the page and paint again.",
                           print_exception=False)
        if a.shape[2] == 4:
            painted = (a[..., 3] > 0) & (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
        else:
            painted = (a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100)
        if painted.shape != shape:
            gr.Warning(f"Stroke layer {i + 1} is {painted.shape[1]}x{painted.shape[0]} but the image is "
                       f"{shape[1]}x{shape[0]}; the stroke was resized to fit.")
            painted = imageio.resize_mask(painted, shape)
        m |= painted
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


#: Layers one editor event may carry. The app's canvas has one stroke layer (``layers=False``); a few
#: more are allowed for API clients that send strokes separately. More is refused before any is decoded.
MAX_LAYERS = 8


#: Edits whose images were uploaded but whose event has not arrived yet (per canvas, all users).
MAX_PENDING_EDITS = 64


#: What the canvas sends (it renders PNG); JPEG and WebP for API clients.
EDITOR_FORMATS = ("PNG", "JPEG", "WEBP")


# Gradio's component metaclass writes a ``.pyi`` stub beside the module of every component class it
# creates (for its own custom-component tooling): next to an installed package that is a write into
# site-packages, which fails on a read-only install. Canvas adds no events, so it needs no stub.
_no_stub = gradio_internals.no_component_stub


#: a canvas file this server does not have (uploaded to another replica, or before a restart)
UPLOAD_GONE = ("Your last change reached a server that stopped, or another one: reload the page to continue where "
               "you left off (in a study, everything you did is kept).")


with _no_stub():
    class Canvas(gr.ImageEditor):
        """``gr.ImageEditor`` whose every image (background, layers, composite) passes the library's input gate
        before it is decoded: the pixel limit read from the header, PNG / JPEG / WebP only, EXIF orientation,
        damaged or truncated files, at most ``MAX_LAYERS`` layers, and one sentence for each failure (Gradio's
        own conversion would decode anything Pillow opens, at any size, and answer with a generic error).
        The background arrives as RGB, layers as RGBA (``type="numpy"`` only). The composite is checked from
        its header and dropped: the app never uses it, so it is never decoded."""

        # class attributes, not constructor arguments: Gradio rebuilds a component from its constructor
        # arguments for each session it updates, and an __init__ of its own would hide ImageEditor's
        # arguments from the page's config. ``editor()`` makes a subclass per limit.
        max_pixels: int | None = None  # default: the library's limit
        max_layers: int = MAX_LAYERS

        def get_block_name(self) -> str:  # the frontend's ImageEditor
            return "imageeditor"

        def get_block_class(self) -> str:
            return "imageeditor"

        def _gate(self, file, what: str, decode: bool = True):
            from PIL import Image

            if file is None:
                return None
            src = file.path if hasattr(file, "path") else bytes(file)
            if isinstance(src, str) and not os.path.isfile(src):
                # uploaded to another replica (the proxy sent the upload to a replica that was stopping and
                # the event to another), or to this one before a restart: nothing here to read
                raise gr.Error(UPLOAD_GONE, print_exception=False)
            limit = self.max_pixels if self.max_pixels is not None else imageio.max_pixels_default()
            try:
                with imageio.opened(src, limit, name=what, formats=EDITOR_FORMATS, decode=decode) as (im, _):
                    if not decode:
                        return None
                    if what == "the image":
                        return np.asarray(imageio.to_rgb_pil(im), dtype=np.uint8)
                    try:
                        from PIL import ImageOps

                        im = ImageOps.exif_transpose(im)
                    except Exception:  # noqa: BLE001 - malformed EXIF must not lose the stroke
                        pass
                    return np.asarray(im.convert("RGBA") if im.mode != "RGBA" else im, dtype=np.uint8)
            except IcZooError as exc:
                raise gr.Error(str(exc)[:1].upper() + str(exc)[1:], print_exception=False) from None
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise gr.Error(f"{what[:1].upper() + what[1:]} cannot be decoded ({exc}); reload the page and try "
                               "again.", print_exception=False) from None

        @server
        def accept_blobs(self, data):
            """The canvas uploads each image of an edit here before the event: a layer index past the cap is
            refused (Gradio would grow a list to any index sent), and at most ``MAX_PENDING_EDITS`` uploads
            wait for their event (one that never comes, from a script, is dropped oldest first)."""
            kind, index = data.data.get("type"), data.data.get("index")
            if kind == "layer" and index not in (None, "", "null"):
                try:
                    i = int(index)
                except (TypeError, ValueError):
                    i = -1
                if not 0 <= i < self.max_layers:
                    raise gr.Error(f"One edit can carry at most {self.max_layers} stroke layers (layer index "
                                   f"{str(index)[:20]} refused).", print_exception=False)
            pending = gradio_internals.pending_uploads(self)
            while len(pending) >= MAX_PENDING_EDITS and data.data.get("id") not in pending:
                pending.pop(next(iter(pending)))
            return super().accept_blobs(data)

        def preprocess(self, payload):
            if payload is None:
                return None
            pending = gradio_internals.pending_uploads(self)
            blobs = pending.pop(payload.id, None) if payload.id is not None else None
            data = blobs if blobs is not None else (payload if payload.id is None else None)
            if data is None:
                raise gr.Error("The images of this edit did not arrive (the server was busy, or they were sent to "
                               "another server); please paint the stroke again.", print_exception=False)
            layers = list(data.layers or [])
            if len(layers) > self.max_layers:
                raise gr.Error(f"One edit can carry at most {self.max_layers} stroke layers, not {len(layers)}; "
                               "merge the strokes into one layer.", print_exception=False)
            bg = self._gate(data.background, "the image")
            out = [self._gate(f, f"stroke layer {i + 1}") for i, f in enumerate(layers)]
            self._gate(data.composite, "the composite", decode=False)
            return {"background": bg, "layers": [a for a in out if a is not None], "composite": None}


def editor(label: str, height: int | str = 520, elem_id: str = "editor", max_pixels: int | None = None,
           visible: bool = True) -> Canvas:
    """The painting canvas: one fixed red brush, no eraser, no uploads or transforms (the mask must align); every
    image it sends passes the input gate (see ``Canvas``), ``max_pixels`` each (default: the library's)."""
    return _canvas_class(max_pixels)(
        label=label, type="numpy", image_mode="RGBA", sources=(), layers=False, transforms=(), format="png",
        elem_id=elem_id, elem_classes=["ic-canvas"], height=height, visible=visible,
        brush=gr.Brush(colors=[BRUSH], color_mode="fixed", default_size=BRUSH_SIZE),
        eraser=gr.Eraser(default_size=BRUSH_SIZE))  # (its button is hidden: PAGE_CSS)


@functools.lru_cache(maxsize=None)
def _canvas_class(max_pixels: int | None) -> type:
    if max_pixels is None:
        return Canvas
    with _no_stub():
        return type("Canvas", (Canvas,), {"max_pixels": int(max_pixels), "__module__": __name__})


def keys_help(redo: bool = True) -> str:
    """The line under the canvas: the brush size (kept current by the page script) and the keys."""
    return (f"Brush size: <b class='ic-brush'>{BRUSH_SIZE}</b> px · <kbd>[</kbd> / <kbd>]</kbd> smaller / larger · "
            "<kbd>Ctrl</kbd>+<kbd>Z</kbd> undo" + (" · <kbd>Shift</kbd>+<kbd>Ctrl</kbd>+<kbd>Z</kbd> redo"
                                                  if redo else "") + " (<kbd>⌘</kbd> on a Mac)")
