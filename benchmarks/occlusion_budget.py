"""The fast occlusion's budget in passes (issue 35, item 2): the same map on every run and on a busy
machine, and its time on this one.

For each model (ResNet-50 and ViT-S/16 with random weights, the embedded EfficientNet-Lite0 with its
ImageNet weights; 224 px) and each of the repository's example photos, the fast occlusion's map of the
model's top-1 class is computed twice on an idle machine and once with CPU burners on the same cores
(``--burn``, default 2 per core). Reported per model: the pass budget (from the model's FLOPs and input
size, ``occlusion.pass_cost``), the passes made, the median and worst seconds idle and under load, and
whether the three maps of each photo are bitwise equal (the first idle one is timed: it makes the
photo's segmentations and inpaintings, which the later ones reuse) (the budget was seconds before: under load it cut
the refinement short and the map changed).

    python benchmarks/occlusion_budget.py --json benchmarks/occlusion_budget.json
    python benchmarks/occlusion_budget.py --table benchmarks/occlusion_budget.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = [("resnet50.a1_in1k", False), ("vit_small_patch16_224.augreg_in21k_ft_in1k", False),
          ("tf_efficientnet_lite0.in1k", True)]
PHOTOS = ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.jpg"]


def run(burn: int, log=print) -> dict:
    import torch

    import ic_zoo
    from ic_zoo.explainers import occlusion as O
    from ic_zoo.session import get_classifier

    from chaos import Burners

    torch.manual_seed(0)
    images = [ic_zoo.load_image(ROOT / "examples" / p) for p in PHOTOS]
    rows = []
    for name, pretrained in MODELS:
        clf = get_classifier(name, pretrained=pretrained)
        x0 = clf.preprocess(images[0])
        clf.forward(x0)  # the first call's one-off costs are not the occlusion's
        row = {"model": name, "pretrained": pretrained, "gflop_per_pass": round(O.forward_flops(clf, x0) / 1e9, 2),
               "budget": int(O.GFLOP_BUDGET * 1e9 // O.pass_cost(clf, x0)), "passes": [], "idle_s": [],
               "load_s": [], "equal": []}
        for img in images:
            x = clf.preprocess(img)
            cls = int(clf.predict(img).order[0])
            maps = []
            for k, phase in enumerate(("idle", "idle", "load")):
                ex = O.Occlusion()
                if phase == "load":
                    with Burners(burn):
                        time.sleep(1.0)
                        maps.append(ex.explain(clf, x, [cls]).raw)
                    row["load_s"].append(round(ex.last_seconds, 3))
                else:
                    maps.append(ex.explain(clf, x, [cls]).raw)
                    if k == 0:  # the photo's first map: its segmentations and inpaintings made too
                        row["idle_s"].append(round(ex.last_seconds, 3))
            row["passes"].append(ex.last_passes)
            row["equal"].append(bool(all(np.array_equal(maps[0], m) for m in maps[1:])))
            log(f"{name} {len(row['passes'])}/{len(images)}: {ex.last_passes} passes, idle "
                f"{row['idle_s'][-1]:.2f} s, load {row['load_s'][-1]:.2f} s, "
                f"equal {row['equal'][-1]}")
        rows.append(row)
    return {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
            "command": "python benchmarks/occlusion_budget.py " + " ".join(sys.argv[1:]), "burners": burn,
            "gflop_budget": O.GFLOP_BUDGET, "pixel_flop": O.PIXEL_FLOP, "photos": PHOTOS, "rows": rows}


def table(doc: dict) -> str:
    lines = [f"| model (224 px) | GFLOP a pass | budget (passes) | passes made | idle: median / worst s | "
             f"{doc['burners']} CPU burners: median / worst s | maps equal (idle, idle, busy) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        name = r["model"] + ("" if r["pretrained"] else " (random weights)")
        lines.append(f"| `{name}` | {r['gflop_per_pass']} | {r['budget']} | {min(r['passes'])}-{max(r['passes'])} | "
                     f"{np.median(r['idle_s']):.2f} / {max(r['idle_s']):.2f} | "
                     f"{np.median(r['load_s']):.2f} / {max(r['load_s']):.2f} | "
                     f"{sum(r['equal'])} of {len(r['equal'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--burn", type=int, default=None, help="CPU burners for the busy run (default: 2 per core)")
    p.add_argument("--json", default=None)
    p.add_argument("--table", default=None, metavar="JSON", help="print the table of a JSON and exit")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    doc = run(args.burn if args.burn is not None else 2 * (os.cpu_count() or 1),
              log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        Path(args.json).with_suffix(".md").write_text(table(doc) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
