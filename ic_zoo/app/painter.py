"""The painting canvas that sends the stroke, not the canvas (issue 35).

``gr.ImageEditor`` exports the background, its layer and a composite as PNGs after every stroke and uploads
them before the event (about 0.9 s of a 1.3 s stroke in headless Chromium). Here the page draws the brush
itself, over the image, and sends only the stroke: its points in image pixels and the brush radius (a few
hundred bytes). The server rasterizes them (``stroke_mask``) exactly as the brush drew them (round caps and
joins, the radius in image pixels) and answers with the new image as a data URL (JPEG: about 40 KB for a
451 x 300 photo, no second request) in the same answer as the tables and the maps.

Strokes are never lost to a busy server: the page keeps every stroke it sent until an answer acknowledges it
(``ack``, the last stroke id the server applied) and sends all unacknowledged ones with the next event, so a
stroke painted while another is processed joins the next edit (as the editor's layer did) and the server
applies each id once. The ink of a stroke stays on the canvas until its answer arrives, and goes when an
error's toast shows (nothing the server did not apply stays drawn). While strokes wait for their answer the
canvas shows the busy sign itself (class ``ic-busy``), from the moment the stroke is sent (the page's
tracker-based sign, PAGE_CSS, only once the server has started the event).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import gradio as gr
import numpy as np

from .. import imageio
from ..errors import InputError
from .gated_canvas import BRUSH_SIZE  # the brush's radius in image pixels

#: at most this many strokes in one event, points per stroke, and brush radius (image pixels)
MAX_STROKES = 64
MAX_POINTS = 5_000
MAX_RADIUS = 200.0
JPEG_QUALITY = 92


#: the page code and styles, as files (``ic_zoo/app/static``)
STATIC = Path(__file__).with_name("static")
HTML = (STATIC / "painter.html").read_text()

CSS = (STATIC / "painter.css").read_text()

JS = (STATIC / "painter.js").read_text()


def painter(label: str, height: int | str = 440, elem_id: str = "editor") -> gr.HTML:
    """The canvas: the image, a red round brush of ``BRUSH_SIZE`` (``[`` / ``]``, or its slider), strokes sent
    as points with the ``submit`` event (see the module's text). ``height`` is the whole block's, its brush
    bar included."""
    h = f"{height}px" if isinstance(height, int) else str(height)
    js = (JS.replace("__SIZE__", str(BRUSH_SIZE)).replace("__MAXPTS__", str(MAX_POINTS))
          .replace("__MAXSTROKES__", str(MAX_STROKES)))
    return gr.HTML(value=None, label=label, show_label=False, elem_id=elem_id, elem_classes=["ic-paint-block"],
                   html_template=HTML.replace("__SIZE__", str(BRUSH_SIZE)),
                   css_template=CSS + f"\n.ic-paint-stage {{ height: calc({h} - 30px); }}", js_on_load=js,
                   apply_default_css=False, container=True)


def image_url(img: np.ndarray) -> str:
    """An image for the page's ``<img>``: JPEG (no chroma subsampling) as a data URL, in the answer itself."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise RuntimeError("the image could not be encoded for the page")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def value(img: np.ndarray | None, version: str, ack: int) -> dict:
    """What the canvas is sent: the image shown, its version, and the last stroke applied."""
    if img is None:
        return {"src": None, "v": version, "ack": ack}
    h, w = img.shape[:2]
    return {"src": image_url(img), "v": version, "w": int(w), "h": int(h), "ack": int(ack)}


def _number(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        raise InputError(f"{what} must be a number, not {json.dumps(x)[:40]}.")
    return float(x)


def parse(val, ack: int) -> tuple[list[dict], tuple[int, int]]:
    """The strokes of a canvas value not applied yet (id > ``ack``), checked, and the size they were
    painted at. Every malformed value gets one sentence (``InputError``) before anything changes."""
    if isinstance(val, str):
        try:
            val = json.loads(val)
        except ValueError:
            raise InputError("The stroke must be a JSON object with 'strokes' (lists of x, y points in image "
                             "pixels), 'w' and 'h'.") from None
    if not isinstance(val, dict):
        raise InputError("The stroke must be an object with 'strokes' (lists of x, y points in image pixels), "
                         "'w' and 'h'.")
    strokes = val.get("strokes") or []
    if not isinstance(strokes, list):
        raise InputError("'strokes' must be a list of strokes, each {'id': n, 'r': radius, 'pts': [x0, y0, x1, "
                         "y1, ...]}.")
    if len(strokes) > MAX_STROKES:
        raise InputError(f"One event can carry at most {MAX_STROKES} strokes, not {len(strokes)}.")
    w, h = _number(val.get("w"), "'w' (the image's width)"), _number(val.get("h"), "'h' (the image's height)")
    if not (1 <= w <= 100_000 and 1 <= h <= 100_000) or w != int(w) or h != int(h):
        raise InputError(f"'w' and 'h' must be the image's size in pixels, not {w:g} x {h:g}.")
    out = []
    for i, s in enumerate(strokes):
        if not isinstance(s, dict):
            raise InputError(f"Stroke {i + 1} must be an object with 'id', 'r' and 'pts'.")
        sid = s.get("id", i + 1 + ack)
        if isinstance(sid, bool) or not isinstance(sid, int) or sid < 1:
            raise InputError(f"Stroke {i + 1}'s 'id' must be a positive whole number.")
        r = _number(s.get("r"), f"Stroke {i + 1}'s radius 'r'")
        if not 0.5 <= r <= MAX_RADIUS:
            raise InputError(f"Stroke {i + 1}'s radius must be between 0.5 and {MAX_RADIUS:g} pixels, not {r:g}.")
        pts = s.get("pts")
        if not isinstance(pts, list) or not pts or len(pts) % 2 or len(pts) > 2 * MAX_POINTS:
            raise InputError(f"Stroke {i + 1}'s 'pts' must be a flat list of x, y pairs (1 to {MAX_POINTS} points).")
        xy = np.array([_number(p, f"A point of stroke {i + 1}") for p in pts], np.float64).reshape(-1, 2)
        if sid > ack:
            out.append({"id": sid, "r": r, "pts": xy})
    return out, (int(h), int(w))


def stroke_mask(strokes: list[dict], painted: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The pixels the brush covered, as the page drew them: those whose centre lies within r of a stroke's path
    (a polyline of width 2r with round caps and joins; a lone point a disc), at the size it was painted at,
    resized to ``shape`` if that differs. Points are continuous image coordinates (pixel i spans i..i+1)."""
    h, w = painted
    m = np.zeros((h, w), bool)
    for s in strokes:
        r, p = float(s["r"]), np.asarray(s["pts"], np.float64).reshape(-1, 2)
        segs = np.concatenate([p[:-1], p[1:]], 1) if len(p) > 1 else np.concatenate([p, p], 1)
        for x0, y0, x1, y1 in segs:  # each segment's window: the pixels whose centre lies within r of it
            c0, c1 = max(0, int(np.floor(min(x0, x1) - r))), min(w, int(np.ceil(max(x0, x1) + r)) + 1)
            r0, r1 = max(0, int(np.floor(min(y0, y1) - r))), min(h, int(np.ceil(max(y0, y1) + r)) + 1)
            if c0 >= c1 or r0 >= r1:
                continue
            yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64) + 0.5
            dx, dy = x1 - x0, y1 - y0
            n = dx * dx + dy * dy
            t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / n, 0.0, 1.0) if n > 0 else 0.0
            m[r0:r1, c0:c1] |= (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= r * r
    mask = m
    if mask.shape != tuple(shape):
        mask = imageio.resize_mask(mask, tuple(shape))
    return mask
