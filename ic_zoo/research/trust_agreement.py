"""Does the trust score agree with the truth? Its ranking of explainers against the ground truth's, on
Flower2D images the explanation benchmark never scored.

The trust score (``ic_zoo.analyses.trust``) has no ground truth: it deletes a map's hottest pixels by
inpainting and compares the probability's fall with random maps'. On Flower2D the truth is known, so for
each model the explainers can be ranked twice, by the trust score (the random maps' deletion AUC minus the
map's: how far the map beats random) and by top-|M| IoU with the discriminative mask, and the two rankings
compared (Spearman rho over explainers, per model). ``pixels`` is the score as it was (each map's hottest
pixels, one by one); ``regions`` is the score as it is (``trust.REGION_SIGMA``: every map, the random ones
included, ranked at the same spatial scale before deletion), so the table shows what the change did.

``python -m ic_zoo explain-bench --protocol trust`` (its own JSON and Markdown).
"""
from __future__ import annotations

import time

import numpy as np

#: explainers of every family (CAMs, attention, gradients, perturbation); each model runs those it supports
EXPLAINERS = ("cam", "gradcam", "gradcam++", "hirescam", "layercam", "eigencam", "scorecam", "fullgrad", "rollout",
              "chefer", "inputxgradient", "integratedgradients", "smoothgrad", "vebi", "occlusion")
#: a seed range explain-bench never draws from (it uses 40000 + 1000 x seed for seeds 0-2)
FRESH_SEED = 30
MODES = ("pixels", "regions")


def _sigma(mode: str):
    """A mode's ranking scale: pixels (none), regions (the trust score's own), or a number of px."""
    from ..analyses import trust

    return {"pixels": None, "regions": trust.REGION_SIGMA}.get(mode) if mode in MODES else float(mode)


def _spearman(a, b) -> float:
    from scipy import stats

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b)[0])


def run_trust(variants=("double-12c", "single-6c"), models=None, explainers=EXPLAINERS, n: int = 20,
              seed: int = FRESH_SEED, quick: bool = False, log=print, modes=MODES) -> dict:
    """Per variant x model x explainer: mean top-|M| IoU, and per mode the mean trust gap (random AUC minus
    the map's) and the share of maps called better than random; per model and mode, Spearman rho between
    the explainers' two rankings."""
    from ..analyses import trust
    from ..classifiers.flower2d_models import shipped_for
    from ..flower2d import generator as g
    from ..session import get_classifier, get_explainer, get_inpainter
    from .scoring import select_images
    from ..analyses.metrics import energy, top_m_iou

    t0 = time.perf_counter()
    fill = get_inpainter("telea")
    rows = []
    for variant in variants:
        for key in shipped_for(variant, models, quick):
            clf = get_classifier(key)
            samples, _ = select_images(clf, variant, n, seed)
            for name in explainers:
                ex = get_explainer(name)
                if ex.supports(clf):
                    continue
                iou, mass, gaps, better = [], [], {m: [] for m in modes}, {m: [] for m in modes}
                for j, (p, img, parts) in enumerate(samples):
                    x = clf.preprocess(img)
                    h = ex.explain(clf, x, [p["label"]]).raw[0]
                    m_ = g.disc_mask(p, parts)
                    iou.append(top_m_iou(h, m_))
                    mass.append(energy(h, m_))
                    im = clf.tensor_to_image(x)
                    for mode in modes:
                        s = trust.trust_score(clf, im, h, p["label"], fill, seed=j, sigma=_sigma(mode))
                        gaps[mode].append(s.random_auc - s.auc)
                        better[mode].append(float(s.verdict == "better than random"))
                # an empty map has no deletion order (its AUC is nan, "nothing to test"): left out of the gap
                row = {"variant": variant, "model": key, "explainer": name, "images": len(samples),
                       "top_m_iou": float(np.nanmean(iou)), "energy": float(np.nanmean(mass)),
                       "empty_maps": int(np.isnan(gaps[modes[0]]).sum()),
                       **{f"gap_{m}": float(np.nanmean(gaps[m])) if not np.isnan(gaps[m]).all() else 0.0
                          for m in modes},
                       **{f"better_{m}": float(np.mean(better[m])) for m in modes}}
                rows.append(row)
                log(f"{variant} {key} {name}: IoU {row['top_m_iou']:.2f}, gap "
                    + ", ".join(f"{m} {row[f'gap_{m}']:+.3f}" for m in modes))
    return {"config": {"protocol": "trust", "variants": list(variants), "explainers": list(explainers), "n": n,
                       "seed": seed, "first_index": 40000 + 1000 * seed, "modes": list(modes),
                       "region_sigma": trust.REGION_SIGMA, "n_random": trust.N_RANDOM},
            "rows": rows, "agreement": agreement_of(rows, modes), "seconds": round(time.perf_counter() - t0, 1)}


def agreement_of(rows: list[dict], modes=MODES) -> list[dict]:
    """Per model: Spearman rho between the explainers' trust gaps and their IoU, and their energy."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model]
        out.append({"variant": rs[0]["variant"], "model": model, "explainers": len(rs),
                    **{f"spearman_{m}": _spearman([r["top_m_iou"] for r in rs], [r[f"gap_{m}"] for r in rs])
                       for m in modes},
                    **{f"spearman_energy_{m}": _spearman([r["energy"] for r in rs], [r[f"gap_{m}"] for r in rs])
                       for m in modes}})
    return out


def merge(old: dict, new: dict) -> dict:
    """``old``'s rows with ``new``'s in place of the same (model, explainer) and its other rows added, the
    agreement recomputed; both must score the same images (n, seed, modes), else one sentence says which
    differs."""
    from ..errors import InputError

    for k in ("n", "seed", "modes", "region_sigma"):
        if old["config"].get(k) != new["config"].get(k):
            raise InputError(f"the trust table to update was measured with {k}={old['config'].get(k)} and this "
                             f"run with {k}={new['config'].get(k)}; run with the same settings to update it.")
    fresh = {(r["model"], r["explainer"]): r for r in new["rows"]}
    rows = [fresh.pop((r["model"], r["explainer"]), r) for r in old["rows"]] + list(fresh.values())
    cfg = dict(old["config"])
    cfg["explainers"] = list(dict.fromkeys(old["config"]["explainers"] + new["config"]["explainers"]))
    return {**old, "config": cfg, "rows": rows, "agreement": agreement_of(rows, cfg["modes"]),
            "updates": list(old.get("updates", [])) + [{"explainers": new["config"]["explainers"],
                                                        "variants": new["config"]["variants"],
                                                        "seconds": new["seconds"]}]}


def format_markdown(doc: dict) -> str:
    """The agreement table per model, and each explainer's rank by IoU and by the trust score."""
    def f(v, fmt="{:.2f}"):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)

    out = ["**The trust score against the truth** (Spearman rho, over the model's explainers, between their ranking "
           "by the trust score and by the ground truth: top-|M| IoU with the discriminative mask, and the map's "
           "energy inside it; pixel by pixel as the score was, at the random maps' scale as it is)\n",
           "| variant | model | explainers | IoU: before | IoU: now | energy: before | energy: now |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for a in doc["agreement"]:
        out.append(f"| {a['variant']} | `{a['model']}` | {a['explainers']} | {f(a['spearman_pixels'])} | "
                   f"{f(a['spearman_regions'])} | {f(a['spearman_energy_pixels'])} | {f(a['spearman_energy_regions'])} |")
    out += ["", "**Each explainer** (mean over the images: top-|M| IoU; the trust gap, the random maps' deletion AUC "
            "minus the map's, higher is better; in brackets its rank among the model's explainers)\n",
            "| model | explainer | IoU | energy | gap before | gap now | better than random, before / now |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in doc["rows"]):
        rs = [r for r in doc["rows"] if r["model"] == model]

        def rank(k):
            order = sorted(rs, key=lambda r: -r[k])
            return {r["explainer"]: order.index(r) + 1 for r in rs}

        ri, rp, rr = rank("top_m_iou"), rank("gap_pixels"), rank("gap_regions")
        for r in sorted(rs, key=lambda r: -r["top_m_iou"]):
            e = r["explainer"]
            out.append(f"| `{model}` | {e} | {r['top_m_iou']:.2f} ({ri[e]}) | {r['energy']:.2f} | "
                       f"{r['gap_pixels']:+.3f} ({rp[e]}) | "
                       f"{r['gap_regions']:+.3f} ({rr[e]}) | {r['better_pixels']:.2f} / {r['better_regions']:.2f} |")
    out.append("")
    return "\n".join(out)
