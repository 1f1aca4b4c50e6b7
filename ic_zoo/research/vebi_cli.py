"""``python -m ic_zoo vebi fit|show``: fit and inspect VEBI's per-class relevant features (the relevance
files ``ic_zoo.explainers.vebi`` reads)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..command import Command
from ..registry import register

def cmd_vebi_fit(args) -> int:
    import numpy as np

    from ..explainers import vebi as V
    from .explain_bench import SIZE
    from ..flower2d import generator as g
    from ..imageio import load_image
    from ..session import get_classifier

    clf = get_classifier(args.model)
    if args.images:
        paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        images = [load_image(p) for p in paths]
    elif hasattr(clf, "variant"):
        images, _, _ = g.dataset(clf.variant, "train", args.n_per_class * clf.num_classes, SIZE, seed=0,
                                 with_parts=False)
    else:
        print("error: give --images DIR for a model that is not a Flower2D model", file=sys.stderr)
        return 2
    rel = V.fit_relevance(clf, np.asarray(images) if not args.images else images, mu=args.mu, log=print)
    out = Path(args.out) if args.out else V.relevance_path(clf)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel.save(out)
    print(f"wrote {V._sibling(out, '.json')} and {V._sibling(out, '.safetensors')}")
    return 0


def cmd_vebi_show(args) -> int:
    from ..explainers import vebi as V
    from ..session import get_classifier

    clf = get_classifier(args.model)
    rel = V.load_relevance(clf)
    if rel is None:
        print(f"error: no relevance file for {args.model}; run python -m ic_zoo vebi fit --model {args.model}",
              file=sys.stderr)
        return 2
    for c in ([args.cls] if args.cls is not None else range(clf.num_classes)):
        feats = rel.top_features(c)
        desc = "; ".join(f"{V.describe_feature(rel, f)} (w={rel.W[f, c]:.2f})" for f in feats)
        print(f"{c:3d} {clf.labels[c]}: {int((rel.W[:, c] > 0).sum())} relevant features; top: {desc}")
    return 0


def add_vebi_args(p) -> None:
    sub = p.add_subparsers(dest="vebi_command", required=True)
    f = sub.add_parser("fit", help="fit and save the per-class relevant features of a model")
    f.add_argument("--model", "-m", required=True)
    f.add_argument("--mu", type=float, default=5.0)
    f.add_argument("--n-per-class", type=int, default=200, help="Flower2D training images per class")
    f.add_argument("--images", default=None, help="a folder of images (labels: the model's predictions)")
    f.add_argument("--out", default=None)
    f.set_defaults(func=cmd_vebi_fit)
    s = sub.add_parser("show", help="print each class's relevant features")
    s.add_argument("--model", "-m", required=True)
    s.add_argument("--class", dest="cls", type=int, default=None)
    s.set_defaults(func=cmd_vebi_show)


@register("command", "vebi", description="VEBI: fit or show a model's relevant features")
class VebiCommand(Command):
    def add_arguments(self, parser) -> None:
        add_vebi_args(parser)
