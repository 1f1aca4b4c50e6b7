"""Measuring the "remove a part, watch the class change" interaction against ground truth.

For held-out Flower2D images that a model classifies correctly:

* remove the discriminative part(s) by inpainting (mask dilated by ``dilate`` px, Telea): how often
  does the prediction change, and by how much does the true-class probability drop?
* the same with the exact removal (re-rendered without the part);
* remove a non-discriminative part (a leaf, else the stem, else the pot; never touching discriminative pixels):
  how often does the prediction change (it should not);
* recolour the discriminative part(s) with another class's colours: how often is that class predicted?
"""
from __future__ import annotations

import numpy as np

from . import generator as g


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    if px <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k) > 0


def interaction_stats(clf, variant: str, n: int = 200, size: int = 128, seed: int = 0, start: int = 0,
                      dilate: int = 2, inpainter: str = "telea") -> dict:
    from ..session import get_inpainter

    fill = get_inpainter(inpainter)
    C = g.num_classes(variant)
    rows = {"correct": [], "disc_flip": [], "disc_drop": [], "exact_flip": [], "exact_drop": [],
            "other_flip": [], "other_drop": [], "recolour_hit": [], "recolour_other_part_keeps": []}
    for i in range(start, start + n):
        p = g.sample_params(variant, seed, "test", i)
        y = p["label"]
        img, parts = g.render(p, size)
        p0 = clf.predict(img)
        rows["correct"].append(p0.top1 == y)
        if p0.top1 != y:
            continue
        disc = g.disc_mask(p, parts)
        edited = fill.inpaint(img, _dilate(disc, dilate))
        p1 = clf.predict(edited)
        rows["disc_flip"].append(p1.top1 != y)
        rows["disc_drop"].append(float(p0.probs[y] - p1.probs[y]))
        exact, _ = g.render(p, size, remove=p["disc_parts"])
        pe = clf.predict(exact)
        rows["exact_flip"].append(pe.top1 != y)
        rows["exact_drop"].append(float(p0.probs[y] - pe.probs[y]))
        # a part outside the class's set: a leaf, else the stem (on parts-5c the first such part drawn)
        others = [k for k in ("leaf", "stem", "pot", "centre", "petal") if k not in p["disc_parts"]]
        other = next((k for k in others if g.part_mask(parts, k).sum() >= 4), others[-1])
        m = _dilate(g.part_mask(parts, other), dilate) & ~disc
        if m.any():
            p2 = clf.predict(fill.inpaint(img, m))
            rows["other_flip"].append(p2.top1 != y)
            rows["other_drop"].append(float(p0.probs[y] - p2.probs[y]))
        target = (y + 1 + i % (C - 1)) % C  # every other class in turn
        cf, _ = g.render(p, size, recolor=g.counterfactual(p, target))
        rows["recolour_hit"].append(clf.predict(cf).top1 == target)
        # recolouring a non-discriminative part must keep the class
        keep, _ = g.render(p, size, recolor={other: p["colours"]["petal"] if other != "petal" else p["colours"]["stem"]})
        rows["recolour_other_part_keeps"].append(clf.predict(keep).top1 == y)

    def mean(k):
        return float(np.mean(rows[k])) if rows[k] else float("nan")

    return {"model": clf.name, "variant": variant, "n": n, "size": size, "dilate": dilate, "inpainter": inpainter,
            "accuracy": mean("correct"), "evaluated": len(rows["disc_flip"]),
            "disc_flip_rate": mean("disc_flip"), "disc_mean_drop": mean("disc_drop"),
            "exact_disc_flip_rate": mean("exact_flip"), "exact_disc_mean_drop": mean("exact_drop"),
            "other_flip_rate": mean("other_flip"), "other_mean_drop": mean("other_drop"),
            "recolour_target_rate": mean("recolour_hit"),
            "recolour_other_part_keeps_rate": mean("recolour_other_part_keeps")}


def format_stats(stats: list[dict]) -> str:
    head = ("model", "acc", "disc flip", "disc drop", "exact flip", "other flip", "recolour->y'")
    rows = [head]
    for s in stats:
        rows.append((s["model"], f"{100 * s['accuracy']:.1f}%", f"{100 * s['disc_flip_rate']:.1f}%",
                     f"{s['disc_mean_drop']:.3f}", f"{100 * s['exact_disc_flip_rate']:.1f}%",
                     f"{100 * s['other_flip_rate']:.1f}%", f"{100 * s['recolour_target_rate']:.1f}%"))
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
