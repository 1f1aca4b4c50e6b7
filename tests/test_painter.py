"""The page's canvas sends strokes as points (issue 35): the server's mask is the brush's footprint (checked
against the distance of every pixel to the stroke's path), strokes already applied are skipped, a malformed
stroke gets one sentence, and the image goes back as a JPEG close to its pixels. Through the app:
test_app.py (/stroke makes the same edit as /edit with its mask); in the browser: test_browser_events.py."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ic_zoo.errors import InputError
from ic_zoo.app import painter


def _distance_to_path(shape, pts) -> np.ndarray:
    """Every pixel centre's distance to the polyline through ``pts`` (x, y), the independent reference (pixel i
    spans i..i+1, its centre at i + 0.5)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    d = np.full(shape, np.inf)
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    if len(p) == 1:
        return np.hypot(xx - p[0, 0], yy - p[0, 1])
    for (x0, y0), (x1, y1) in zip(p[:-1], p[1:]):
        dx, dy = x1 - x0, y1 - y0
        L = dx * dx + dy * dy
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / L, 0, 1) if L else np.zeros(shape)
        d = np.minimum(d, np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy)))
    return d


@pytest.mark.parametrize("pts,r", [([20.0, 30.0, 90.0, 34.5, 120.0, 80.0], 6.0),
                                   ([50.5, 50.0], 9.0),
                                   ([10.0, 10.0, 10.0, 60.0, 70.0, 60.0, 70.0, 12.0], 2.5)])
def test_the_mask_is_the_brush_footprint(pts, r):
    shape = (100, 140)
    m = painter.stroke_mask([{"id": 1, "r": r, "pts": np.asarray(pts).reshape(-1, 2)}], shape, shape)
    # exactly the pixels whose centre lies within the brush's radius of the path (the page draws a line of
    # width 2r with round caps and joins), by a brute-force reference over the whole image
    assert (m == (_distance_to_path(shape, pts) <= r)).all()


def test_a_mask_painted_at_another_size_is_resized():
    m = painter.stroke_mask([{"id": 1, "r": 5.0, "pts": np.array([[10.0, 10.0], [40.0, 10.0]])}], (50, 50), (100, 100))
    assert m.shape == (100, 100) and m[20, 40] and not m[80, 80]


def test_parse_keeps_the_strokes_not_acknowledged():
    v = {"v": "3", "w": 64, "h": 48, "strokes": [{"id": 1, "r": 4, "pts": [1, 2, 3, 4]},
                                                 {"id": 2, "r": 4.5, "pts": [5, 6]}]}
    strokes, painted = painter.parse(v, ack=0)
    assert [s["id"] for s in strokes] == [1, 2] and painted == (48, 64)
    assert strokes[1]["pts"].tolist() == [[5.0, 6.0]]
    strokes, _ = painter.parse(v, ack=1)
    assert [s["id"] for s in strokes] == [2]
    assert painter.parse(v, ack=2)[0] == []
    assert painter.parse('{"w": 10, "h": 10, "strokes": []}', ack=0) == ([], (10, 10))


BAD = [
    ("a list", [1, 2]), ("not JSON", "{strokes"), ("strokes not a list", {"w": 5, "h": 5, "strokes": 3}),
    ("no size", {"strokes": [{"id": 1, "r": 3, "pts": [1, 1]}]}),
    ("a size of 0", {"w": 0, "h": 5, "strokes": []}), ("a fractional size", {"w": 5.5, "h": 5, "strokes": []}),
    ("a stroke not an object", {"w": 5, "h": 5, "strokes": [7]}),
    ("an id of 0", {"w": 5, "h": 5, "strokes": [{"id": 0, "r": 3, "pts": [1, 1]}]}),
    ("a boolean id", {"w": 5, "h": 5, "strokes": [{"id": True, "r": 3, "pts": [1, 1]}]}),
    ("no radius", {"w": 5, "h": 5, "strokes": [{"id": 1, "pts": [1, 1]}]}),
    ("a huge radius", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": 1e6, "pts": [1, 1]}]}),
    ("a NaN radius", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": float("nan"), "pts": [1, 1]}]}),
    ("an odd point list", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": 3, "pts": [1, 1, 2]}]}),
    ("no points", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": 3, "pts": []}]}),
    ("a text point", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": 3, "pts": [1, "x"]}]}),
    ("an infinite point", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": 3, "pts": [1, float("inf")]}]}),
    ("too many points", {"w": 5, "h": 5, "strokes": [{"id": 1, "r": 3, "pts": [1.0] * (2 * painter.MAX_POINTS + 2)}]}),
    ("too many strokes", {"w": 5, "h": 5, "strokes": [{"id": i + 1, "r": 3, "pts": [1, 1]}
                                                      for i in range(painter.MAX_STROKES + 1)]}),
]


@pytest.mark.parametrize("what,value", BAD, ids=[b[0] for b in BAD])
def test_a_malformed_stroke_gets_one_sentence(what, value):
    with pytest.raises(InputError) as e:
        painter.parse(value, ack=0)
    msg = str(e.value)
    assert msg.endswith(".") and "\n" not in msg and len(msg) < 200, msg


def test_the_image_is_sent_as_a_jpeg_close_to_its_pixels():
    rng = np.random.default_rng(0)
    img = (np.clip(rng.normal(128, 30, (60, 80, 3)), 0, 255)).astype(np.uint8)
    v = painter.value(img, "7", 3)
    assert v["v"] == "7" and v["ack"] == 3 and (v["w"], v["h"]) == (80, 60)
    assert v["src"].startswith("data:image/jpeg;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(v["src"].split(",", 1)[1]))).convert("RGB"))
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 6
    assert painter.value(None, "8", 3)["src"] is None
