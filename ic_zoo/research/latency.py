"""``python -m ic_zoo latency``: what each explainer costs, per class, per model (TorchCAM publishes the
same kind of table).

    python -m ic_zoo latency --explainers all --json benchmarks/latency_cpu.json --markdown benchmarks/latency_cpu.md
    python -m ic_zoo latency --from-json benchmarks/latency_cpu.json --markdown benchmarks/latency_cpu.md

For each model (default: SqueezeNet 1.1, ResNet-50, ViT-S and the Flower2D trio) the image is edited
once (a stroke inpainted with Telea) and every explainer maps the modified image's top-1 class; the
column is what the map costs on top of classifying. An interactive explainer reads the edit's own
tapped forward pass, so its time is that of ``from_run`` (the backward sweep from the logit to the
tapped layer, and the map), median of ``--repeats``; a slow one runs its own passes, so its time is the
call's minus one bare forward pass, median of ``--slow-repeats``. The ratio is to
Grad-CAM on the same model in the same run. Occlusion starts each call with an empty inpainting cache
(every stroke is a new image) and records its forward passes. ImageNet models take random weights with
``--no-pretrained`` (they cost the same); the Flower2D models are always their shipped weights.
``--skip model:explainer`` leaves a cell out (it is listed as not run).
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ..command import Command
from ..registry import register
from .outputs import write_outputs

DEFAULT_MODELS = ("squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k",
                  "flower2d/squeezenet", "flower2d/resnet", "flower2d/vit")


def _image_for(name: str, size: int) -> np.ndarray:
    from .bench import bench_image

    if name.startswith("flower2d"):
        from ..flower2d import generator as g

        prefix = name.split("/")[0]
        variant = next((v for v, pre in g.MODEL_PREFIX.items() if pre == prefix), "double-12c")
        img, _ = g.render(g.sample_params(variant, 0, "test", 7001), 128)
        return img
    return bench_image(size)


def _median_s(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(models=DEFAULT_MODELS, explainers=None, repeats: int = 5, slow_repeats: int = 1, size: int = 224,
        pretrained: bool = True, device=None, skip=(), log=print) -> dict:
    import torch

    import ic_zoo
    from .bench import stroke_mask
    from ..explainers import occlusion as O
    from ..session import get_inpainter

    names = [s.name for s in ic_zoo.list_plugins("explainer") if not s.unavailable_reason()]
    if explainers and list(explainers) != ["all"]:
        names = [n for n in explainers]
    skip = set(skip)
    cells = []
    for m in models:
        clf = ic_zoo.create("classifier", m, pretrained=pretrained or m.startswith("flower2d"), device=device)
        img = _image_for(m, size)
        mod = get_inpainter("telea").inpaint(img, stroke_mask(img.shape[0], 0))
        x = clf.preprocess(mod)
        cls = clf.predict(mod).top1
        with clf.lock, torch.inference_mode():
            for b in (1, 8, 16, 32):  # warm up the batch sizes occlusion uses
                clf.forward(x.repeat(b, 1, 1, 1))
            fwd = _median_s(lambda: clf.forward(x), max(repeats, 5))
        log(f"{m}: forward {1000 * fwd:.1f} ms")
        for e in names:
            row = {"model": m, "explainer": e, "forward_ms": 1000 * fwd}
            if f"{m}:{e}" in skip:
                cells.append({**row, "status": "not run (--skip)"})
                continue
            ex = ic_zoo.instance("explainer", e)
            why = ex.supports(clf)
            if why:
                cells.append({**row, "status": f"n/a: {why}"})
                continue
            slow = ex.cost == "slow"
            spec = ex.taps(clf) if not slow else None
            if spec is not None:  # an interactive explainer: time its map from the edit's own (tapped) pass
                def one() -> float:
                    with clf.lock:
                        r = clf.run(x, spec.layers, spec.grad, spec.use_input, during=spec.during)
                        t = time.perf_counter()
                        ex.from_run(clf, r, x, [cls])
                        return time.perf_counter() - t

                one()  # warm-up
                t = statistics.median(one() for _ in range(repeats))
                row.update(status="ok", ms=1000 * t, total_ms=1000 * (t + fwd), cost=ex.cost)
            else:  # its own passes: the call's time beyond one forward pass
                def call():
                    if e.startswith("occlusion"):
                        O._CACHE.data.clear()  # a new stroke is a new image: nothing inpainted yet
                    ex.explain(clf, x, [cls])

                call()  # warm-up: imports, first-call allocations
                t = _median_s(call, slow_repeats if slow else repeats)
                row.update(status="ok", ms=max(0.0, 1000 * (t - fwd)), total_ms=1000 * t, cost=ex.cost)
            if ex.last_passes is not None:
                row["passes"] = ex.last_passes
            cells.append(row)
            log(f"  {e}: {row['ms']:.1f} ms per class beyond the forward pass")
    for c in cells:
        ref = next((d for d in cells if d["model"] == c["model"] and d["explainer"] == "gradcam" and "ms" in d), None)
        if "ms" in c and ref:
            c["vs_gradcam"] = c["ms"] / max(ref["ms"], 1e-3)
    return {"models": list(models), "explainers": names, "cells": cells, "repeats": repeats,
            "slow_repeats": slow_repeats, "size": size, "pretrained": pretrained,
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "device": str(clf.device) if models else "",
                        "cpu": platform.processor() or platform.machine()}}


def _fmt(c: dict) -> str:
    if "ms" not in c:
        return "n/a" if c["status"].startswith("n/a") else "not run"
    ms = c["ms"]
    v = f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"
    r = c.get("vs_gradcam")
    if not r or c["explainer"] == "gradcam":
        return v
    return v + (f" ({r:.1f}x)" if r < 10 else f" ({r:,.0f}x)")


def format_table(doc: dict) -> str:
    models, names = doc["models"], doc["explainers"]
    cell = {(c["model"], c["explainer"]): c for c in doc["cells"]}
    w = max(len(n) for n in names) + 2
    lines = [f"{'explainer':<{w}}" + "".join(f"{m.split('.')[0][:22]:>24}" for m in models)]
    lines.append("-" * len(lines[0]))
    for e in names:
        lines.append(f"{e:<{w}}" + "".join(f"{_fmt(cell.get((m, e), {'status': 'not run'})):>24}" for m in models))
    return "\n".join(lines)


def format_markdown(doc: dict) -> str:
    models, names = doc["models"], doc["explainers"]
    cell = {(c["model"], c["explainer"]): c for c in doc["cells"]}
    fwd = {c["model"]: c["forward_ms"] for c in doc["cells"]}
    out = ["| explainer | " + " | ".join(f"`{m}`" for m in models) + " |", "|---|" + "---:|" * len(models),
           "| *(forward pass, ms)* | " + " | ".join(f"*{fwd.get(m, 0):.1f}*" for m in models) + " |"]
    for e in names:
        out.append(f"| {e} | " + " | ".join(_fmt(cell.get((m, e), {"status": "not run"})) for m in models) + " |")
    return "\n".join(out) + "\n"


def cmd_latency(args) -> int:
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
    else:
        doc = run(models=args.model or DEFAULT_MODELS, explainers=args.explainers, repeats=args.repeats,
                  slow_repeats=args.slow_repeats, size=args.size, pretrained=not args.no_pretrained,
                  device=args.device, skip=args.skip or (), log=lambda s: print(s, file=sys.stderr, flush=True))
    print("ms per class beyond the forward pass (ratio to Grad-CAM)")
    write_outputs(doc, format_table(doc), format_markdown, json_path=None if args.from_json else args.json,
                  markdown_path=args.markdown)
    return 0


@register("command", "latency", description="what each explainer costs per class on each model (a table + JSON)")
class LatencyCommand(Command):
    def add_arguments(self, p) -> None:
        p.add_argument("--explainers", nargs="+", default=["all"], help="names, or all (default)")
        p.add_argument("--model", "-m", action="append", help="classifier (repeatable; default: SqueezeNet 1.1, "
                       "ResNet-50, ViT-S and the Flower2D trio)")
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--slow-repeats", type=int, default=1, help="repeats of slow explainers")
        p.add_argument("--size", type=int, default=224, help="photo size for the ImageNet models")
        p.add_argument("--skip", action="append", help="model:explainer to leave out (repeatable)")
        p.add_argument("--no-pretrained", action="store_true", help="random weights for the ImageNet models")
        p.add_argument("--device", default=None)
        p.add_argument("--json", default=None)
        p.add_argument("--markdown", default=None)
        p.add_argument("--from-json", default=None, help="no run: print (and --markdown) a saved result")
        p.set_defaults(func=cmd_latency)
