"""How many random subsets does LIME need per SLIC scale? Accuracy and time against the subset count.

    python benchmarks/lime_samples.py --json benchmarks/lime_samples.json --markdown benchmarks/lime_samples.md
    python benchmarks/lime_samples.py --samples 384 --targets single-6c:vit

On the explain-bench's own images (``select_images``, 3 seeds x 20 by default, the images of the
published table) of the models whose targets LIME carries (single-6c: ViT, ResNet, SqueezeNet;
double-12c: ViT), `lime` with each subset count is scored as explain-bench scores it: top-|M| IoU and
pointing of the true class's map against the discriminative mask, the mean over the seeds of each
seed's mean. The inpainted subsets are shared by the models of a variant, as in explain-bench, so the
seconds of a row depend on the rows before it: the first model of a variant and count pays the
inpainting. Prints a table and writes JSON (and the README's table as Markdown).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: the targets of the explanations issue that `lime` meets (top-|M| IoU, pointing)
TARGETS = {("single-6c", "vit"): (0.65, 0.90), ("single-6c", "resnet"): (0.75, 0.95),
           ("single-6c", "squeezenet"): (0.65, 0.90), ("double-12c", "vit"): (0.75, 0.95)}
PREFIX = {"single-6c": "flower2d-6c", "double-12c": "flower2d"}


def score(key: str, variant: str, samples: int, n: int, seeds: int) -> dict:
    from ic_zoo.analyses.metrics import pointing, top_m_iou
    from ic_zoo.research.explain_bench import select_images
    from ic_zoo.explainers.occlusion import Lime
    from ic_zoo.flower2d import generator as g
    from ic_zoo.session import get_classifier

    clf, ex = get_classifier(key), Lime(samples=samples)
    iou, pt, t0, images = [], [], time.perf_counter(), 0
    for seed in range(seeds):
        a, b = [], []
        for p, img, parts in select_images(clf, variant, n, seed)[0]:
            m = g.disc_mask(p, parts)
            h = ex.explain(clf, clf.preprocess(img), [p["label"]]).raw[0]
            a.append(top_m_iou(h, m))
            b.append(pointing(h, m))
        iou.append(float(np.mean(a)))
        pt.append(float(np.mean(b)))
        images += len(a)
    return {"top_m_iou": float(np.mean(iou)), "pointing": float(np.mean(pt)), "per_seed_iou": iou,
            "per_seed_pointing": pt, "images": images,
            "seconds_per_image": (time.perf_counter() - t0) / max(images, 1)}


def format_table(doc: dict) -> str:
    lines = ["| variant | model | target | " + " | ".join(f"{s} subsets" for s in doc["samples"]) + " |",
             "|---|---|---|" + "---:|" * len(doc["samples"])]
    for variant, arch in doc["targets"]:
        t = TARGETS[(variant, arch)]
        cells = []
        for s in doc["samples"]:
            r = doc["results"][f"{variant} {arch} {s}"]
            ok = r["top_m_iou"] >= t[0] and r["pointing"] >= t[1]
            cells.append(f"{r['top_m_iou']:.2f} / {r['pointing']:.2f}{'' if ok else ' (miss)'}")
        lines.append(f"| {variant} | {arch} | ≥ {t[0]:.2f} / ≥ {t[1]:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[256, 384, 512])
    ap.add_argument("--targets", nargs="+", default=[f"{v}:{a}" for v, a in TARGETS],
                    help="variant:arch pairs, of " + ", ".join(f"{v}:{a}" for v, a in TARGETS))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--markdown", help="also write the README's table here")
    a = ap.parse_args(argv)
    from ic_zoo.explainers.occlusion import cache_size

    targets = [tuple(t.split(":", 1)) for t in a.targets]
    bad = [":".join(t) for t in targets if t not in TARGETS]
    if bad:
        ap.error(f"no LIME target for {', '.join(bad)}; pick from {', '.join(f'{v}:{x}' for v, x in TARGETS)}")
    import torch

    doc = {"samples": a.samples, "targets": targets, "n": a.n, "seeds": a.seeds, "results": {},
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}}
    t0 = time.perf_counter()
    with cache_size(8 * a.n * a.seeds * len(a.samples) + 16):  # a variant's models share their subsets
        for variant in dict.fromkeys(v for v, _ in targets):  # variant by variant, as explain-bench runs
            for _, arch in [t for t in targets if t[0] == variant]:
                for s in a.samples:
                    r = score(f"{PREFIX[variant]}/{arch}", variant, s, a.n, a.seeds)
                    doc["results"][f"{variant} {arch} {s}"] = r
                    print(f"{variant} {arch} {s} subsets: top-|M| IoU {r['top_m_iou']:.3f}, pointing "
                          f"{r['pointing']:.3f}, {r['seconds_per_image']:.2f} s/image", flush=True)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    print(format_table(doc))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1))
    if a.markdown:
        Path(a.markdown).write_text(format_table(doc) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
