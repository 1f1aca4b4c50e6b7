"""Flower2D: synthetic flowers whose class is the colour of specific parts, with exact part maps.

A 2-D analogue of an8Flower (Oramas et al., ICLR 2019). Everything is a pure function of
(seed, split, index): ``sample_params`` draws a plain, JSON-serialisable dict; ``render`` draws it at
any size, optionally with parts removed or recoloured (exact interventions, counterfactuals with a
known label). Parts are rasterised without anti-aliasing, so the part map is the exact visible label
of every pixel.

Part ids (the values in part maps): 0 background, 1 stem, 2 leaf, 3 petal, 4 centre.

Variants:
  single-6c        class = petal colour (6 hues); discriminative part: petals
  double-12c       class = petal colour (4) x centre colour (3); discriminative: petals and centre
  double-12c-hard  as double-12c, but stem and leaves take colours from the class palette, so the
                   presence of a colour does not decide the class: its place on the flower does
"""
from __future__ import annotations

import colorsys
import copy
from typing import Iterable

import numpy as np

PARTS = {"background": 0, "stem": 1, "leaf": 2, "petal": 3, "centre": 4}
PART_NAMES = {v: k for k, v in PARTS.items()}
SPLITS = {"train": 0, "val": 1, "test": 2}

# hue palettes (degrees), spread for separability
H6 = {"red": 0, "orange": 30, "yellow": 55, "cyan": 180, "blue": 225, "magenta": 300}
P4 = {"red": 0, "yellow": 55, "blue": 225, "magenta": 300}
C3 = {"orange": 30, "green": 150, "violet": 270}

#: classifier keys are f"{MODEL_PREFIX[variant]}/{arch}", e.g. "flower2d/squeezenet" for double-12c
MODEL_PREFIX = {"double-12c": "flower2d", "single-6c": "flower2d-6c", "double-12c-hard": "flower2d-hard"}

VARIANTS = {
    "single-6c": {"disc": ("petal",), "hard": False},
    "double-12c": {"disc": ("petal", "centre"), "hard": False},
    "double-12c-hard": {"disc": ("petal", "centre"), "hard": True},
}


def variant_info(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown Flower2D variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def class_names(variant: str) -> list[str]:
    variant_info(variant)
    if variant == "single-6c":
        return [f"{p} petals" for p in H6]
    return [f"{p} petals, {c} centre" for p in P4 for c in C3]


def class_hues(variant: str, label: int) -> dict[str, float]:
    """Hue (degrees) of each discriminative part for class ``label``."""
    if variant == "single-6c":
        return {"petal": float(list(H6.values())[label])}
    p, c = divmod(label, len(C3))
    return {"petal": float(list(P4.values())[p]), "centre": float(list(C3.values())[c])}


def num_classes(variant: str) -> int:
    return len(class_names(variant))


def _hsv(h: float, s: float, v: float) -> list[int]:
    r, g, b = colorsys.hsv_to_rgb((h % 360) / 360.0, s, v)
    return [int(round(255 * r)), int(round(255 * g)), int(round(255 * b))]


def _class_colour(rng, hue: float) -> dict:
    return {"h": float(hue + rng.uniform(-6, 6)), "s": float(rng.uniform(0.75, 0.95)), "v": float(rng.uniform(0.8, 0.95))}


def sample_params(variant: str, seed: int, split: str | int, index: int) -> dict:
    """Everything needed to draw sample ``index`` of ``split``: a plain dict (save it as JSON)."""
    info = variant_info(variant)
    split_id = SPLITS[split] if isinstance(split, str) else int(split)
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    C = num_classes(variant)
    label = int(index) % C
    hues = class_hues(variant, label)
    colours: dict[str, dict] = {}
    for part, hue in hues.items():
        colours[part] = _class_colour(rng, hue)
    if info["hard"]:
        # nuisance parts take colours from the class palette (any class's hues)
        palette = list(P4.values()) + list(C3.values())
        for part in ("stem", "leaf"):
            colours[part] = _class_colour(rng, palette[int(rng.integers(len(palette)))])
    else:
        colours["stem"] = {"h": float(100 + rng.uniform(-10, 10)), "s": float(rng.uniform(0.35, 0.55)),
                           "v": float(rng.uniform(0.35, 0.55))}
        colours["leaf"] = {"h": float(105 + rng.uniform(-10, 10)), "s": float(rng.uniform(0.4, 0.6)),
                           "v": float(rng.uniform(0.4, 0.6))}
    if "centre" not in colours:  # single-6c: a brown, non-discriminative centre
        colours["centre"] = {"h": float(30 + rng.uniform(-10, 10)), "s": float(rng.uniform(0.4, 0.6)),
                             "v": float(rng.uniform(0.3, 0.45))}
    bg = [{"h": float(rng.uniform(0, 360)), "s": float(rng.uniform(0.05, 0.2)), "v": float(rng.uniform(0.6, 0.95))}
          for _ in range(2)]
    cx, cy = float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.28, 0.5))
    n_petals = int(rng.integers(5, 9))
    petal_len = float(rng.uniform(0.13, 0.2))
    petal_w = float(rng.uniform(0.045, 0.075))
    x0 = float(cx + rng.uniform(-0.12, 0.12))
    bend = float(rng.uniform(-0.1, 0.1))
    leaves = []
    for _ in range(int(rng.integers(1, 3))):
        length = float(rng.uniform(0.08, 0.13))
        leaves.append({"t": float(rng.uniform(0.2, 0.6)), "side": int(rng.choice([-1, 1])),
                       "angle": float(rng.uniform(15, 50)), "length": length,
                       "width": float(length * rng.uniform(0.35, 0.5))})
    return {
        "variant": variant, "seed": int(seed), "split": split_id, "index": int(index), "label": label,
        "disc_parts": list(info["disc"]),
        "colours": colours, "background": bg,
        "centre": {"x": cx, "y": cy, "r": float(rng.uniform(0.045, 0.075))},
        "petals": {"n": n_petals, "length": petal_len, "width": petal_w, "rotation": float(rng.uniform(0, 360))},
        "stem": {"x0": x0, "bend": bend, "thickness": float(rng.uniform(0.025, 0.04))},
        "leaves": leaves,
        "noise": {"seed": int(rng.integers(2**31)), "sigma": 4.0},
    }


def _stem_points(p: dict, n: int = 40) -> np.ndarray:
    c, st = p["centre"], p["stem"]
    a = np.array([st["x0"], 1.02])
    b = np.array([c["x"], c["y"]])
    ctrl = (a + b) / 2 + np.array([st["bend"], 0.0])
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t ** 2 * b


def _fix(v: float, size: int) -> int:
    return int(round(v * size * 16))  # cv2 drawing with shift=4 (1/16 px precision)


def render(params: dict, size: int = 64, remove: Iterable[str] = (), recolor: dict | None = None,
           noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``params`` at ``size`` x ``size``: (RGB uint8 image, uint8 part map).

    ``remove`` omits parts (what was behind them is drawn instead); ``recolor`` maps part names to
    replacement colours, either RGB triples or {"h", "s", "v"} dicts. The pixel noise depends only on
    the sample, so an intervention changes only the pixels it touches.
    """
    import cv2

    remove = set(remove)
    unknown = remove - set(PARTS)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; parts are {', '.join(PARTS)}")
    S = int(size)
    cols = {k: _hsv(v["h"], v["s"], v["v"]) for k, v in params["colours"].items()}
    for k, v in (recolor or {}).items():
        cols[k] = _hsv(v["h"], v["s"], v["v"]) if isinstance(v, dict) else [int(x) for x in v]
    top, bottom = (np.array(_hsv(b["h"], b["s"], b["v"]), np.float32) for b in params["background"])
    ramp = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (S, S, 3)).astype(np.float32).copy()
    parts = np.zeros((S, S), np.uint8)
    tmp = np.zeros((S, S), np.uint8)

    def paint(name: str, draw) -> None:
        if name in remove:
            return
        tmp[:] = 0
        draw(tmp)
        sel = tmp > 0
        img[sel] = cols[name]
        parts[sel] = PARTS[name]

    pts = _stem_points(params)
    st = params["stem"]
    thick = max(1, int(round(st["thickness"] * S)))
    paint("stem", lambda m: cv2.polylines(m, [np.array([[_fix(x, S), _fix(y, S)] for x, y in pts], np.int32)],
                                          False, 1, thick, cv2.LINE_8, 4))

    def draw_leaves(m):
        for lf in params["leaves"]:
            i = int(lf["t"] * (len(pts) - 1))
            ax, ay = pts[i]
            ang = np.deg2rad(lf["angle"])  # from vertical, towards `side`
            dx, dy = lf["side"] * np.sin(ang), -np.cos(ang)
            cxl, cyl = ax + dx * lf["length"] / 2, ay + dy * lf["length"] / 2
            deg = float(np.rad2deg(np.arctan2(dy, dx)))
            cv2.ellipse(m, (_fix(cxl, S), _fix(cyl, S)), (_fix(lf["length"] / 2, S), _fix(lf["width"] / 2, S)),
                        deg, 0, 360, 1, -1, cv2.LINE_8, 4)

    paint("leaf", draw_leaves)
    c, pt = params["centre"], params["petals"]

    def draw_petals(m):
        for i in range(pt["n"]):
            phi = np.deg2rad(pt["rotation"] + 360.0 * i / pt["n"])
            px, py = c["x"] + 0.55 * pt["length"] * np.cos(phi), c["y"] + 0.55 * pt["length"] * np.sin(phi)
            cv2.ellipse(m, (_fix(px, S), _fix(py, S)), (_fix(pt["length"] / 2, S), _fix(pt["width"] / 2, S)),
                        float(np.rad2deg(phi)), 0, 360, 1, -1, cv2.LINE_8, 4)

    paint("petal", draw_petals)
    paint("centre", lambda m: cv2.circle(m, (_fix(c["x"], S), _fix(c["y"], S)), _fix(c["r"], S), 1, -1,
                                         cv2.LINE_8, 4))
    if noise:
        nz = np.random.default_rng(params["noise"]["seed"]).normal(0, params["noise"]["sigma"], (S, S, 3))
        img += nz.astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), parts


def disc_mask(params: dict, parts: np.ndarray) -> np.ndarray:
    """The discriminative region: pixels of the parts that define the class."""
    return np.isin(parts, [PARTS[p] for p in params["disc_parts"]])


def part_mask(parts: np.ndarray, name: str) -> np.ndarray:
    return parts == PARTS[name]


def counterfactual(params: dict, target: int) -> dict:
    """``recolor`` argument that turns sample ``params`` into class ``target``: its discriminative parts
    take the target class's hues, keeping their own jitter, saturation and value."""
    variant = params["variant"]
    now = class_hues(variant, params["label"])
    new = class_hues(variant, target)
    out = {}
    for part in params["disc_parts"]:
        col = copy.deepcopy(params["colours"][part])
        col["h"] = float(col["h"] - now[part] + new[part])
        out[part] = col
    return out


def dataset(variant: str, split: str | int, n: int, size: int = 64, seed: int = 0, start: int = 0,
            render_sizes: tuple[int, ...] | None = None, with_parts: bool = True):
    """In-memory samples ``start .. start+n``: images (n, S, S, 3), labels (n,), part maps (n, S, S).

    With ``render_sizes``, each sample is drawn at one of those sizes (picked from its own RNG) and
    downsampled to ``size`` with area averaging, as the classifiers' preprocessing does for larger
    images: models trained this way do not care at which size a flower was drawn."""
    import cv2

    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n,), np.int64)
    parts = np.empty((n, size, size), np.uint8) if with_parts else None
    for j in range(n):
        p = sample_params(variant, seed, split, start + j)
        rs = size
        if render_sizes:
            rs = int(render_sizes[int(np.random.default_rng([seed, 99, start + j]).integers(len(render_sizes)))])
        img, pm = render(p, rs)
        if rs != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            pm = cv2.resize(pm, (size, size), interpolation=cv2.INTER_NEAREST)
        images[j] = img
        labels[j] = p["label"]
        if with_parts:
            parts[j] = pm
    return images, labels, parts
