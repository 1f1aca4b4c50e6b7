"""Where do an explainer's pointing misses land? The explain-bench images, each miss's distance to the mask.

    python benchmarks/pointing_misses.py --json benchmarks/pointing_misses.json        # lime, single-6c
    python benchmarks/pointing_misses.py --keep 0.5 --json benchmarks/pointing_misses_keep05.json  # half-sets
    python benchmarks/pointing_misses.py --explainer occlusion --variant double-12c --models vit

For each model of the variant, on the explain-bench's own images (``select_images``, 3 seeds x 20 by
default, so the same images as the published table), the explainer's map of the true class is computed;
for every image whose hottest pixel lies outside the discriminative mask it records the distance in
pixels from that pixel to the mask, which part it lies on, how many pixels share the peak value (the
map's top plateau) and what share of them lies in the mask (so a miss that is only numpy's raster-order
tie-break inside a plateau straddling the mask's edge shows as a share above 0), and the model's p(class)
with that part removed by the generator's exact re-render (does the model itself depend on the part the
map points at?). LIME judges each superpixel with many of the others removed (70 % by default), so
each miss also records p(class) with a random half of the mask's superpixels removed by LIME's own
operator (the 120-superpixel scale, telea, masks grown by 1 px; the mean of ``DRAWS`` draws), once with
the peak's part kept and once with it removed too: does the model need that part once the mask is half
gone? Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DRAWS = 24


def p_class(clf, ims, label: int) -> list[float]:
    """The model's p(label) on each image."""
    import torch

    with torch.inference_mode():
        return torch.softmax(clf.forward(clf.image_to_tensor(np.stack(ims))).float(), 1)[:, label].tolist()


def half_mask_removed(clf, img: np.ndarray, m: np.ndarray, part: np.ndarray, label: int, seed: int):
    """Mean p(label) with a random half of the mask's superpixels inpainted, the part kept / removed too."""
    from ic_zoo.explainers.occlusion import segmentation

    s, rng = segmentation(img, 120, "telea", 1), np.random.default_rng(seed)  # LIME's own removal
    ids = np.array([i for i in s.ids if m[s.seg == i].mean() > 0.5])
    masks = []
    for _ in range(DRAWS):
        half = np.isin(s.seg, ids[rng.random(len(ids)) < 0.5])
        masks += [half, half | part]
    pr = np.array(p_class(clf, s.remove_many(masks), label))
    return round(float(pr[0::2].mean()), 4), round(float(pr[1::2].mean()), 4)


def misses(key: str, variant: str, explainer: str, n: int, seeds: int, params: dict | None = None) -> dict:
    from ic_zoo.research.explain_bench import select_images
    from ic_zoo.flower2d import generator as g
    from ic_zoo.session import get_classifier, get_explainer

    import ic_zoo

    clf = get_classifier(key)
    ex = ic_zoo.create("explainer", explainer, **params) if params else get_explainer(explainer)
    names = {v: k for k, v in g.PARTS.items()}
    images, out = 0, []
    for seed in range(seeds):
        samples, _ = select_images(clf, variant, n, seed)
        for j, (p, img, parts) in enumerate(samples):
            images += 1
            h = ex.explain(clf, clf.preprocess(img), [p["label"]]).raw[0]
            m = g.disc_mask(p, parts)
            y, x = np.unravel_index(int(np.argmax(h)), h.shape)
            if m[y, x]:
                continue
            yy, xx = np.nonzero(m)
            part = names[int(parts[y, x])]
            plateau = h >= h[y, x] * (1 - 1e-6)
            pr = p_class(clf, [img, g.render(p, img.shape[0], remove=[part])[0]], p["label"])
            half = half_mask_removed(clf, img, m, g.part_mask(parts, part), p["label"], 1000 * seed + j)
            out.append({"seed": seed, "image": j, "px_from_mask": float(np.min(np.hypot(yy - y, xx - x))),
                        "part_at_peak": part, "plateau_px": int(plateau.sum()),
                        "plateau_in_mask": round(float(m[plateau].mean()), 3),
                        "p_class": round(pr[0], 4), "p_class_part_removed": round(pr[1], 4),
                        "p_class_half_mask_removed": half[0], "p_class_half_mask_and_part_removed": half[1]})
    return {"model": key, "variant": variant, "explainer": explainer, "images": images, "misses": out}


def main(argv=None) -> int:
    from ic_zoo.classifiers.flower2d_models import shipped_for
    from ic_zoo.explainers.occlusion import cache_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--explainer", default="lime")
    ap.add_argument("--variant", default="single-6c")
    ap.add_argument("--models", nargs="+", default=None, help="model keys or architectures (default: all three)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--keep", type=float, default=None,
                    help="lime's share of superpixels left in place per subset (default: lime's own)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    rows = []
    with cache_size(8 * a.n * a.seeds + 16):  # the models share their inpaintings, as in explain-bench
        for key in shipped_for(a.variant, a.models, False):
            r = misses(key, a.variant, a.explainer, a.n, a.seeds, {"keep": a.keep} if a.keep else None)
            rows.append(r)
            d = [m["px_from_mask"] for m in r["misses"]]
            parts = sorted({m["part_at_peak"] for m in r["misses"]})
            share = [m["plateau_in_mask"] for m in r["misses"]]
            drop = [m["p_class"] - m["p_class_part_removed"] for m in r["misses"]]
            cond = [m["p_class_half_mask_removed"] - m["p_class_half_mask_and_part_removed"] for m in r["misses"]]
            print(f"{key:<24} {a.explainer:<10} images {r['images']:3d}  misses {len(d):2d}  "
                  f"px from mask: max {max(d) if d else 0:.1f}, median {np.median(d) if d else 0:.1f}  "
                  f"on: {', '.join(parts) or '-'}  peak plateau in mask: max {max(share) if share else 0:.2f}  "
                  f"p(class) drop when that part is re-rendered away: median {np.median(drop) if drop else 0:.3f}, "
                  f"max {max(drop) if drop else 0:.3f}; with half the mask inpainted away: median "
                  f"{np.median(cond) if cond else 0:.3f}, max {max(cond) if cond else 0:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"config": vars(a), "rows": rows}, indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
