"""Which map finds the object on a real photo? ``python -m ic_zoo explain-bench --protocol photos``.

Real photos that ship inside packages the project installs (scikit-image's data, Gradio's media assets,
scikit-learn's sample images) are read at run time, never copied into the repository. For each, the project
drew a mask of the object that the embedded EfficientNet-Lite models' top-1 ImageNet class names (``PHOTOS``:
the class, what was masked and how the mask was drawn; the masks are ``photo_masks/<id>.png``, one byte a
pixel at the photo's own size). Every explainer's map of that class, on each of the three embedded
EfficientNet-Lite models, is scored against the mask with explain-bench's own metric code
(``analyses.metrics``), in the model's input frame (the mask goes through the model's own resize and crop,
as the photo does):

* ``top_m_iou``: IoU of the map's |M| hottest pixels with the mask M;
* ``pointing``: 1 when the map's hottest pixel lies inside M;
* ``energy``: the share of the map's positive mass inside M;
* ``deletion_auc``: p(class) averaged over removing (Telea inpainting) the hottest 0 ... 30 % of pixels
  (lower: the map found what the model uses sooner), and with ``--road`` beside it ``road``, pytorch-grad-cam's
  ROADCombined (higher is better; its imputation costs about 2.5 s a map on 2 cores, so it is asked for),
  both about the model rather than the mask.

Every explainer runs except LIME (``SLOW``: about 37 s a photo on Lite0, as long as all the others; name it
with ``--explainers`` to run it).

Controls: the mask itself (``gt``: top-|M| IoU, pointing and energy 1 by construction), a smooth random map
(``random``, the mean of ``RANDOM_DRAWS`` draws: its energy and pointing are the mask's area share, up to
sampling) and a centred Gaussian (``centre``: photographers centre their subject, so a map that only
says "the middle" is a baseline to beat). A package that is not installed skips its photos with the reason.
"""
from __future__ import annotations

import importlib
import importlib.util
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analyses.metrics import energy, pointing, top_m_iou
from ..errors import InputError
from .scoring import ALL_EXPLAINERS, CONTROLS, control_map, deletion_auc

MASKS = Path(__file__).resolve().parent / "photo_masks"
MODELS = ("tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k")
METRICS = ("top_m_iou", "pointing", "energy", "deletion_auc", "road")
RANDOM_DRAWS = 8
GRABCUT = ("GrabCut (OpenCV, 8 iterations, seed 0) from a rectangle placed by hand around the object, the "
           "largest component kept and enclosed holes filled; checked by eye over the photo")


@dataclass(frozen=True)
class Photo:
    id: str
    package: str  # the installed package that ships the photo
    path: str  # inside that package
    label: int  # the ImageNet class the mask is of: the trio's majority top-1
    object: str  # what the mask covers
    drawn: str  # how the mask was drawn


PHOTOS = (
    Photo("coffee", "skimage", "data/coffee.png", 967, "espresso: the cup's opening, the coffee and the rim",
          GRABCUT + " (rectangle 165,12-418,295; the red cup body, as red as the saucer, fell to the background)"),
    Photo("camera", "skimage", "data/camera.png", 872, "tripod: the column, the head and the legs (not the camera)",
          "Drawn by hand as thick polylines along the column (9 px), the legs (9-11 px) and the spreaders (4 px), "
          "and a box over the head, reading the points off a zoomed grid of the photo (GrabCut took the grass "
          "between the legs)"),
    Photo("astronaut", "skimage", "data/astronaut.png", 560, "football helmet: the helmet in the lower right",
          GRABCUT + " (rectangle 272,338-512,512; a sliver of the black backdrop above it is included)"),
    Photo("china", "sklearn", "datasets/images/china.jpg", 698, "palace: the pagoda", GRABCUT + " (rectangle 58,25-375,392)"),
    Photo("lion", "gradio", "media_assets/images/lion.jpg", 291, "lion: both lions", GRABCUT + " (one rectangle a lion: "
          "0,0-175,230 and 150,5-256,145, the two masks joined)"),
    Photo("cheetah", "gradio", "media_assets/images/cheetah.jpg", 293, "cheetah: the running cheetah",
          GRABCUT + " (rectangle 82,115-380,238)"),
    Photo("cheetah1", "gradio", "media_assets/images/cheetah1.jpg", 293, "cheetah: the head and shoulders",
          GRABCUT + " (rectangle 15,5-245,256)"),
    Photo("cheetah2", "gradio", "test_data/cheetah2.jpg", 293, "cheetah: the cub", GRABCUT + " (rectangle 30,40-745,787)"),
)


def photo_file(p: Photo) -> tuple[Path | None, str]:
    """(the photo's file, "") or (None, why it cannot be had: its package is not installed, or lacks it)."""
    spec = importlib.util.find_spec(p.package)
    if spec is None or spec.origin is None:
        return None, f"{p.id}: the package {p.package!r} is not installed, so its photo {p.path} is skipped."
    f = Path(spec.origin).parent / p.path
    if not f.is_file():
        return None, f"{p.id}: {p.package} {getattr(importlib.import_module(p.package), '__version__', '')} has no {p.path}; skipped."
    return f, ""


def load(p: Photo) -> tuple[np.ndarray, np.ndarray] | tuple[None, str]:
    """(photo RGB uint8, mask bool) at the photo's size; (None, reason) for a photo that cannot be had. A
    mask of another size than its photo is an InputError (one sentence)."""
    from ..imageio import load_image, load_mask

    f, why = photo_file(p)
    if f is None:
        return None, why
    img = load_image(str(f))
    mask = load_mask(str(MASKS / f"{p.id}.png"))
    if mask.shape != img.shape[:2]:
        raise InputError(f"The mask of {p.id} is {mask.shape[1]} x {mask.shape[0]} but its photo is "
                         f"{img.shape[1]} x {img.shape[0]}: a mask must be drawn at its photo's own size.")
    return img, mask


def model_frame(clf, img: np.ndarray, mask: np.ndarray) -> tuple:
    """The input ``x``, the image the model sees and the mask carried through the same resize and crop."""
    x = clf.preprocess(img)
    m3 = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    return x, clf.tensor_to_image(x), clf.tensor_to_image(clf.preprocess(m3))[..., 0] > 127


def scores(clf, x, img_in: np.ndarray, m: np.ndarray, h: np.ndarray, y: int, fill, with_road: bool) -> dict:
    """Every metric of map ``h`` (at the model's input size) for the mask ``m`` and class ``y`` (ROAD NaN
    unless ``with_road``)."""
    from ..analyses.trust import road

    return {"top_m_iou": top_m_iou(h, m), "pointing": pointing(h, m), "energy": energy(h, m),
            "deletion_auc": deletion_auc(clf, img_in, h, y, fill),
            "road": road(clf, x, h, y) if with_road else float("nan")}


#: left out unless named (--explainers): LIME takes about 37 s a photo on Lite0 here, as long as the others together
SLOW = ("lime",)


def default_explainers() -> list[str]:
    return [e for e in ALL_EXPLAINERS if e not in SLOW]


def run_photos(models=None, explainers=None, photos=None, road: bool = False, log=print) -> dict:
    """The photo protocol (module docstring): rows per model x explainer (and control) with each metric's
    mean over the photos and the per-photo values; ``skipped``: the photos that could not be had, and why.
    ``road``: ROAD too (pytorch-grad-cam's imputation costs about 2.5 s a map here: off by default)."""
    import torch

    from ..session import get_classifier, get_explainer, get_inpainter

    t_start = time.perf_counter()
    explainers = list(default_explainers() if explainers is None else explainers)
    for e in explainers:
        get_explainer(e)  # an unknown name is one sentence before any work
    fill = get_inpainter("telea")
    cases, skipped = [], []
    for p in PHOTOS if photos is None else [q for q in PHOTOS if q.id in set(photos)]:
        img, mask = load(p)
        if img is None:
            skipped.append(mask)
            log(mask)
            continue
        cases.append((p, img, mask))
    rows, areas = [], {}
    for key in models or MODELS:
        clf = get_classifier(key)
        frames = [(p, *model_frame(clf, img, mask)) for p, img, mask in cases]
        for name in explainers + list(CONTROLS):
            ex = get_explainer(name) if name not in CONTROLS else None
            why = ex.supports(clf) if ex is not None else None
            if why:
                rows.append({"model": key, "explainer": name, "control": False, "unsupported": why})
                continue
            per: dict = {k: [] for k in METRICS}
            t0 = time.perf_counter()
            for p, x, img_in, m in frames:
                rng = np.random.default_rng([p.label, 7])
                if ex is None:
                    maps = [control_map(name, m, rng) for _ in range(RANDOM_DRAWS if name == "random" else 1)]
                else:
                    maps = [ex.explain(clf, x, [p.label]).raw[0]]
                got = [scores(clf, x, img_in, m, h, p.label, fill, road and i == 0) for i, h in enumerate(maps)]
                for k in METRICS:  # (ROAD: the first random draw's)
                    per[k].append(float(np.mean([g[k] for g in got if k != "road" or np.isfinite(g[k])] or [np.nan])))
            seconds = (time.perf_counter() - t0) / max(len(frames), 1)
            rows.append({"model": key, "explainer": name, "control": name in CONTROLS, "seconds_per_photo": seconds,
                         "metrics": {k: float(np.mean(v)) if v else float("nan") for k, v in per.items()},
                         "per_photo": {p.id: {k: per[k][i] for k in METRICS} for i, (p, *_rest) in enumerate(frames)}})
            log(f"photos {key} {name}: top-|M| IoU {rows[-1]['metrics']['top_m_iou']:.3f} ({seconds:.1f} s a photo)")
        # the masks' area share in this model's frame: the random control's expected energy and pointing
        areas[key] = {p.id: float(m.mean()) for p, x, img_in, m in frames}
    return {"config": {"protocol": "photos", "models": list(models or MODELS), "explainers": explainers,
                       "controls": list(CONTROLS), "random_draws": RANDOM_DRAWS, "road": bool(road)},
            "photos": [{"id": p.id, "package": p.package, "path": p.path, "label": p.label,
                        "class": get_classifier((models or MODELS)[0]).labels[p.label], "object": p.object,
                        "drawn": p.drawn} for p, _, _ in cases],
            "skipped": skipped, "areas": areas, "results": rows,
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()},
            "seconds": round(time.perf_counter() - t_start, 1)}


def format_markdown(doc: dict) -> str:
    """The README's table: per explainer (rows) and model (column groups), the mean over the photos of
    top-|M| IoU, pointing, energy and deletion AUC; the controls first."""
    models = doc["config"]["models"]
    short = {m: m.replace("tf_efficientnet_", "").replace(".in1k", "") for m in models}
    road = doc["config"].get("road", False)
    what = "IoU / point / energy / del. AUC" + (" / ROAD" if road else "")
    head = "| explainer | " + " | ".join(f"{short[m]} {what}" for m in models) + " |"
    lines = [head, "|---|" + "---:|" * len(models)]
    by = {(r["model"], r["explainer"]): r for r in doc["results"]}
    names = list(doc["config"]["controls"]) + [e for e in doc["config"]["explainers"]]
    for name in names:
        cells = []
        for m in models:
            r = by.get((m, name))
            if r is None or "metrics" not in r:
                cells.append("n/a")
                continue
            v = r["metrics"]
            cells.append(f"{v['top_m_iou']:.2f} / {v['pointing']:.2f} / {v['energy']:.2f} / {v['deletion_auc']:.3f}"
                         + (f" / {v['road']:.3f}" if road else ""))
        label = f"*{name}* (control)" if name in doc["config"]["controls"] else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    area = np.mean([np.mean(list(a.values())) for a in doc["areas"].values()]) if doc["areas"] else float("nan")
    lines.append(f"| *mask area share* (the random control's expectation) | {area:.2f} |" + " |" * (len(models) - 1))
    return "\n".join(lines) + "\n"


def photo_table(doc: dict) -> str:
    """The photos: where each comes from, its class, what its mask covers and how it was drawn."""
    lines = ["| photo | from | class | mask | drawn |", "|---|---|---|---|---|"]
    for p in doc["photos"]:
        lines.append(f"| {p['id']} | {p['package']}: `{p['path']}` | {p['label']} {p['class'].split(',')[0]} | "
                     f"{p['object']} | {p['drawn']} |")
    return "\n".join(lines) + "\n"
