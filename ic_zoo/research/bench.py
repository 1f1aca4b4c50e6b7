"""``python -m ic_zoo bench``: what one edit costs, next to its floor and next to the usual way.

Per model, on the same edited image, median over interleaved repeats:

* ``forward``: one bare forward pass (inference mode): the floor, since the original is cached;
* ``edit``: what an edit costs this model in a Session: preprocess + one tapped forward + top-k +
  top-k class maps;
* ``usual``: the usual way: a forward for the top-k, then one pytorch-grad-cam call per class (each a
  full forward and a full backward);
* ``max |diff|``: the largest difference between our maps and the library's.

The inpainting of the stroke is timed once per edit and added to both totals. Ratios are taken
within one run (the machines are noisy: compare ratios, not absolute times across runs).
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..command import Command
from ..errors import IcZooError
from ..registry import register
from .outputs import write_outputs

DEFAULT_MODELS = ("squeezenet1_1", "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k")
TARGET_EDIT_VS_FORWARD = 1.5
TARGET_SPEEDUP = 8.0


def bench_image(size: int) -> np.ndarray:
    """A real photo (scikit-image's ``chelsea``, public domain) at size x size, or a synthetic scene."""
    import cv2

    try:
        from skimage import data

        img = data.chelsea()
    except Exception:
        yy, xx = np.mgrid[0:size, 0:size]
        img = np.stack([(xx * 255 // size), (yy * 255 // size), ((xx + yy) * 127 // size)], -1).astype(np.uint8)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def stroke_mask(size: int, i: int) -> np.ndarray:
    """A brush-like stroke (about 6% of the image) that moves a little every repeat."""
    import cv2

    m = np.zeros((size, size), np.uint8)
    y = size // 2 + (i % 5 - 2) * size // 40
    cv2.line(m, (size // 3, y), (2 * size // 3, y + size // 10), 255, max(3, size // 12))
    return m > 0


@dataclass
class ModelBench:
    forward: list = field(default_factory=list)
    edit: list = field(default_factory=list)
    usual: list = field(default_factory=list)
    max_diff: float = 0.0

    def summary(self) -> dict:
        f, e, u = (statistics.median(v) if v else float("nan") for v in (self.forward, self.edit, self.usual))
        return {"forward_ms": 1000 * f, "edit_ms": 1000 * e, "usual_ms": 1000 * u,
                "edit_over_forward": e / f, "usual_over_edit": u / e, "max_abs_diff": self.max_diff}


def run_bench(models=DEFAULT_MODELS, explainer: str = "gradcam", size: int = 224, repeats: int = 7,
              pretrained: bool = False, inpainter: str = "telea", k: int = 5, device: str | None = None,
              usual_repeats: int | None = None, log=None) -> dict:
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ..explainers.cam_methods import FAST_METHODS
    from ..session import Session, get_classifier, get_explainer

    say = log or (lambda *_: None)
    if explainer not in FAST_METHODS:
        raise ValueError(f"bench compares interactive pytorch-grad-cam methods ({', '.join(FAST_METHODS)})")
    import pytorch_grad_cam

    lib_cls = getattr(pytorch_grad_cam, FAST_METHODS[explainer][0])
    img = bench_image(size)
    models = list(models)
    clfs = {m: get_classifier(m, pretrained=pretrained, device=device) for m in models}
    sess = Session(img, pretrained=pretrained, device=device, k=k)
    sess.evaluate(models, explainer=explainer)  # warm-up; caches the original as the app does
    stats = {m: ModelBench() for m in models}
    inpaint_times, edit_totals, usual_totals, forward_totals = [], [], [], []
    usual_repeats = usual_repeats or max(3, repeats // 2)

    def sync():
        if any(c.device.type == "cuda" for c in clfs.values()):
            torch.cuda.synchronize()

    for r in range(repeats):
        say(f"repeat {r + 1}/{repeats}")
        order = ["forward", "edit", "usual"] if r % 2 == 0 else ["usual", "edit", "forward"]
        for what in order:
            if what == "edit":
                sess.reset()
                t0 = time.perf_counter()
                sess.apply(stroke_mask(size, r), inpainter)
                t_inp = time.perf_counter() - t0
                res = sess.evaluate(models, explainer=explainer, k=k)
                sync()
                total = time.perf_counter() - t0
                inpaint_times.append(t_inp)
                edit_totals.append(total)
                for m in models:
                    stats[m].edit.append(res.models[m].timings["modified"] + res.models[m].timings["maps"])
            elif what == "forward":
                xs = {m: clfs[m].preprocess(_edited(img, size, r, inpainter)) for m in models}
                tot = 0.0
                for m in models:
                    sync()
                    t0 = time.perf_counter()
                    clfs[m].predict_tensor(xs[m])
                    sync()
                    dt = time.perf_counter() - t0
                    stats[m].forward.append(dt)
                    tot += dt
                forward_totals.append(tot)
            elif r < usual_repeats:
                edited = _edited(img, size, r, inpainter)
                t_all = time.perf_counter()
                for m in models:
                    clf = clfs[m]
                    t0 = time.perf_counter()
                    x = clf.preprocess(edited)
                    top = [int(c) for c in clf.predict_tensor(x).order[:k]]
                    with clf.unfrozen():  # the usual way: parameters require grad, full backward per class
                        cam = lib_cls(model=clf.logits_module(), target_layers=clf.target_layers,
                                      reshape_transform=clf.reshape_transform)
                        try:
                            ref = np.stack([cam(x, [ClassifierOutputTarget(c)])[0] for c in top])
                        finally:
                            cam.activations_and_grads.release()
                    sync()
                    stats[m].usual.append(time.perf_counter() - t0)
                    ours = get_explainer(explainer).explain(clf, x, top).normalized  # the fast path, same x
                    stats[m].max_diff = max(stats[m].max_diff, float(np.abs(ours - ref).max()))
                usual_totals.append(time.perf_counter() - t_all)

    per_model = {m: stats[m].summary() for m in models}
    inp = statistics.median(inpaint_times)
    fwd_sum = sum(per_model[m]["forward_ms"] for m in models) / 1000
    edit_total = statistics.median(edit_totals)
    usual_total = inp + sum(per_model[m]["usual_ms"] for m in models) / 1000
    return {
        "config": {"models": models, "explainer": explainer, "size": size, "repeats": repeats,
                   "pretrained": pretrained, "inpainter": inpainter, "k": k},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                    "device": str(next(iter(clfs.values())).device),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "models": per_model,
        "totals": {"inpaint_ms": 1000 * inp, "sum_forward_ms": 1000 * fwd_sum, "edit_ms": 1000 * edit_total,
                   "usual_ms": 1000 * usual_total, "edit_over_sum_forward": edit_total / fwd_sum,
                   "usual_over_edit": usual_total / edit_total,
                   "max_abs_diff": max(per_model[m]["max_abs_diff"] for m in models)},
        "targets": {"edit_over_sum_forward_max": TARGET_EDIT_VS_FORWARD, "usual_over_edit_min": TARGET_SPEEDUP},
    }


_EDIT_CACHE: dict = {}


def _edited(img, size, r, inpainter):
    key = (size, r, inpainter)
    if key not in _EDIT_CACHE:
        from ..session import get_inpainter

        _EDIT_CACHE[key] = get_inpainter(inpainter).inpaint(img, stroke_mask(size, r))
    return _EDIT_CACHE[key]


def format_table(res: dict) -> str:
    rows = [("model", "forward ms", "edit ms", "usual ms", "edit/forward", "usual/edit", "max |diff|")]
    for m, s in res["models"].items():
        rows.append((m, f"{s['forward_ms']:.1f}", f"{s['edit_ms']:.1f}", f"{s['usual_ms']:.1f}",
                     f"{s['edit_over_forward']:.2f}x", f"{s['usual_over_edit']:.1f}x", f"{s['max_abs_diff']:.1e}"))
    t = res["totals"]
    rows.append(("ALL (+ inpaint %.1f ms)" % t["inpaint_ms"], f"{t['sum_forward_ms']:.1f}", f"{t['edit_ms']:.1f}",
                 f"{t['usual_ms']:.1f}", f"{t['edit_over_sum_forward']:.2f}x", f"{t['usual_over_edit']:.1f}x",
                 f"{t['max_abs_diff']:.1e}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    ok_ratio = t["edit_over_sum_forward"] <= res["targets"]["edit_over_sum_forward_max"]
    ok_speed = t["usual_over_edit"] >= res["targets"]["usual_over_edit_min"]
    lines.append("")
    lines.append(f"edit / sum of bare forwards = {t['edit_over_sum_forward']:.2f}x "
                 f"(target <= {res['targets']['edit_over_sum_forward_max']}x: {'met' if ok_ratio else 'MISSED'}); "
                 f"usual / edit = {t['usual_over_edit']:.1f}x "
                 f"(target >= {res['targets']['usual_over_edit_min']}x: {'met' if ok_speed else 'MISSED'}); "
                 f"maps equal to the library's within {t['max_abs_diff']:.1e}")
    cfg, mach = res["config"], res["machine"]
    lines.append(f"{cfg['explainer']}, {cfg['size']} px, top-{cfg['k']}, {cfg['repeats']} repeats, "
                 f"{'pretrained' if cfg['pretrained'] else 'random'} weights, inpainter {cfg['inpainter']}; "
                 f"torch {mach['torch']} on {mach['gpu'] or mach['device']} ({mach['threads']} threads)")
    return "\n".join(lines)


def format_markdown(res: dict) -> str:
    """The README's table, generated from a result (never typed)."""
    ms = lambda v: f"{v:.1f} ms"  # noqa: E731
    lines = ["| model | bare forward | one edit | usual way | edit / forward | usual / edit | max \\|diff\\| |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m, s in res["models"].items():
        lines.append(f"| {m} | {ms(s['forward_ms'])} | {ms(s['edit_ms'])} | {ms(s['usual_ms'])} | "
                     f"{s['edit_over_forward']:.2f}x | {s['usual_over_edit']:.1f}x | {s['max_abs_diff']:.2g} |")
    t = res["totals"]
    lines.append(f"| **all {len(res['models'])} + inpainting ({t['inpaint_ms']:.1f} ms)** | **{ms(t['sum_forward_ms'])}** | "
                 f"**{ms(t['edit_ms'])}** | **{ms(t['usual_ms'])}** | **{t['edit_over_sum_forward']:.2f}x** | "
                 f"**{t['usual_over_edit']:.1f}x** | **{t['max_abs_diff']:.2g}** |")
    cfg, mach = res["config"], res["machine"]
    lines.append("")
    lines.append(f"{cfg['explainer']}, {cfg['size']} px input image, top-{cfg['k']} maps, {cfg['repeats']} repeats, "
                 f"{'pretrained' if cfg['pretrained'] else 'random'} weights, inpainter {cfg['inpainter']}; "
                 f"torch {mach['torch']} on {mach['gpu'] or mach['device']} ({mach['threads']} threads).")
    return "\n".join(lines) + "\n"


def cmd_bench(args) -> int:
    import sys
    from pathlib import Path

    from ..zoo import imagenet_default, resolve_model

    if args.from_json:  # regenerate the table (and the README's markdown) from a saved result
        try:
            res = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as exc:
            raise IcZooError(f"{args.from_json} is not a bench result ({exc}).") from None
        write_outputs(res, format_table(res), format_markdown, markdown_path=args.markdown)
        return 0
    if args.model:
        args.model = [resolve_model(m, pretrained=not args.no_pretrained) for m in args.model]
    elif not args.no_pretrained:
        args.model = imagenet_default()

    res = run_bench(models=args.model or DEFAULT_MODELS, explainer=args.explainer, size=args.size,
                    repeats=args.repeats, pretrained=not args.no_pretrained, inpainter=args.inpainter,
                    device=args.device, log=lambda s: print(s, file=sys.stderr, flush=True))
    write_outputs(res, format_table(res), format_markdown, json_path=args.json, markdown_path=args.markdown)
    return 0


@register("command", "bench", description="edit cost vs bare forward vs the usual per-class Grad-CAM calls")
class BenchCommand(Command):
    """``python -m ic_zoo bench``: a command plugin like its sibling ``latency`` (issue 37: it was a
    subcommand hard-coded in the CLI)."""

    def add_arguments(self, p) -> None:
        p.add_argument("--model", "-m", action="append", help="classifier key (repeatable); see `list`")
        p.add_argument("--explainer", default="gradcam")
        p.add_argument("--size", type=int, default=224)
        p.add_argument("--repeats", type=int, default=7)
        p.add_argument("--inpainter", default="telea")
        p.add_argument("--no-pretrained", action="store_true", help="random weights (tests, benchmarks)")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        p.add_argument("--json", default=None, help="write the results here")
        p.add_argument("--markdown", default=None, help="write the README's table (markdown) here")
        p.add_argument("--from-json", default=None, help="no run: print (and --markdown) a saved result")
        p.set_defaults(func=cmd_bench)
