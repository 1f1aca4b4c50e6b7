"""Which map tells the truth? Scoring every explainer against Flower2D's ground truth.

``python -m ic_zoo explain-bench [--variants ...] [--models ...] [--explainers ...] [--n N] [--json OUT] [--quick]``
runs both protocols (``--protocol all``, the default; every explainer, 3 seeds x 20 images per model, in
about 14 minutes on 2 cores): the region protocol below and FunnyBirds' part-level scores
(``explain_parts``) on the first seed's images, read from the same maps. ``--protocol regions`` or
``--protocol parts`` runs one.

For each variant x shipped model, on held-out test images that the model classifies correctly *and*
that pass the recolour test (recolouring the discriminative parts to another class's colours makes the
model answer that class, so the designed cue is what it uses), every explainer's map of the true class
is scored against the discriminative mask M:

* top-|M| IoU: keep the |M| hottest pixels (threshold-free, area-matched);
* mean IoU over thresholds 0.05 ... 0.95 of the min-max-normalised map;
* pointing game: is the hottest pixel inside M;
* energy in mask: share of the map's mass inside M;
* deletion AUC: inpaint (Telea) the hottest 0, 1, 2, 5, 10, 20, 30 % of pixels and average p(true class)
  over those steps (lower: the map found what matters sooner).

Controls: the mask itself (``gt``), a smooth random map (``random``) and a centred Gaussian (``centre``).
Per model, part-removal selectivity: the ROC-AUC with which the probability drop separates removing a
discriminative part from removing another part, exact (re-rendered) and by inpainting. Three disjoint image
sets (seeds) give the mean and spread.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..analyses.metrics import THRESHOLDS, _norm, energy, mean_iou, pointing, roc_auc, top_m_iou  # noqa: F401
from ..analyses.trust import FRACTIONS
from ..command import Command
from ..registry import register
from . import explain_parts
from .scoring import (ALL_EXPLAINERS, CONTROLS, SIZE, control_map, deletion_auc,  # noqa: F401 (its names too)
                      select_images)

#: the fast occlusion and its reference: when both run, their agreement is scored too
OCCLUSION_PAIR = ("occlusion", "occlusion-exhaustive")
QUICK_EXPLAINERS = ("cam", "gradcam", "vebi", "occlusion")
VARIANTS = ("double-12c", "single-6c")  # the default run, its published numbers comparable across rounds
#: every variant explain-bench runs: parts-5c (FunnyBirds' structure) on request, with its own tables
CHOICES = VARIANTS + ("parts-5c",)
TARGETS = {"double-12c": (0.75, 0.95), "single-6c": (0.65, 0.90)}  # (top-|M| IoU, pointing)
PROTOTYPE = {"double-12c": (0.646, 0.98), "single-6c": (0.574, 0.833)}  # VEBI-style without the stride fix


# -- the run -------------------------------------------------------------------------------------------
def part_selectivity(clf, samples, fill) -> dict:
    """Probability drop when each part is removed, exactly or by inpainting (dilated 1 px, never onto
    discriminative pixels of another part); ROC-AUC of discriminative vs other removals."""
    import cv2

    from ..flower2d import generator as g

    k = np.ones((3, 3), np.uint8)
    drops = {"exact": {}, "inpaint": {}}
    pos = {"exact": [], "inpaint": []}
    neg = {"exact": [], "inpaint": []}
    for p, img, parts in samples:
        y = p["label"]
        p0 = float(clf.predict(img).probs[y])
        disc = g.disc_mask(p, parts)
        for part in g.removable(p["variant"]):
            where = g.part_mask(parts, part)
            if where.sum() < 4:
                continue
            exact, _ = g.render(p, SIZE, remove=[part])
            m = cv2.dilate(where.astype(np.uint8), k) > 0
            if part not in p["disc_parts"]:
                m &= ~disc
            for how, im in (("exact", exact), ("inpaint", fill.inpaint(img, m))):
                d = p0 - float(clf.predict(im).probs[y])
                drops[how].setdefault(part, []).append(d)
                (pos if part in p["disc_parts"] else neg)[how].append(d)
    return {"selectivity_exact": roc_auc(pos["exact"], neg["exact"]),
            "selectivity_inpaint": roc_auc(pos["inpaint"], neg["inpaint"]),
            "mean_drop": {how: {part: float(np.mean(v)) for part, v in d.items()} for how, d in drops.items()}}


def run(variants=VARIANTS, models=None, explainers=None, n: int = 20, seeds: int = 3, quick: bool = False,
        figure: str | None = None, log=print, parts: int | None = None, jobs: int = 1) -> dict:
    """Score every explainer on every shipped model of each variant. The models mostly get the same
    images right, so the inpaintings (occlusion's superpixels, LIME's subsets: 3 scales + the coarse
    level per image) are kept for the whole variant and shared by its models. ``parts``: also run the
    part-level protocol on the first ``parts`` images of the first seed (``explain_parts``), which reads
    the maps of the true class made here instead of explaining those images again. ``jobs`` > 1: the
    variants, which share nothing, run side by side in that many processes, the cores split between
    them (each logs to stderr itself); the same rows as one process gives, in less time."""
    t_start = time.perf_counter()
    variants = list(variants)
    jobs = max(1, min(int(jobs), len(variants)))
    args = (models, explainers, n, seeds, quick, parts or 0)
    if jobs == 1:
        doc, fig_data = _run_variants(variants, *args, log=log)
    else:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            done = list(ex.map(_variant_job, [([v], *args, threads) for v in variants]))
        doc, fig_data = _merge_variant_runs([d for d, _ in done]), {k: v for _, f in done for k, v in f.items()}
        doc["machine"].update(jobs=jobs)
    doc["seconds"] = round(time.perf_counter() - t_start, 1)
    if figure:
        draw_figure(fig_data, figure)
        doc["figure"] = figure
    return doc


def _run_variants(variants, models, explainers, n, seeds, quick, parts_n, log=print) -> tuple[dict, dict]:
    from ..explainers.occlusion import cache_size

    with cache_size(8 * n * seeds + 16):
        return _run(variants, models, explainers, n, seeds, quick, log, parts_n)


def _variant_job(job) -> tuple[dict, dict]:
    """One process's share of a ``jobs`` > 1 run: its variants on ``threads`` cores (torch's and the
    inpainters' threads)."""
    import torch

    from ..inpainters import _base

    *args, threads = job
    torch.set_num_threads(threads)
    _base.THREADS = threads
    return _run_variants(*args, log=lambda s: print(s, file=sys.stderr, flush=True))


def _merge_variant_runs(docs: list[dict]) -> dict:
    """One document from the runs of disjoint variants, in their order (the part-level protocol's seconds
    add up: the processes' own times, not the run's)."""
    out = {**docs[0], "config": {**docs[0]["config"], "variants": [v for d in docs for v in d["config"]["variants"]]}}
    for k in ("results", "parts"):
        out[k] = [r for d in docs for r in d[k]]
    out["targets"] = verdicts(out["results"])
    if "part_protocol" in docs[0]:
        for k in ("part_protocol", "removal_gap"):
            out[k] = [r for d in docs for r in d[k]]
        out["parts_seconds"] = round(sum(d["parts_seconds"] for d in docs), 1)
    return out


def _run(variants, models, explainers, n, seeds, quick, log, parts_n) -> tuple[dict, dict]:
    from ..classifiers.flower2d_models import shipped_for
    from ..flower2d import generator as g
    from ..session import get_classifier, get_explainer, get_inpainter

    t_start = time.perf_counter()
    explainers = list(explainers or (QUICK_EXPLAINERS if quick else ALL_EXPLAINERS))
    fill = get_inpainter("telea")
    rows, parts_rows, fig_data = [], [], {}
    part_level: dict = {}  # the part-level protocol's output, variant by variant
    for variant in variants:
        maps: dict = {}  # the true class's maps of the part-level protocol's images
        for key in shipped_for(variant, models, quick):
            clf = get_classifier(key)
            per = {e: {} for e in explainers + list(CONTROLS)}
            notes = {}
            all_samples = []
            occ_maps: dict = {}  # (seed, j) -> {explainer: map, "image": model-input image}
            for seed in range(seeds):
                samples, tries = select_images(clf, variant, n, seed)
                all_samples += samples
                log(f"{variant} {key} seed {seed}: {len(samples)} images ({tries} drawn)")
                rng = np.random.default_rng([seed, 7])
                for name in explainers + list(CONTROLS):
                    ex = get_explainer(name) if name not in CONTROLS else None
                    if ex is not None and ex.supports(clf):
                        notes[name] = ex.supports(clf)
                        continue
                    vals = {"top_m_iou": [], "mean_iou": [], "pointing": [], "energy": [], "deletion_auc": []}
                    t0 = time.perf_counter()
                    for j, (p, img, parts) in enumerate(samples):
                        m = g.disc_mask(p, parts)
                        if ex is None:
                            h = control_map(name, m, rng)
                        else:
                            h = ex.explain(clf, clf.preprocess(img), [p["label"]]).raw[0]
                            if seed == 0 and j < parts_n:  # the part-level protocol's images
                                maps[explain_parts.map_key(key, name, img, [p["label"]])] = h[None]
                            if name in OCCLUSION_PAIR:
                                occ_maps.setdefault((seed, j), {"image": img})[name] = h
                                if name == "occlusion":
                                    occ_maps[(seed, j)]["passes"] = ex.last_passes
                        vals["top_m_iou"].append(top_m_iou(h, m))
                        vals["mean_iou"].append(mean_iou(h, m))
                        vals["pointing"].append(pointing(h, m))
                        vals["energy"].append(energy(h, m))
                        vals["deletion_auc"].append(deletion_auc(clf, img, h, p["label"], fill))
                        if seed == 0 and j < 3:
                            fig_data.setdefault((variant, key), {}).setdefault(j, {"img": img, "mask": m})[name] = h
                    for k_, v in vals.items():
                        per[name].setdefault(k_, []).append(float(np.mean(v)) if v else float("nan"))
                    per[name].setdefault("seconds_per_image", []).append((time.perf_counter() - t0) / max(len(samples), 1))
            for name, metrics in per.items():
                if not metrics:
                    continue
                rows.append({"variant": variant, "model": key, "explainer": name, "control": name in CONTROLS,
                             "metrics": {k_: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": v}
                                         for k_, v in metrics.items()}})
            sel = part_selectivity(clf, all_samples[: max(10, n)], fill)
            agreement = occlusion_agreement(occ_maps)
            parts_rows.append({"variant": variant, "model": key, **sel, "unsupported": notes,
                               **({"occlusion_agreement": agreement} if agreement else {})})
            log(f"{variant} {key}: selectivity exact {sel['selectivity_exact']:.3f}, inpaint {sel['selectivity_inpaint']:.3f}")
        if parts_n:  # while this variant's inpaintings are still cached
            done = explain_parts.run_parts([variant], models, explainers, select_images, control_map, n=parts_n,
                                           quick=quick, size=SIZE, log=log, maps=maps)
            for k_ in ("part_protocol", "removal_gap"):
                part_level.setdefault(k_, []).extend(done[k_])
            part_level["parts_config"] = done["parts_config"]
            part_level["parts_seconds"] = round(part_level.get("parts_seconds", 0) + done["parts_seconds"], 1)
    import torch

    doc = {"config": {"variants": list(variants), "explainers": explainers, "controls": list(CONTROLS), "n": n,
                      "seeds": seeds, "quick": quick, "size": SIZE, "fractions": list(FRACTIONS)},
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "results": rows, "parts": parts_rows, "targets": verdicts(rows),
           "seconds": round(time.perf_counter() - t_start, 1), **part_level}
    return doc, fig_data


def occlusion_agreement(maps: dict) -> dict | None:
    """How the fast occlusion's maps agree with the exhaustive ones on the same images, scored on the
    segments of the finest segmentation (200 SLIC superpixels): whether the top segment is the same,
    and the Spearman correlation of the segment scores (mean map value per segment), over all segments
    and over those carrying at least 10% of the exhaustive map's top score (the explanation itself)."""
    from scipy.stats import spearmanr

    from ..explainers.occlusion import segments

    same, rho_all, rho_top, passes = [], [], [], []
    for d in maps.values():
        if not all(k in d for k in OCCLUSION_PAIR):
            continue
        seg = segments(d["image"], 200)
        ids = np.unique(seg)
        fast, ref = (np.array([d[k][seg == i].mean() for i in ids]) for k in OCCLUSION_PAIR)
        same.append(float(np.argmax(fast) == np.argmax(ref)))
        rho_all.append(float(spearmanr(fast, ref).statistic))
        top = ref >= 0.1 * ref.max() if ref.max() > 0 else np.zeros_like(ref, bool)
        if top.sum() >= 3:
            rho_top.append(float(spearmanr(fast[top], ref[top]).statistic))
        passes.append(d.get("passes", 0))
    if not same:
        return None
    return {"images": len(same), "same_top_segment": float(np.mean(same)),
            "spearman_all_segments": float(np.nanmean(rho_all)),
            "spearman_explaining_segments": float(np.nanmean(rho_top)) if rho_top else float("nan"),
            "fast_passes_mean": float(np.mean(passes))}


def _m(row, k):
    return row["metrics"][k]["mean"]


def verdicts(rows: list[dict]) -> dict:
    out = {}
    for variant, (t_iou, t_pt) in TARGETS.items():
        real = [r for r in rows if r["variant"] == variant and not r["control"]]
        if not real:
            continue
        per_model = {}
        for model in sorted({r["model"] for r in real}):
            best = max((r for r in real if r["model"] == model), key=lambda r: (_m(r, "top_m_iou"), _m(r, "pointing")))
            per_model[model] = {"explainer": best["explainer"], "top_m_iou": _m(best, "top_m_iou"),
                                "pointing": _m(best, "pointing"),
                                "met": _m(best, "top_m_iou") >= t_iou and _m(best, "pointing") >= t_pt}
        by_ex = {}
        for r in real:
            by_ex.setdefault(r["explainer"], []).append(r)
        avg = {e: (float(np.mean([_m(r, "top_m_iou") for r in rs])), float(np.mean([_m(r, "pointing") for r in rs])))
               for e, rs in by_ex.items() if len(rs) == len(per_model)}
        best_e = max(avg, key=lambda e: avg[e]) if avg else None
        out[variant] = {"target_top_m_iou": t_iou, "target_pointing": t_pt, "prototype_vebi_no_fix": PROTOTYPE[variant],
                        "best_per_model": per_model,
                        "best_on_average": {"explainer": best_e, "top_m_iou": avg[best_e][0], "pointing": avg[best_e][1],
                                            "met": avg[best_e][0] >= t_iou and avg[best_e][1] >= t_pt} if best_e else None}
    return out


def controls_ordered(doc: dict, metric: str = "top_m_iou") -> list[str]:
    """Problems with the control ordering gt > every real explainer > random (empty when fine)."""
    bad = []
    for variant in doc["config"]["variants"]:
        for model in sorted({r["model"] for r in doc["results"] if r["variant"] == variant}):
            rs = {r["explainer"]: _m(r, metric) for r in doc["results"] if r["variant"] == variant and r["model"] == model}
            for e, v in rs.items():
                if e in CONTROLS:
                    continue
                if not rs["gt"] > v:
                    bad.append(f"{variant} {model}: {e} {metric} {v:.3f} is not below the mask's {rs['gt']:.3f}")
                if not v > rs["random"]:
                    bad.append(f"{variant} {model}: {e} {metric} {v:.3f} is not above random's {rs['random']:.3f}")
    return bad


def format_table(doc: dict) -> str:
    lines = []
    for variant in doc["config"]["variants"]:
        rows = [r for r in doc["results"] if r["variant"] == variant]
        if not rows:
            continue
        lines.append(f"\n{variant}: top-|M| IoU, mean IoU over thresholds, pointing, energy in mask (higher is better); "
                     "deletion AUC (lower is better); mean ± std over seeds")
        head = f"{'model':<22} {'explainer':<12} {'top-|M| IoU':>13} {'mean IoU':>13} {'pointing':>13} {'energy':>13} {'deletion':>13} {'ms/img':>7}"
        lines += [head, "-" * len(head)]
        for r in sorted(rows, key=lambda r: (r["model"], r["control"], -_m(r, "top_m_iou"))):
            cells = [f"{_m(r, k):.3f}±{r['metrics'][k]['std']:.3f}" for k in ("top_m_iou", "mean_iou", "pointing", "energy",
                                                                           "deletion_auc")]
            ms = 1000 * _m(r, "seconds_per_image")
            name = r["explainer"] + (" (control)" if r["control"] else "")
            lines.append(f"{r['model']:<22} {name:<12} " + " ".join(f"{c:>13}" for c in cells) + f" {ms:7.1f}")
        for pr in doc["parts"]:
            if pr["variant"] == variant:
                drops = ", ".join(f"{k} {v:+.2f}" for k, v in pr["mean_drop"]["exact"].items())
                lines.append(f"{pr['model']}: part-removal selectivity (ROC-AUC) exact {pr['selectivity_exact']:.3f}, "
                             f"inpainted {pr['selectivity_inpaint']:.3f}; mean drop of p(y) by exact removal: {drops}")
        v = doc["targets"].get(variant)
        if v:
            for model, b in v["best_per_model"].items():
                lines.append(f"target {variant} (IoU >= {v['target_top_m_iou']}, pointing >= {v['target_pointing']}): "
                             f"{model}: best {b['explainer']} {b['top_m_iou']:.3f} / {b['pointing']:.3f} "
                             f"{'MET' if b['met'] else 'missed'}")
            b = v["best_on_average"]
            if b:
                lines.append(f"target {variant} averaged over the models: {b['explainer']} {b['top_m_iou']:.3f} / "
                             f"{b['pointing']:.3f} {'MET' if b['met'] else 'missed'}")
    lines.append(f"\n{doc['seconds']:.0f} s")
    return "\n".join(lines)


def draw_figure(fig_data: dict, path: str) -> None:
    """Rows: images (3 per model); columns: the image, the mask, then every method's map."""
    import cv2

    from ..imageio import save_png
    from ..presentation.viz import overlay

    blocks = []
    cell = 96
    for (variant, key), imgs in fig_data.items():
        names = [n for n in next(iter(imgs.values())) if n not in ("img", "mask")]
        header = np.full((22, cell * (len(names) + 1), 3), 255, np.uint8)
        for c, name in enumerate(["image"] + names):
            cv2.putText(header, name[:12], (c * cell + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (20, 20, 20), 1,
                        cv2.LINE_AA)
        title = np.full((20, header.shape[1], 3), 235, np.uint8)
        cv2.putText(title, f"{variant} / {key}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        rows = [title, header]
        for j, d in sorted(imgs.items()):
            img = cv2.resize(d["img"], (cell, cell), interpolation=cv2.INTER_NEAREST)
            tiles = [img]
            for name in names:
                h = cv2.resize(_norm(d[name]).astype(np.float32), (cell, cell), interpolation=cv2.INTER_NEAREST)
                tiles.append(overlay(img, h, 0.6))
            rows.append(np.concatenate(tiles, 1))
        blocks.append(np.concatenate(rows, 0))
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 6), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_png(np.concatenate(blocks, 0), path)


def format_occlusion_markdown(doc: dict) -> str:
    """The fast occlusion against the exhaustive one, per model: top-|M| IoU, pointing, deletion AUC
    and ms per image of each, and their agreement (empty when the run did not have both)."""
    res = {(r["variant"], r["model"], r["explainer"]): r["metrics"] for r in doc["results"]}
    lines = []
    for pr in doc["parts"]:
        a = pr.get("occlusion_agreement")
        f, e = (res.get((pr["variant"], pr["model"], k)) for k in OCCLUSION_PAIR)
        if not a or not f or not e:
            continue

        def cells(m):
            return (f"{m['top_m_iou']['mean']:.3f} / {m['pointing']['mean']:.2f} / {m['deletion_auc']['mean']:.3f} / "
                    f"{1000 * m['seconds_per_image']['mean']:.0f}")

        lines.append(f"| `{pr['model']}` | {cells(f)} | {cells(e)} | {f['top_m_iou']['mean'] - e['top_m_iou']['mean']:+.3f} | "
                     f"{a['same_top_segment']:.2f} | {a['spearman_all_segments']:.2f} / "
                     f"{a['spearman_explaining_segments']:.2f} | {a['fast_passes_mean']:.0f} |")
    if not lines:
        return ""
    head = ("| model | occlusion (fast): IoU / pointing / deletion AUC / ms per image (map and scoring) | "
            "occlusion-exhaustive | IoU gap | "
            "same top segment | Spearman all / explaining segments | fast passes |\n|---|---|---|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(lines) + "\n"


def format_markdown(doc: dict) -> str:
    """The README's tables: per variant, one row per explainer, per model top-|M| IoU / pointing /
    deletion AUC (means over seeds); the best real explainer per model in bold."""
    out = []
    for variant in doc["config"]["variants"]:
        rows = [r for r in doc["results"] if r["variant"] == variant]
        models = list(dict.fromkeys(r["model"] for r in rows))
        names = list(dict.fromkeys(r["explainer"] for r in rows if not r["control"]))
        names += list(dict.fromkeys(r["explainer"] for r in rows if r["control"]))
        cell = {(r["model"], r["explainer"]): r for r in rows}
        best = {m: max((r for r in rows if r["model"] == m and not r["control"]),
                       key=lambda r: r["metrics"]["top_m_iou"]["mean"])["explainer"] for m in models}
        order = sorted(names, key=lambda e: (e in {r["explainer"] for r in rows if r["control"]},
                                             -np.mean([cell[(m, e)]["metrics"]["top_m_iou"]["mean"]
                                                       for m in models if (m, e) in cell] or [0])))
        out.append(f"**{variant}** (top-|M| IoU / pointing / deletion AUC; mean of {doc['config']['seeds']} seeds x "
                   f"{doc['config']['n']} images)\n")
        out.append("| explainer | " + " | ".join(f"`{m}`" for m in models) + " |")
        out.append("|---|" + "---:|" * len(models))
        for e in order:
            vals = []
            for m in models:
                r = cell.get((m, e))
                if r is None:
                    vals.append("n/a")
                    continue
                mm = r["metrics"]
                v = f"{mm['top_m_iou']['mean']:.2f} / {mm['pointing']['mean']:.2f} / {mm['deletion_auc']['mean']:.2f}"
                vals.append(f"**{v}**" if best[m] == e else v)
            label = e + (" (control)" if any(r["control"] for r in rows if r["explainer"] == e) else "")
            out.append(f"| {label} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def merge(old: dict, new: dict) -> dict:
    """``old`` with ``new``'s rows in place of the same (variant, model, explainer) and its other rows
    added: a published table gains or re-measures explainers without rerunning the rest. Both must score
    the same images (same n, seeds, size and deletion steps), else one sentence says which differs."""
    from ..errors import InputError

    for k in ("n", "seeds", "size", "fractions"):
        if old["config"].get(k) != new["config"].get(k):
            raise InputError(f"the table to update was measured with {k}={old['config'].get(k)} and this run with "
                             f"{k}={new['config'].get(k)}; run with the same --n and --seeds to update it.")
    key = lambda r: (r["variant"], r["model"], r["explainer"])  # noqa: E731
    fresh = {key(r): r for r in new["results"]}
    rows = [fresh.pop(key(r), r) for r in old["results"]] + list(fresh.values())
    parts = {(p["variant"], p["model"]): dict(p) for p in old["parts"]}
    for p in new["parts"]:
        was = parts.setdefault((p["variant"], p["model"]), {})
        unsupported = {**was.get("unsupported", {}), **p.get("unsupported", {})}
        was.update(p, unsupported=unsupported)
    cfg = dict(old["config"])
    for k in ("variants", "explainers"):
        cfg[k] = list(dict.fromkeys(list(old["config"][k]) + list(new["config"][k])))
    out = {**old, "config": cfg, "machine": new["machine"], "results": rows, "parts": list(parts.values()),
           "targets": verdicts(rows)}
    if "part_protocol" in new:  # a full run: its part-level rows merge the same way
        both = explain_parts.merge(old, new) if "part_protocol" in old else new
        out.update({k: both[k] for k in ("part_protocol", "removal_gap", "parts_config")})
    out["updates"] = list(old.get("updates", [])) + [{"explainers": new["config"]["explainers"],
                                                      "variants": new["config"]["variants"],
                                                      "seconds": new["seconds"]}]
    return out


# -- CLI -------------------------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    if args.update and not Path(args.update).is_file():
        print(f"explain-bench: there is no table at {args.update} to update; run without --update first.",
              file=sys.stderr)
        return 2
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.protocol == "parts":
        return _cmd_parts(args, log)
    if args.protocol == "photos":
        return _cmd_photos(args, log)
    if args.protocol == "trust":
        return _cmd_trust(args, log)
    n = args.n or (6 if args.quick else 20)
    variants = args.variants or VARIANTS
    if args.jobs is not None and args.jobs < 1:
        print("explain-bench: --jobs takes a number of processes, 1 or more.", file=sys.stderr)
        return 2
    import os

    jobs = args.jobs or min(len(variants), os.cpu_count() or 1)
    doc = run(variants=variants, models=args.models, explainers=args.explainers, n=n,
              seeds=args.seeds or (1 if args.quick else 3), quick=args.quick, figure=args.figure, log=log,
              parts=(args.parts_n or n) if args.protocol == "all" else None, jobs=jobs)
    if args.update:
        from ..errors import InputError

        try:
            doc = merge(json.loads(Path(args.update).read_text()), doc)
        except InputError as exc:
            print(f"explain-bench: {exc}", file=sys.stderr)
            return 2
        args.json = args.json or args.update
    print(format_table(doc))
    bad = controls_ordered(doc)
    print("controls ordered (mask > every explainer > random on top-|M| IoU): " + ("yes" if not bad else "NO"))
    for b in bad:
        print("  " + b)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    occ = format_occlusion_markdown(doc)
    if occ:
        print("\nfast occlusion against the exhaustive one:\n" + occ)
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(doc))
        print(f"wrote {args.markdown}")
    if args.occlusion_markdown:
        Path(args.occlusion_markdown).write_text(occ)
        print(f"wrote {args.occlusion_markdown}")
    if "part_protocol" in doc:
        _write_parts(args, doc)
    return 0


def _updated(args, doc: dict, merge, what: str) -> dict | None:
    """``doc`` merged into the table at ``--update`` by ``merge`` (written back there unless ``--json`` says
    where), or None once one sentence has said why it cannot be (other settings; not ``what`` at all)."""
    from ..errors import InputError

    try:
        out = merge(json.loads(Path(args.update).read_text()), doc)
    except (InputError, KeyError) as exc:
        print(f"explain-bench: {exc if isinstance(exc, InputError) else f'that file is not {what}'}", file=sys.stderr)
        return None
    args.json = args.json or args.update
    return out


def _cmd_parts(args, log) -> int:
    """``--protocol parts``: the part-level protocol alone (its own JSON and Markdown)."""
    t0 = time.perf_counter()
    import torch

    doc = {"config": {"protocol": "parts", "variants": list(args.variants or VARIANTS), "quick": args.quick,
                      "size": SIZE},
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}}
    doc.update(explain_parts.run_parts(args.variants or VARIANTS, args.models, _explainers(args), select_images,
                                       control_map, n=args.n or (6 if args.quick else 20), quick=args.quick, size=SIZE,
                                       log=log))
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    if args.update:
        doc = _updated(args, doc, explain_parts.merge, "a part-level table")
        if doc is None:
            return 2
    print(explain_parts.format_markdown(doc))
    print(f"\n{doc['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(explain_parts.format_markdown(doc))
        print(f"wrote {args.markdown}")
    return 0


def _cmd_photos(args, log) -> int:
    """``--protocol photos``: real photos with drawn masks (``explain_photos``), its own JSON and Markdown
    (``--markdown X`` writes the scores to X and the photos, their classes and masks, to X_photos.md)."""
    from . import explain_photos

    models = args.models or explain_photos.MODELS
    doc = explain_photos.run_photos(models=models, explainers=args.explainers, photos=args.photos, road=args.road,
                                    log=log)
    print(explain_photos.format_markdown(doc))
    for s in doc["skipped"]:
        print(f"skipped: {s}")
    print(f"{len(doc['photos'])} photo(s), {doc['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        md = Path(args.markdown)
        md.write_text(explain_photos.format_markdown(doc))
        md.with_name(md.stem + "_photos.md").write_text(explain_photos.photo_table(doc))
        print(f"wrote {md} and {md.with_name(md.stem + '_photos.md')}")
    return 0


def _cmd_trust(args, log) -> int:
    """``--protocol trust``: the trust score's ranking of explainers against the ground truth's, on a seed
    range no other protocol draws from (``trust_agreement``), every variant by default."""
    from . import trust_agreement

    doc = trust_agreement.run_trust(variants=args.variants or CHOICES, models=args.models,
                                    explainers=args.explainers or trust_agreement.EXPLAINERS,
                                    n=args.n or (4 if args.quick else 20), quick=args.quick, log=log)
    if args.update:
        doc = _updated(args, doc, trust_agreement.merge, "a trust table")
        if doc is None:
            return 2
    from .outputs import write_outputs

    write_outputs(doc, f"{trust_agreement.format_markdown(doc)}\n{doc['seconds']:.0f} s",
                  trust_agreement.format_markdown, json_path=args.json, markdown_path=args.markdown)
    return 0


def _explainers(args) -> list[str]:
    return list(args.explainers or (QUICK_EXPLAINERS if args.quick else ALL_EXPLAINERS))


def _write_parts(args, doc) -> None:
    print("\npart-level protocol:\n" + explain_parts.format_markdown(doc))
    if args.parts_markdown:
        Path(args.parts_markdown).write_text(explain_parts.format_markdown(doc))
        print(f"wrote {args.parts_markdown}")


def add_bench_args(p) -> None:
    p.add_argument("--variants", nargs="+", choices=list(CHOICES),
                   help="default: double-12c and single-6c (parts-5c on request: its own tables)")
    p.add_argument("--models", nargs="+", help="model keys or architectures (squeezenet, resnet, vit)")
    p.add_argument("--explainers", nargs="+")
    p.add_argument("--n", type=int, default=None, help="images per seed (default 20; 6 with --quick)")
    p.add_argument("--seeds", type=int, default=None, help="disjoint image sets (default 3; 1 with --quick)")
    p.add_argument("--markdown", default=None, help="also write the README's tables (Markdown) here")
    p.add_argument("--occlusion-markdown", default=None,
                   help="write the fast-against-exhaustive occlusion table (Markdown) here (runs with both)")
    p.add_argument("--quick", action="store_true", help="one model per variant, four explainers: a CI smoke test")
    p.add_argument("--figure", default=None, help="save a PNG of every method's maps on the same images")
    p.add_argument("--json", default=None)
    p.add_argument("--protocol", choices=("regions", "parts", "all", "photos", "trust"), default="all",
                   help="regions: overlap with the ground-truth mask and deletion; parts: FunnyBirds' part-level "
                        "scores by exact re-rendering and the removal-operator gap; all: both, the part-level "
                        "protocol reading the region maps of its images (the default); photos: real photos from "
                        "installed packages with drawn object masks, on the embedded EfficientNet-Lite models; trust: "
                        "the trust score's ranking of explainers against the ground truth's (every variant)")
    p.add_argument("--photos", nargs="+", default=None, help="with --protocol photos: these photo ids only")
    p.add_argument("--road", action="store_true", help="with --protocol photos: ROAD beside the deletion AUC "
                   "(about 2.5 s a map on 2 cores)")
    p.add_argument("--parts-n", type=int, default=None,
                   help="with --protocol all: images per model of the part-level protocol, the first of the first "
                        "seed (default: all of them, --n)")
    p.add_argument("--parts-markdown", default=None, help="with --protocol all: write the part-level tables here")
    p.add_argument("--jobs", type=int, default=None,
                   help="run the variants side by side in this many processes, the cores split between them "
                        "(default: one per variant, up to the number of cores; 1: one process)")
    p.add_argument("--update", default=None, metavar="JSON",
                   help="merge this run's rows into that earlier table (same --n and --seeds) and write it back")
    p.set_defaults(func=cmd_bench)


@register("command", "explain-bench", description="score every explainer against Flower2D's or real photos' truth")
class ExplainBenchCommand(Command):
    def add_arguments(self, parser) -> None:
        add_bench_args(parser)
