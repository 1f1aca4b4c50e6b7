"""The architecture matrix: what every interactive explainer does on every timm family.

The families come from timm's own registry, not a hand-picked list: one representative per timm module
(the model with the fewest parameters), plus the families issue 32 names that share a module with
others (ViT with register tokens, DeiT distilled, DINOv2, SigLIP, MobileNetV4, CoAtNet, SwinV2, ...).
Each is built with random weights at the smallest input size it accepts (96 px and up) that leaves at least 4 x 4
cells in the CAM layer's map, through the
library's own ``timm:<name>`` path, and for each the record holds:

* the CAM tap: the layer, how its output is read (NCHW, NHWC, tokens: p prefix + h x w grid), whether the
  layout was checked against the model's own ``forward_intermediates``, or the one-sentence refusal;
* every built-in interactive explainer's answer: ``ok`` (a finite map of the input's geometry) or the
  sentence it refuses with;
* Grad-CAM against pytorch-grad-cam's own ``GradCAM`` on the same layer and reshape (max difference);
* the spatial check: the share of the tapped features' change that lands in the quadrant of the input
  that was changed (a layout error, channels read as rows or a transposed grid, moves it elsewhere).

``python benchmarks/arch_matrix.py`` re-picks the families, runs them all and writes
``benchmarks/arch_matrix.json`` and ``benchmarks/arch_matrix.md`` (the README's support table, checked
against the JSON by ``tests/test_readme_tables.py``); ``tests/test_arch_matrix.py`` re-runs the rows.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = (96, 128, 160, 192, 224, 256)
#: families named in issue 32 that share a timm module with others (the registry's pick covers one each)
NAMED = ["resnet18", "convnext_atto", "efficientnet_b0", "regnetx_002", "mobilenetv3_small_050",
         "mobilenetv4_conv_small", "ghostnet_050", "hgnetv2_b0", "vit_tiny_patch16_224",
         "vit_small_patch14_reg4_dinov2", "vit_small_patch14_dinov2", "vit_medium_patch16_reg4_gap_256",
         "vit_base_patch16_siglip_224", "deit_tiny_distilled_patch16_224", "deit3_small_patch16_224",
         "eva02_tiny_patch14_224", "beit_base_patch16_224", "swin_tiny_patch4_window7_224",
         "swinv2_tiny_window8_256", "swinv2_cr_tiny_224", "maxvit_pico_rw_256", "coatnet_nano_rw_224",
         "levit_128s", "efficientformer_l1", "efficientformerv2_s0", "fastvit_t8", "mobilevit_xxs",
         "mobilevitv2_050", "poolformer_s12", "caformer_s18", "pvt_v2_b0", "edgenext_xx_small",
         "tiny_vit_5m_224", "hiera_tiny_224", "mambaout_femto", "cait_xxs24_224"]
#: depth / width overrides that keep the big-only families small (random weights: the layout is what counts)
SHRINK = {"beit_base_patch16_224": {"depth": 2}, "vit_base_patch16_siglip_224": {"depth": 2},
          "vit_medium_patch16_reg4_gap_256": {"depth": 2}}


def param_count(name: str) -> int | None:
    import timm
    import torch

    try:
        with torch.device("meta"):
            m = timm.create_model(name, pretrained=False)
        return int(sum(p.numel() for p in m.parameters()))
    except Exception:  # noqa: BLE001 - some families cannot be built on the meta device
        return None


def pick_families() -> list[dict]:
    """One representative per timm module (fewest parameters; timm's own ``test_*`` models left out), then
    the NAMED families."""
    import timm

    rows, seen = [], set()
    for module in timm.list_modules():
        counts = [(param_count(n), n) for n in timm.list_models(module=module) if not n.startswith("test_")]
        counts = [(c, n) for c, n in counts if c is not None]
        if not counts:
            rows.append({"family": module, "model": None, "why": "no model of this timm module can be built"})
            continue
        c, n = min(counts)
        rows.append({"family": module, "model": n, "params": c})
        seen.add(n)
    for n in NAMED:
        if n not in seen:
            rows.append({"family": _module_of(n), "model": n, "params": param_count(n), "named": True})
    return rows


def _module_of(name: str) -> str:
    import timm

    return timm.models._registry._model_to_module.get(name.split(".")[0], "?")  # the module that registered it


def build(name: str, size: int | None, **extra):
    """``timm:<name>`` with random weights at ``size`` (img_size where timm takes it, else input_size),
    ten classes; on the CPU, from torch seed 0."""
    import torch

    import ic_zoo

    kwargs = {"num_classes": 10, **SHRINK.get(name, {}), **extra}
    torch.manual_seed(0)
    if size is None:
        return ic_zoo.create("classifier", f"timm:{name}", pretrained=False, device="cpu", **kwargs)
    try:
        return ic_zoo.create("classifier", f"timm:{name}", pretrained=False, device="cpu", img_size=size, **kwargs)
    except ic_zoo.InputError as exc:  # a family that takes any size: only the preprocessing's size is set
        if "img_size" not in str(exc):  # (the registry names a factory's TypeError in one sentence)
            raise
        torch.manual_seed(0)
        return ic_zoo.create("classifier", f"timm:{name}", pretrained=False, device="cpu",
                             input_size=(size, size), **kwargs)


def tap_grid(clf) -> tuple[int, int] | None:
    """(h, w) of the CAM tap's map, read as the classifier reads it; None when the CAM family is refused."""
    if not clf.target_layers:
        return None
    with clf.lock:
        run = clf.run(probe_input(clf), clf.target_layers, False)
    t = run.acts[0].detach()
    t = clf.reshape_transform(t) if clf.reshape_transform is not None else t
    return int(t.shape[-2]), int(t.shape[-1])


def smallest_size(name: str):
    """(classifier, size) at the smallest size in SIZES whose build and forward pass work and whose CAM
    map has at least 4 x 4 cells (so the spatial check has quadrants)."""
    import torch

    last = None
    for size in SIZES + (None,):  # None: the model's own size (CrossViT takes 240 only)
        try:
            clf = build(name, size)
            h, w = clf.input_size
            with torch.no_grad():
                clf.forward(torch.zeros(1, 3, h, w))
            grid = tap_grid(clf)
            if grid is not None and min(grid) < 4 and size is not None and size != SIZES[-1]:
                continue
            return clf, size
        except Exception as exc:  # noqa: BLE001 - too small for this family: the next size
            last = exc
    raise RuntimeError(f"{name}: no size in {SIZES} works ({type(last).__name__}: {str(last).splitlines()[0][:120]})")


def interactive_explainers() -> list[str]:
    """The built-in explainers an edit runs at once (cost 'interactive'), by name."""
    from ic_zoo.discovery import list_plugins

    return sorted(s.name for s in list_plugins("explainer")
                  if s.meta.get("cost", "interactive") == "interactive" and s.source == "ic_zoo (built-in)")


def probe_input(clf, seed: int = 0):
    import torch

    h, w = clf.input_size
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, h, w, generator=g)


def quadrant_share(clf, reshape=None) -> float:
    """The share of the tapped map's change (summed over channels, mean per cell) that falls in the
    top-right quadrant when only the input's top-right quadrant is changed: 1.0 for a perfectly local
    layer read right, 0.25 when the change spreads evenly (global mixing), and near 0 when the grid is
    read wrong (transposed: the change lands bottom-left; channels as rows: anywhere)."""
    import torch

    h, w = clf.input_size
    x = probe_input(clf, 1)
    x2 = x.clone()
    g = torch.Generator().manual_seed(2)
    x2[..., : h // 2, w - w // 2:] = torch.randn(1, 3, h // 2, w - w // 2, generator=g)
    rs = reshape or clf.reshape_transform or (lambda t: t)
    acts = []
    for inp in (x, x2):
        with clf.lock:
            run = clf.run(inp, clf.target_layers, False)
            acts.append(rs(run.acts[0].detach()).float())
    d = (acts[1] - acts[0]).abs().sum(1)[0]
    gh, gw = d.shape
    if gh < 2 or gw < 2:
        return float("nan")
    q = [d[: gh // 2, gw - gw // 2:], d[: gh // 2, : gw // 2], d[gh - gh // 2:, : gw // 2], d[gh - gh // 2:, gw - gw // 2:]]
    means = [float(t.mean()) for t in q]
    total = sum(means)
    return means[0] / total if total > 0 else float("nan")


def gradcam_vs_library(clf, x, classes, reshape=None) -> float:
    """Max |ours - pytorch-grad-cam's GradCAM| on the same layer (``reshape``: the library's reshape,
    by default the classifier's), both min-max normalised as the library returns them."""
    import numpy as np
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import ic_zoo

    ours = ic_zoo.instance("explainer", "gradcam").explain(clf, x, classes).normalized
    with clf.unfrozen():
        with GradCAM(model=clf.logits_module(), target_layers=clf.target_layers,
                     reshape_transform=reshape if reshape is not None else clf.reshape_transform) as cam:
            lib = np.stack([cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0] for c in classes])
    return float(np.abs(ours - lib).max())


def one_sentence(text: str) -> bool:
    t = text.strip()
    return bool(t) and "\n" not in t and "Traceback" not in t and len(t) < 400


def answers(clf, x, classes, names) -> dict:
    """Each explainer's answer: 'ok' (finite maps of the input's geometry), its refusal sentence, or
    'error: ...' (which the tests forbid)."""
    import numpy as np

    import ic_zoo

    out = {}
    h, w = clf.input_size
    for name in names:
        exp = ic_zoo.instance("explainer", name)
        why = exp.supports(clf)
        if why:
            out[name] = why
            continue
        try:
            res = exp.explain(clf, x, classes)
            ok = res.raw.shape == (len(classes), h, w) and np.isfinite(res.raw).all() and np.isfinite(res.normalized).all()
            out[name] = "ok" if ok else f"error: maps of shape {res.raw.shape}, finite {bool(np.isfinite(res.raw).all())}"
        except Exception as exc:  # noqa: BLE001 - recorded; the tests forbid any
            out[name] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return out


def run_row(name: str, size: int | None, names: list[str]) -> dict:
    return {"model": name, "size": size, **row_for(build(name, size), names)}


def row_for(clf, names: list[str]) -> dict:
    """One classifier's record (any backend): input size, layout or refusal, each explainer's answer,
    Grad-CAM against the library, the spatial check."""
    x = probe_input(clf)
    classes = [0, min(3, clf.num_classes - 1)]
    row = {"input": list(clf.input_size), "family_kind": clf.family,
           "layout": getattr(clf, "tap_layout", ""), "refusal": clf.cam_refusal, "answers": answers(clf, x, classes, names)}
    if clf.target_layers:
        row["gradcam_vs_library"] = gradcam_vs_library(clf, x, classes)
        row["quadrant_share"] = quadrant_share(clf)
    return row


def is_hf(row: dict) -> bool:
    return str(row.get("model", "")).startswith(("hf-hub:", "clip:"))


def format_table(doc: dict) -> str:
    """Family x explainer: which interactive explainers give a map on each timm family, and why the
    others refuse (the first refusal of each kind)."""
    cam_family = [n for n in doc["explainers"] if n not in ("cam", "rollout", "chefer", "legrad", "vebi", "vebi-nofix",
                                                             "inputxgradient")]
    n_hf = sum(is_hf(r) for r in doc["rows"])
    lines = [f"Random-weight builds of {len(doc['rows']) - n_hf} timm architectures ({doc['timm']}), one per timm "
             f"module plus the named families, and {n_hf} Hugging Face ViT-family and CLIP models; the CAM family "
             f"is {', '.join(cam_family)}.", "",
             "| family | model (input) | CAM layer read as | CAM family | true CAM | rollout | Chefer | LeGrad |",
             "|---|---|---|---|---|---|---|---|"]

    def mark(ans: str) -> str:
        return "yes" if ans == "ok" else "no"

    for r in sorted(doc["rows"], key=lambda r: (r["family"], r["model"] or "")):
        if r.get("model") is None or "answers" not in r:
            lines.append(f"| {r['family']} | {r.get('model') or '-'} | not built: {r.get('why', '')} | | | | | |")
            continue
        a = r["answers"]
        cams = [a[n] == "ok" for n in cam_family]
        cam_cell = "yes" if all(cams) else ("no" if not any(cams) else f"{sum(cams)} of {len(cams)}")
        layout = r["layout"].split(" (")[0] if r["layout"] else "refused: layout unknown"
        lines.append(f"| {r['family']} | {r['model']} ({r['input'][0]}x{r['input'][1]}) | {layout} | {cam_cell} | "
                     f"{mark(a['cam'])} | {mark(a['rollout'])} | {mark(a['chefer'])} | {mark(a['legrad'])} |")
    reasons: dict[str, str] = {}
    for r in doc["rows"]:
        for n, ans in r.get("answers", {}).items():
            if ans != "ok" and not ans.startswith("error") and n in ("cam", "rollout", "chefer", "legrad"):
                reasons.setdefault(n, ans.replace(r["model"], "<model>").replace(f"timm:{r['model']}", "<model>"))
    lines += ["", "Why a 'no' (the first refusal of each, as the library says it):", ""]
    lines += [f"- {n}: {reasons[n]}" for n in ("cam", "rollout", "chefer", "legrad") if n in reasons]
    return "\n".join(lines)


def main(argv=None) -> int:
    import timm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "arch_matrix.json"))
    ap.add_argument("--only", nargs="*", help="models to run (default: the families timm's registry gives)")
    ap.add_argument("--update", nargs="*", help="re-run these rows (models, or 'all') of the JSON at --out in place")
    args = ap.parse_args(argv)
    names = interactive_explainers()
    if args.update:
        old = json.loads(Path(args.out).read_text())["rows"]
        picked = [{k: r[k] for k in ("family", "model", "params", "named") if k in r} if (
            "all" in args.update or r.get("model") in args.update) else r for r in old]
    else:
        picked = [{"family": _module_of(n), "model": n} for n in args.only] if args.only else pick_families()
    rows, t0 = [], time.time()
    for p in picked:
        if p.get("model") is None or "answers" in p or "why" in p or is_hf(p):  # kept as it was (--update)
            rows.append(p)
            continue
        try:
            _, size = smallest_size(p["model"])
            row = {**p, **run_row(p["model"], size, names)}
        except Exception as exc:  # noqa: BLE001 - recorded as not built, with the reason
            row = {**p, "model": p["model"], "why": str(exc).splitlines()[0][:200]}
        rows.append(row)
        print(f"{row['family']:24s} {row['model']:40s} {row.get('layout') or row.get('refusal') or row.get('why')}",
              flush=True)
    if not args.only:  # the Hugging Face ViT family and CLIP, from tiny configs in a temporary hub cache
        from arch_matrix_hf import hf_rows

        rows = [r for r in rows if not is_hf(r)] + hf_rows(names)
    doc = {"timm": f"timm {timm.__version__}", "explainers": names, "rows": rows,
           "seconds": round(time.time() - t0, 1)}
    Path(args.out).write_text(json.dumps(doc, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    Path(args.out).with_suffix(".md").write_text(format_table(doc) + "\n")
    print(format_table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
