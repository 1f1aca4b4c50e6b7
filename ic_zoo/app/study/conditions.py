"""What a participant's condition and a task's phase change in the model columns (the class map as the
explainer made it, no map, or a random smooth map in its place: the control of simulation studies), and the
predictions a predict-then-see task asks for and scores."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from ...presentation import present

SOMETHING_ELSE = "something else"
FLIP_CHOICES = ["yes", "no"]


def maps_mode(task) -> str:
    """What the columns show as the map on ``task`` (a participant's, overrides applied): a test-phase task
    shows none (the simulation studies' test phase is without explanations); otherwise the task's ``maps``."""
    return "hidden" if task.phase == "test" else task.maps


def random_smooth_map(shape: tuple[int, int], seed_text: str) -> np.ndarray:
    """A random smooth map in [0, 1] of ``shape``: Gaussian noise on an 8 x 8 coarser grid, blurred and
    upsampled (bicubic), min-max scaled. The same ``seed_text`` gives the same map, on every machine."""
    import cv2

    seed = int(hashlib.sha256(seed_text.encode()).hexdigest()[:12], 16)
    h, w = int(shape[0]), int(shape[1])
    coarse = np.random.default_rng(seed).standard_normal((max(2, h // 8), max(2, w // 8))).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 1.5)
    m = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    m -= m.min()
    return m / max(float(m.max()), 1e-12)


def random_maps(cm, seed_text: str):
    """``cm`` (a ClassMaps) with random smooth maps in place of the explainer's, on the original and on the
    modified image (two draws), at its scale and resolution; its label and explainer kept (the participant
    is not told)."""
    scale = cm.scale
    a = random_smooth_map(cm.raw_original.shape[-2:], seed_text + ":original") * scale
    b = random_smooth_map(cm.raw_modified.shape[-2:], seed_text + ":modified") * scale
    return dataclasses.replace(cm, raw_original=a, raw_modified=b, original_normalized=a / scale,
                               modified_normalized=b / scale, alternatives=None, _cache={})


def shown_view(view, session, result, cm, mode: str, seed_text: str):
    """``view`` (comparison.ModelView) as the participant's condition shows it: as made ("shown"), without
    its map ("hidden") or with a random smooth map ("random")."""
    if mode == "shown" or cm is None:
        return view if mode != "hidden" else _hidden(view)
    if mode == "hidden":
        return _hidden(view)
    rnd = random_maps(cm, seed_text)
    panel = present.map_panel(session.original, session.modified, rnd, box=result.box)
    return dataclasses.replace(view, panel=panel, map=None, drawn=(session.original, session.modified, rnd, result.box))


def _hidden(view):
    return dataclasses.replace(view, panel=None, info="", cls=None, map=None, drawn=None, trust=None)


# -- predict-then-see ------------------------------------------------------------------------------------
def predicted_models(task, order: list[str]) -> list[str]:
    """The models the participant predicts on ``task``: all of them in their order, or the first."""
    return list(order) if task.predict.models == "all" else list(order[:1])


def class_choices(labels: list[str]) -> list[str]:
    """A class prediction's choices: the model's current top-5 labels, then "something else"."""
    return list(dict.fromkeys(labels)) + [SOMETHING_ELSE]


def score(before: dict, after: dict, predictions: dict) -> dict:
    """Each predicted model's outcome and whether each prediction was right. ``before`` / ``after``:
    {model: {"top1": label, "top5": [labels]}} (``before`` is what the participant saw when predicting);
    ``predictions``: {model: {"flip": "yes" | "no", "class": label}}."""
    out = {}
    for m, p in predictions.items():
        flipped = after[m]["top1"] != before[m]["top1"]
        said = after[m]["top1"] if after[m]["top1"] in before[m]["top5"] else SOMETHING_ELSE
        row = {"flipped": flipped, "top1_before": before[m]["top1"], "top1_after": after[m]["top1"],
               "class_outcome": said}
        if "flip" in p:
            row["flip_correct"] = (p["flip"] == "yes") == flipped
        if "class" in p:
            row["class_correct"] = p["class"] == said
        row["correct"] = all(row[k] for k in ("flip_correct", "class_correct") if k in row)
        out[m] = row
    return out


def reveal_text(scored: dict, predictions: dict) -> str:
    """The status line of a reveal: each predicted model's outcome and whether the prediction was right."""
    parts = []
    for m, o in scored.items():
        did = (f"changed its top-1 from *{o['top1_before']}* to *{o['top1_after']}*" if o["flipped"]
               else f"kept its top-1, *{o['top1_after']}*")
        said = []
        if "flip" in predictions[m]:
            said.append("a change" if predictions[m]["flip"] == "yes" else "no change")
        if "class" in predictions[m]:
            said.append(f"*{predictions[m]['class']}*")
        parts.append(f"**{m}** {did}; you predicted {' and '.join(said)}: "
                     + ("**right**." if o["correct"] else "**not right**."))
    return " ".join(parts)
