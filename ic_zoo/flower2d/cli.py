"""``python -m ic_zoo flower2d generate|train``."""
from __future__ import annotations

import json
from pathlib import Path

from ..command import Command
from ..registry import register


def cmd_generate(args) -> int:
    import numpy as np

    from ..imageio import save_png
    from . import generator as g

    out = Path(args.out)
    for sub in ("images", "masks", "parts", "params"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = g.class_names(args.variant)
    index = []
    for j in range(args.n):
        i = args.start + j
        p = g.sample_params(args.variant, args.seed, args.split, i)
        img, parts = g.render(p, args.size)
        stem = f"{args.split}_{i:05d}"
        save_png(img, out / "images" / f"{stem}.png")
        save_png(g.disc_mask(p, parts), out / "masks" / f"{stem}.png")
        save_png(parts.astype(np.uint8), out / "parts" / f"{stem}.png")
        (out / "params" / f"{stem}.json").write_text(json.dumps(p))
        index.append({"image": f"images/{stem}.png", "label": p["label"], "label_name": names[p["label"]],
                      "mask": f"masks/{stem}.png", "parts": f"parts/{stem}.png", "params": f"params/{stem}.json"})
    doc = index
    (out / "index.json").write_text(json.dumps(doc, indent=1))
    (out / "README.md").write_text(
        f"# Flower2D {args.variant}, split {args.split}, {args.n} images at {args.size} px (seed {args.seed})\n\n"
        "`index.json` lists, per image: `image`, `label` (class index), `label_name`, `mask` (the "
        "discriminative region, white), `parts` (part map: pixel value 0 background, 1 stem, 2 leaf, 3 petal, "
        "4 centre, 5 pot, 6 background object) and `params` (the generator parameters; "
        "`ic_zoo.flower2d.generator.render(params, size)` "
        "re-renders the image bit-exactly). Paths are relative to this folder.\n")
    print(f"wrote {args.n} images of {args.variant} ({len(names)} classes) to {out}")
    return 0


def cmd_train(args) -> int:
    from .train import train

    card = train(args.variant, args.arch, seed=args.seed, epochs=args.epochs, out=args.out,
                 n_per_class=args.n_per_class)
    print(json.dumps({k: card[k] for k in ("name", "test_accuracy", "train_seconds", "epochs")}))
    return 0


def cmd_evaluate(args) -> int:
    from ..classifiers.flower2d_models import shipped
    from ..session import get_classifier
    from .evaluate import format_stats, interaction_stats

    models = args.model or [k for k, (v, _, _) in shipped().items() if v == args.variant]
    stats = []
    for m in models:
        clf = get_classifier(m, device=args.device)
        variant = getattr(clf, "variant", args.variant)
        stats.append(interaction_stats(clf, variant, n=args.n, size=args.size, dilate=args.dilate,
                                       inpainter=args.inpainter))
        print(f"{m}: done", flush=True)
    print(format_stats(stats))
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_grid(args) -> int:
    """A picture of each variant: flowers on top, their discriminative masks (and part maps) below."""
    import cv2
    import numpy as np

    from ..imageio import save_png
    from . import generator as g

    part_colours = np.array([[235, 235, 235], [70, 130, 60], [40, 90, 30], [220, 60, 60], [250, 200, 40],
                             [150, 90, 50], [120, 120, 200]], np.uint8)  # ... pot, background objects
    blocks = []
    for variant in args.variant or list(g.VARIANTS):
        imgs, masks, parts = [], [], []
        for i in range(args.n):
            p = g.sample_params(variant, 0, "test", args.start + i)
            img, pm = g.render(p, args.size)
            m = g.disc_mask(p, pm)
            shown = (img * 0.25).astype(np.uint8)
            shown[m] = img[m]
            imgs.append(img)
            masks.append(shown)
            parts.append(part_colours[pm])
        rows = [np.concatenate(imgs, 1), np.concatenate(masks, 1), np.concatenate(parts, 1)]
        band = np.full((26, rows[0].shape[1], 3), 255, np.uint8)
        cv2.putText(band, f"{variant}: images / discriminative mask / part map (stem, leaf, petal, centre"
                    + (", pot, objects)" if variant == "parts-5c" else ")"),
                    (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
        blocks.append(np.concatenate([band] + rows, 0))
    save_png(np.concatenate(blocks, 0), args.out)
    print(f"wrote {args.out}")
    return 0


def add_arguments(p) -> None:
    from .generator import SPLITS, VARIANTS
    from .models import ARCHS

    sub = p.add_subparsers(dest="flower2d_command", required=True)
    g = sub.add_parser("generate", help="write images, part maps, discriminative masks and index.json")
    g.add_argument("--variant", default="double-12c", choices=list(VARIANTS))
    g.add_argument("--split", default="test", choices=list(SPLITS))
    g.add_argument("--n", type=int, default=120)
    g.add_argument("--size", type=int, default=128)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--start", type=int, default=0, help="first sample index")
    g.add_argument("--out", required=True)
    g.set_defaults(func=cmd_generate)
    t = sub.add_parser("train", help="train a Flower2D model on the CPU and save it as safetensors + model card")
    t.add_argument("--variant", default="double-12c", choices=list(VARIANTS))
    t.add_argument("--arch", required=True, choices=list(ARCHS))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--n-per-class", type=int, default=1000)
    t.add_argument("--out", default=None, help="folder (default: the package's shipped weights folder)")
    t.set_defaults(func=cmd_train)
    gr_ = sub.add_parser("grid", help="draw a grid of flowers with their masks and part maps (README figure)")
    gr_.add_argument("--variant", action="append", choices=list(VARIANTS))
    gr_.add_argument("--n", type=int, default=8)
    gr_.add_argument("--size", type=int, default=96)
    gr_.add_argument("--start", type=int, default=0)
    gr_.add_argument("--out", default="docs/flower2d_grid.png")
    gr_.set_defaults(func=cmd_grid)
    e = sub.add_parser("evaluate", help="accuracy and the remove / recolour interaction on held-out images")
    e.add_argument("--variant", default="double-12c", choices=list(VARIANTS))
    e.add_argument("--model", "-m", action="append", help="default: every shipped model of the variant")
    e.add_argument("--n", type=int, default=240)
    e.add_argument("--size", type=int, default=128)
    e.add_argument("--dilate", type=int, default=2)
    e.add_argument("--inpainter", default="telea")
    e.add_argument("--device", default=None)
    e.add_argument("--json", default=None)
    e.set_defaults(func=cmd_evaluate)


@register("command", "flower2d", description="Flower2D: generate the ground-truth dataset, train its models")
class Flower2DCommand(Command):
    def add_arguments(self, parser) -> None:
        add_arguments(parser)
