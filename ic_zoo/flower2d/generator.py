"""Flower2D: synthetic flowers whose class is the colour of specific parts, with exact part maps.

A 2-D analogue of an8Flower (Oramas et al., ICLR 2019). Everything is a pure function of
(seed, split, index): ``sample_params`` draws a plain, JSON-serialisable dict; ``render`` draws it at
any size, optionally with parts removed or recoloured (exact interventions, counterfactuals with a
known label). Parts are rasterised without anti-aliasing, so the part map is the exact visible label
of every pixel.

Part ids (the values in part maps): 0 background, 1 stem, 2 leaf, 3 petal, 4 centre, 5 pot, 6 object (the
background objects of parts-5c).

Variants:
  single-6c        class = petal colour (6 hues); discriminative part: petals
  double-12c       class = petal colour (4) x centre colour (3); discriminative: petals and centre
  double-12c-hard  as double-12c, but stem and leaves take colours from the class palette, so the
                   presence of a colour does not decide the class: its place on the flower does
  parts-5c         FunnyBirds' structure: five part types (petal, centre, leaf, stem, pot), each drawn in one
                   of two or three colours; a class is a combination of all five, and the ten classes are
                   chosen so that each has one minimal sufficient part set (the fewest parts whose colours
                   tell it from every other class), which differs between classes (one to three parts);
                   two or three background objects in class colours, never touching the flower. Models are
                   trained with the parts outside the class's set (and the objects) removed at random, so
                   that removing them is in-distribution and the set alone decides the class
"""
from __future__ import annotations

import colorsys
import copy
from typing import Iterable

import numpy as np

PARTS = {"background": 0, "stem": 1, "leaf": 2, "petal": 3, "centre": 4, "pot": 5, "object": 6}
PART_NAMES = {v: k for k, v in PARTS.items()}
SPLITS = {"train": 0, "val": 1, "test": 2}

# hue palettes (degrees), spread for separability
H6 = {"red": 0, "orange": 30, "yellow": 55, "cyan": 180, "blue": 225, "magenta": 300}
P4 = {"red": 0, "yellow": 55, "blue": 225, "magenta": 300}
C3 = {"orange": 30, "green": 150, "violet": 270}

#: classifier keys are f"{MODEL_PREFIX[variant]}/{arch}", e.g. "flower2d/squeezenet" for double-12c
MODEL_PREFIX = {"double-12c": "flower2d", "single-6c": "flower2d-6c", "double-12c-hard": "flower2d-hard",
                "parts-5c": "flower2d-5c"}

VARIANTS = {
    "single-6c": {"disc": ("petal",), "hard": False},
    "double-12c": {"disc": ("petal", "centre"), "hard": False},
    "double-12c-hard": {"disc": ("petal", "centre"), "hard": True},
    "parts-5c": {"disc": None, "hard": False},  # per class: minimal_set(label)
}

# -- parts-5c -----------------------------------------------------------------------------------------------
#: the five part types in the order of a class's code, and each one's colours: (name, hue, saturation, value)
P5_PARTS = ("petal", "centre", "leaf", "stem", "pot")
P5_COLOURS = {
    "petal": (("red", 0, 0.85, 0.9), ("yellow", 55, 0.85, 0.9), ("blue", 225, 0.8, 0.9)),
    "centre": (("orange", 30, 0.85, 0.95), ("cyan", 180, 0.8, 0.85), ("violet", 270, 0.7, 0.85)),
    "leaf": (("green", 120, 0.65, 0.6), ("magenta", 300, 0.7, 0.75)),
    "stem": (("green", 100, 0.6, 0.5), ("orange", 30, 0.85, 0.85)),
    "pot": (("terracotta", 15, 0.7, 0.65), ("blue", 225, 0.6, 0.7)),
}
#: the classes, each a colour index per part of P5_PARTS; chosen (a search over the 72 combinations) so that
#: every class has exactly one minimal sufficient set, no two classes the same one, each part in two or more
P5_CLASSES = ((1, 1, 0, 0, 0), (0, 1, 1, 1, 0), (1, 1, 0, 0, 1), (1, 1, 1, 1, 0), (0, 1, 0, 0, 0),
              (0, 0, 0, 0, 0), (2, 0, 0, 0, 0), (1, 1, 1, 0, 0), (0, 2, 0, 1, 0), (0, 1, 0, 1, 0))
#: the background objects: how many, their shapes and their gap to the flower (in image widths)
P5_OBJECTS, P5_SHAPES, P5_GAP = (2, 3), ("circle", "square", "triangle"), 0.03
#: training: each part outside the class's set, and the objects, is left out with this probability
P5_DROP = 0.4
REMOVABLE = {"parts-5c": ("stem", "leaf", "petal", "centre", "pot", "object")}


def removable(variant: str) -> tuple[str, ...]:
    """The items a sample of ``variant`` can be drawn without (the part-level protocol's items)."""
    return REMOVABLE.get(variant, ("stem", "leaf", "petal", "centre"))


def _sufficient(label: int, parts) -> bool:
    code = P5_CLASSES[label]
    idx = [P5_PARTS.index(p) for p in parts]
    return all(any(code[i] != other[i] for i in idx) for k, other in enumerate(P5_CLASSES) if k != label)


def minimal_sets(label: int) -> list[tuple[str, ...]]:
    """The minimal sufficient part sets of parts-5c class ``label``: the smallest sets of parts whose colours
    tell it from every other class (none of them contains another)."""
    import itertools

    found: list[tuple[str, ...]] = []
    for r in range(1, len(P5_PARTS) + 1):
        for s in itertools.combinations(P5_PARTS, r):
            if not any(set(f) <= set(s) for f in found) and _sufficient(label, s):
                found.append(s)
    return found


def disc_parts(variant: str, label: int) -> tuple[str, ...]:
    """The parts that define class ``label``: the variant's discriminative parts, or parts-5c's minimal
    sufficient set (one per class, by construction)."""
    info = variant_info(variant)
    return info["disc"] if info["disc"] is not None else minimal_sets(label)[0]


def variant_info(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown Flower2D variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def class_names(variant: str) -> list[str]:
    variant_info(variant)
    if variant == "single-6c":
        return [f"{p} petals" for p in H6]
    if variant == "parts-5c":
        plural = {"petal": "petals", "leaf": "leaves"}
        return [", ".join(f"{P5_COLOURS[part][i][0]} {plural.get(part, part)}" for part, i in zip(P5_PARTS, code))
                for code in P5_CLASSES]
    return [f"{p} petals, {c} centre" for p in P4 for c in C3]


def class_hues(variant: str, label: int) -> dict[str, float]:
    """Hue (degrees) of each discriminative part for class ``label`` (every part on parts-5c)."""
    if variant == "parts-5c":
        return {part: float(P5_COLOURS[part][i][1]) for part, i in zip(P5_PARTS, P5_CLASSES[label])}
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
    if variant == "parts-5c":
        return _sample_parts5(rng, int(seed), split_id, int(index))
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
    bg = _background(rng)
    cx, cy = float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.28, 0.5))
    n_petals = int(rng.integers(5, 9))
    petal_len = float(rng.uniform(0.13, 0.2))
    petal_w = float(rng.uniform(0.045, 0.075))
    x0 = float(cx + rng.uniform(-0.12, 0.12))
    bend = float(rng.uniform(-0.1, 0.1))
    leaves = _leaves(rng, (0.08, 0.13), (0.2, 0.6), (15, 50))
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


def _background(rng) -> list[dict]:
    """The two colours of the background's vertical ramp: pale, any hue."""
    return [{"h": float(rng.uniform(0, 360)), "s": float(rng.uniform(0.05, 0.2)), "v": float(rng.uniform(0.6, 0.95))}
            for _ in range(2)]


def _leaves(rng, length, t, angle) -> list[dict]:
    """One or two leaves: each its length, place along the stem (``t``), side and angle from the ranges."""
    leaves = []
    for _ in range(int(rng.integers(1, 3))):
        size = float(rng.uniform(*length))
        leaves.append({"t": float(rng.uniform(*t)), "side": int(rng.choice([-1, 1])),
                       "angle": float(rng.uniform(*angle)), "length": size,
                       "width": float(size * rng.uniform(0.35, 0.5))})
    return leaves


def _jittered(rng, option) -> dict:
    _, h, s, v = option
    return {"h": float(h + rng.uniform(-6, 6)), "s": float(np.clip(s + rng.uniform(-0.07, 0.07), 0, 1)),
            "v": float(np.clip(v + rng.uniform(-0.07, 0.07), 0, 1))}


def _sample_parts5(rng, seed: int, split_id: int, index: int) -> dict:
    """A parts-5c sample: the flower stands in a pot; the background objects are placed where they keep
    ``P5_GAP`` from the flower and from each other (rejection sampling at 128 px, from the sample's RNG)."""
    label = int(index) % len(P5_CLASSES)
    colours = {part: _jittered(rng, P5_COLOURS[part][i]) for part, i in zip(P5_PARTS, P5_CLASSES[label])}
    bg = _background(rng)
    cx, cy = float(rng.uniform(0.38, 0.62)), float(rng.uniform(0.2, 0.32))
    pot_top = float(rng.uniform(0.72, 0.78))
    half = float(rng.uniform(0.1, 0.13))
    pot = {"x": float(cx + rng.uniform(-0.06, 0.06)), "top": pot_top, "bottom": 0.95, "half_top": half,
           "half_bottom": float(half * rng.uniform(0.65, 0.8))}
    leaves = _leaves(rng, (0.09, 0.13), (0.25, 0.6), (20, 55))
    p = {
        "variant": "parts-5c", "seed": seed, "split": split_id, "index": index, "label": label,
        "disc_parts": list(disc_parts("parts-5c", label)),
        "colours": colours, "background": bg,
        "centre": {"x": cx, "y": cy, "r": float(rng.uniform(0.04, 0.055))},
        "petals": {"n": int(rng.integers(5, 9)), "length": float(rng.uniform(0.11, 0.15)),
                   "width": float(rng.uniform(0.04, 0.06)), "rotation": float(rng.uniform(0, 360))},
        "stem": {"x0": pot["x"], "y0": pot_top + 0.02, "bend": float(rng.uniform(-0.08, 0.08)),
                 "thickness": float(rng.uniform(0.025, 0.035))},
        "leaves": leaves, "pot": pot, "objects": [],
        "noise": {"seed": int(rng.integers(2**31)), "sigma": 4.0},
    }
    import cv2

    S, gap = 128, int(round(P5_GAP * 128))
    k = np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)
    taken = cv2.dilate((render(p, S, noise=False)[1] > 0).astype(np.uint8), k) > 0
    options = [o for part in P5_PARTS for o in P5_COLOURS[part]]
    for _ in range(int(rng.integers(P5_OBJECTS[0], P5_OBJECTS[1] + 1))):
        for _try in range(200):
            r = float(rng.uniform(0.04, 0.06))
            obj = {"shape": P5_SHAPES[int(rng.integers(len(P5_SHAPES)))], "x": float(rng.uniform(r + 0.02, 0.98 - r)),
                   "y": float(rng.uniform(r + 0.02, 0.98 - r)), "r": r, "angle": float(rng.uniform(0, 360)),
                   "colour": _jittered(rng, options[int(rng.integers(len(options)))])}
            m = np.zeros((S, S), np.uint8)
            _draw_object(m, obj, S)
            if not (taken & (m > 0)).any():
                p["objects"].append(obj)
                taken |= cv2.dilate(m, k) > 0
                break
    return p


def _draw_object(m: np.ndarray, obj: dict, S: int, value: int = 1) -> None:
    import cv2

    x, y, r = obj["x"], obj["y"], obj["r"]
    if obj["shape"] == "circle":
        cv2.circle(m, (_fix(x, S), _fix(y, S)), _fix(r, S), value, -1, cv2.LINE_8, 4)
        return
    n = 4 if obj["shape"] == "square" else 3
    a = np.deg2rad(obj["angle"]) + 2 * np.pi * np.arange(n) / n
    pts = np.stack([x + r * np.cos(a), y + r * np.sin(a)], 1)
    cv2.fillPoly(m, [np.array([[_fix(px, S), _fix(py, S)] for px, py in pts], np.int32)], value, cv2.LINE_8, 4)


def _stem_points(p: dict, n: int = 40) -> np.ndarray:
    c, st = p["centre"], p["stem"]
    a = np.array([st["x0"], st.get("y0", 1.02)])
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

    if "pot" in params:
        pot = params["pot"]

        def draw_pot(m):
            x, t, b = pot["x"], pot["top"], pot["bottom"]
            quad = [(x - pot["half_top"], t), (x + pot["half_top"], t), (x + pot["half_bottom"], b),
                    (x - pot["half_bottom"], b)]
            cv2.fillPoly(m, [np.array([[_fix(px, S), _fix(py, S)] for px, py in quad], np.int32)], 1, cv2.LINE_8, 4)

        paint("pot", draw_pot)
    paint("petal", draw_petals)
    paint("centre", lambda m: cv2.circle(m, (_fix(c["x"], S), _fix(c["y"], S)), _fix(c["r"], S), 1, -1,
                                         cv2.LINE_8, 4))
    if "object" not in remove:
        for obj in params.get("objects", ()):
            tmp[:] = 0
            _draw_object(tmp, obj, S)
            col = obj["colour"]
            img[tmp > 0] = _hsv(col["h"], col["s"], col["v"])
            parts[tmp > 0] = PARTS["object"]
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
    if variant == "parts-5c":  # a class is all five parts' colours: each takes the target's, its jitter kept
        for part, i, j in zip(P5_PARTS, P5_CLASSES[params["label"]], P5_CLASSES[target]):
            col, a, b = dict(params["colours"][part]), P5_COLOURS[part][i], P5_COLOURS[part][j]
            out[part] = {"h": col["h"] - a[1] + b[1], "s": float(np.clip(col["s"] - a[2] + b[2], 0, 1)),
                         "v": float(np.clip(col["v"] - a[3] + b[3], 0, 1))}
        return out
    for part in params["disc_parts"]:
        col = copy.deepcopy(params["colours"][part])
        col["h"] = float(col["h"] - now[part] + new[part])
        out[part] = col
    return out


def training_removal(params: dict, seed: int = 0) -> list[str]:
    """The items a parts-5c training image is drawn without (from its own RNG): each part outside the class's
    minimal sufficient set, and the background objects, with probability ``P5_DROP``. Nothing elsewhere."""
    if params["variant"] != "parts-5c":
        return []
    rng = np.random.default_rng([int(seed), 98, int(params["index"])])
    keep = set(params["disc_parts"])
    return [x for x in removable("parts-5c") if x not in keep and rng.random() < P5_DROP]


def dataset(variant: str, split: str | int, n: int, size: int = 64, seed: int = 0, start: int = 0,
            render_sizes: tuple[int, ...] | None = None, with_parts: bool = True, drop: bool = False):
    """In-memory samples ``start .. start+n``: images (n, S, S, 3), labels (n,), part maps (n, S, S).

    With ``render_sizes``, each sample is drawn at one of those sizes (picked from its own RNG) and
    downsampled to ``size`` with area averaging, as the classifiers' preprocessing does for larger
    images: models trained this way do not care at which size a flower was drawn. With ``drop``, parts-5c
    samples are drawn without their ``training_removal`` items (the training split)."""
    import cv2

    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n,), np.int64)
    parts = np.empty((n, size, size), np.uint8) if with_parts else None
    for j in range(n):
        p = sample_params(variant, seed, split, start + j)
        rs = size
        if render_sizes:
            rs = int(render_sizes[int(np.random.default_rng([seed, 99, start + j]).integers(len(render_sizes)))])
        img, pm = render(p, rs, remove=training_removal(p, seed) if drop else ())
        if rs != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            pm = cv2.resize(pm, (size, size), interpolation=cv2.INTER_NEAREST)
        images[j] = img
        labels[j] = p["label"]
        if with_parts:
            parts[j] = pm
    return images, labels, parts
