"""The part-level protocol: FunnyBirds' scores (Hesse, Schaub-Meyer & Roth, ICCV 2023) computed exactly
on Flower2D, and the gap between removal by inpainting and true removal.

On parts-5c (FunnyBirds' structure: five part types, one minimal sufficient set per class, background
objects) the items are the five parts and the background objects (removed together); its scores are the
ones that discriminate (double-12c and single-6c saturate, and stay for comparability).

``python -m ic_zoo explain-bench --protocol parts`` (or ``all``). FunnyBirds removes a part by
re-rendering the scene without it; Flower2D's generator does the same (``render(params, remove=...)``),
and its classes are defined by part colours, so the minimal sufficient part sets are known: {petal,
centre} on double-12c, {petal} on single-6c. The definitions follow the framework's
``evaluation_protocols.py`` and ``explainer_wrapper.py``:

* part importance: the map's mass inside each part, the part mask dilated by 1 px (the framework dilates
  by 2 px at 256 px; our images are 64 px); a part is important at threshold t when its importance
  exceeds t x the map's total mass, for 80 thresholds in [0.01, 0.5];
* CSDC: on correctly classified images, the overlap |S ∩ important| / |S| with the minimal sufficient set;
* PC: re-render without every part not marked important; 1 if the prediction is unchanged;
* DC: re-render without the parts marked important; 1 if the prediction changes;
* D: the parts whose single removal lowers the target logit by less than 5% of it, or raises it, are
  irrelevant; D = 1 - the mean share of them marked important (images with none are skipped);
* SD: Spearman ρ between each part's logit drop on removal and its importance, as 0.5 ρ + 0.5;
* TS: two classes that each share one discriminative part with the target, the shared parts disjoint
  (same petal colour, other centre; other petal, same centre), kept where the model behaves so (removing
  a class's shared part lowers that class's logit more than removing the other); 1 for each of the two
  when that class's map weights its shared part above the other class's map does. Defined on double-12c
  only: a single-6c class shares no part with another;
* BI (model only): 1 - the share of non-discriminative parts (stem, leaf; and the centre on single-6c:
  Flower2D's stand-ins for FunnyBirds' background objects; on parts-5c the parts outside the class's set and
  the background objects) whose removal lowers the logit by 5% or more.

The threshold is chosen per model x explainer to maximise CSDC/3 + PC/3 + DC/3 + D; Com = ((CSDC + PC +
DC)/3 + D)/2, Cor = SD, Con = TS, and the mean is their average (n/a where TS is).

Every removal is one re-render, and at most 2^4 part subsets exist: each image's subsets are rendered and
classified once, in one batch, and every score is read from that table.

The removal-operator gap (which FunnyBirds lacks): for each inpainter, each part removed by inpainting
(its mask dilated by 1 px) against its exact re-render: the Spearman ρ of the per-part logit drops, and
how often the two agree on whether removing the discriminative parts changes the prediction (DC) and
whether removing all the others keeps it (PC).
"""
from __future__ import annotations

import itertools

import numpy as np

PARTS = ("stem", "leaf", "petal", "centre")
THRESHOLDS = np.linspace(0.01, 0.50, num=80)
GAP_INPAINTERS = ("telea", "ns", "patchmatch", "fsr_fast", "fsr_best", "shiftmap", "blur", "mean_fill", "lama")


def part_importance(h: np.ndarray, parts: np.ndarray, items=PARTS) -> dict[str, float]:
    """The map's mass inside each part (the part mask dilated by 1 px, as FunnyBirds dilates)."""
    import cv2

    from ..flower2d import generator as g

    k = np.ones((3, 3), np.uint8)
    h = np.asarray(h, np.float64)
    return {name: float((h * (cv2.dilate((parts == g.PARTS[name]).astype(np.uint8), k) > 0)).sum())
            for name in items}


def important_parts(imp: dict[str, float], total: float, thresholds=THRESHOLDS) -> list[frozenset]:
    return [frozenset(k for k, v in imp.items() if v > total * t) for t in thresholds]


class Removals:
    """Every subset of parts removed by re-rendering, classified once: logits by subset."""

    def __init__(self, clf, params: dict, size: int) -> None:
        import torch

        from ..flower2d import generator as g

        items = g.removable(params["variant"])
        self.subsets = [frozenset(c) for r in range(len(items) + 1) for c in itertools.combinations(items, r)]
        images = np.stack([g.render(params, size, remove=sorted(s))[0] for s in self.subsets])
        with clf.lock, torch.inference_mode():
            logits = clf.forward(clf.image_to_tensor(images)).float().cpu().numpy()
        self.logits = dict(zip(self.subsets, logits))

    def logit(self, removed, cls: int) -> float:
        return float(self.logits[frozenset(removed)][cls])

    def pred(self, removed) -> int:
        return int(np.argmax(self.logits[frozenset(removed)]))


def _spearman(a, b) -> float:
    from scipy import stats

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b)[0])


def ts_classes(variant: str, label: int) -> tuple[int, int, list[str], list[str]] | None:
    """Two classes sharing disjoint parts with ``label``: one discriminative part each on double-12c (none on
    single-6c, whose classes share no part); on parts-5c the pair whose shared parts are disjoint and most
    even (FunnyBirds takes two parts each), the first such pair in class order."""
    from ..flower2d import generator as g

    if variant == "single-6c":
        return None
    if variant == "parts-5c":
        code = g.P5_CLASSES[label]
        shared = {k: [p for p, a, b in zip(g.P5_PARTS, code, other) if a == b]
                  for k, other in enumerate(g.P5_CLASSES) if k != label}
        pairs = [(min(len(shared[a]), len(shared[b])), -a, -b) for a in shared for b in shared
                 if a < b and shared[a] and shared[b] and not set(shared[a]) & set(shared[b])]
        if not pairs:
            return None
        _, a, b = max(pairs)
        return -a, -b, shared[-a], shared[-b]
    n_c = len(g.C3)
    p, c = divmod(label, n_c)
    n_p = len(g.P4)
    return p * n_c + (c + 1) % n_c, ((p + 1) % n_p) * n_c + c, ["petal"], ["centre"]


def _above(a: float, b: float, rtol: float = 1e-5) -> bool:
    """a > b beyond float noise: a class-agnostic method's two maps of one image differ by rounding only
    (KPCA-CAM's by 5e-7 of 1.5), and TS must count them equal, as FunnyBirds' strict '>' does exact ties."""
    return a - b > rtol * max(abs(a), abs(b))


def score_image(clf, explain, params: dict, img: np.ndarray, parts: np.ndarray, size: int,
                rem: Removals | None = None) -> dict:
    """Per-image protocol values: per-threshold CSDC/PC/DC/D arrays and SD, TS, BI, with the maps read
    through ``explain(x, classes) -> (k, h, w) non-negative maps`` (``rem``: the image's removals, when
    several explainers share them)."""
    from ..flower2d import generator as g

    y = int(params["label"])
    disc = set(params["disc_parts"])
    items = g.removable(params["variant"])
    present = [k for k in items if (parts == g.PARTS[k]).any()]
    rem = rem if rem is not None else Removals(clf, params, size)
    pred0 = rem.pred(())
    x = clf.preprocess(img)
    h = explain(x, [y])[0]
    imp = {k: v for k, v in part_importance(h, parts, present).items()}
    total = float(np.asarray(h, np.float64).sum())
    sets = important_parts(imp, total)
    z0 = rem.logit((), y)
    drops = {k: z0 - rem.logit([k], y) for k in present}
    out: dict = {}
    out["csdc"] = (np.array([len(disc & s) / len(disc) for s in sets]) if pred0 == y else None)
    out["pc"] = np.array([float(rem.pred(set(present) - s) == pred0) for s in sets])
    out["dc"] = np.array([float(rem.pred(s) != pred0) for s in sets])
    irrelevant = {k for k, d in drops.items() if abs(d) < abs(0.05 * z0) or rem.logit([k], y) > z0}
    out["d"] = (np.array([len(s & irrelevant) / len(irrelevant) for s in sets]) if irrelevant else None)
    rho = _spearman([drops[k] for k in present], [imp[k] for k in present])
    out["sd"] = None if np.isnan(rho) else 0.5 * rho + 0.5
    nuisance = [k for k in present if k not in disc]
    out["bi"] = [float(drops[k] >= abs(0.05 * z0) and rem.logit([k], y) < z0) for k in nuisance]
    out["ts"] = None
    tc = ts_classes(params["variant"], y)
    if tc is not None:
        c1, c2, shared1, shared2 = tc
        a = rem.logit(shared1, c1) - rem.logit((), c1), rem.logit(shared2, c1) - rem.logit((), c1)
        b = rem.logit(shared1, c2) - rem.logit((), c2), rem.logit(shared2, c2) - rem.logit((), c2)
        if a[0] < a[1] and b[1] < b[0]:  # the model behaves as assumed
            m1, m2 = explain(x, [c1, c2])[:2]  # one call: perturbation methods share their passes
            i1, i2 = part_importance(m1, parts, present), part_importance(m2, parts, present)
            out["ts"] = [float(_above(sum(i1.get(k, 0.0) for k in shared1), sum(i2.get(k, 0.0) for k in shared1))),
                         float(_above(sum(i2.get(k, 0.0) for k in shared2), sum(i1.get(k, 0.0) for k in shared2)))]
    return out


def aggregate(per_image: list[dict]) -> dict:
    """FunnyBirds' aggregation: the per-threshold means, the threshold maximising CSDC/3 + PC/3 + DC/3 + D,
    and Com, Cor, Con with their mean."""
    def mean_curve(key):
        rows = [r[key] for r in per_image if r[key] is not None]
        return np.mean(rows, axis=0) if rows else np.full(len(THRESHOLDS), np.nan)

    csdc, pc, dc = mean_curve("csdc"), mean_curve("pc"), mean_curve("dc")
    d = 1 - mean_curve("d")
    score = np.nan_to_num(csdc) / 3 + pc / 3 + dc / 3 + np.nan_to_num(d, nan=1.0)
    best = int(np.argmax(score))  # the first of equal maxima, as the framework's strict '>' keeps
    sd = [r["sd"] for r in per_image if r["sd"] is not None]
    ts = [v for r in per_image if r["ts"] is not None for v in r["ts"]]
    bi = [v for r in per_image for v in r["bi"]]
    out = {"threshold": float(THRESHOLDS[best]), "csdc": float(csdc[best]), "pc": float(pc[best]),
           "dc": float(dc[best]), "d": float(d[best]) if not np.isnan(d[best]) else None,
           "sd": float(np.mean(sd)) if sd else None, "ts": float(np.mean(ts)) if ts else None,
           "bi": 1 - float(np.mean(bi)) if bi else None, "images": len(per_image),
           "ts_pairs": len(ts) // 2}
    d_ = out["d"] if out["d"] is not None else 1.0
    out["com"] = ((out["csdc"] + out["pc"] + out["dc"]) / 3 + d_) / 2
    out["cor"] = out["sd"]
    out["con"] = out["ts"]
    out["mean"] = (out["com"] + out["cor"] + out["con"]) / 3 if None not in (out["cor"], out["con"]) else None
    return out


def removal_gap(clf, samples, size: int, inpainters=GAP_INPAINTERS) -> dict:
    """Per inpainter: Spearman ρ between the per-part logit drops by inpainting and by re-rendering
    (mean over images), and the agreement on DC (remove the discriminative parts: does the prediction
    change?) and PC (remove every other part: does it stay?)."""
    import cv2
    import torch

    from ..discovery import get_spec
    from ..flower2d import generator as g
    from ..session import get_inpainter

    k = np.ones((3, 3), np.uint8)
    out = {}
    removals = [Removals(clf, params, size) for params, _, _ in samples]
    for name in inpainters:
        spec = get_spec("inpainter", name)
        reason = spec.unavailable_reason() if spec is not None else "not registered"
        if reason:
            out[name] = {"unavailable": reason}
            continue
        fill = get_inpainter(name)
        rhos, dc_agree, pc_agree = [], [], []
        for (params, img, parts), rem in zip(samples, removals):
            y = int(params["label"])
            present = [p for p in g.removable(params["variant"]) if (parts == g.PARTS[p]).any()]
            z0 = rem.logit((), y)
            masks = {p: cv2.dilate((parts == g.PARTS[p]).astype(np.uint8), k) > 0 for p in present}
            disc = [p for p in params["disc_parts"] if p in present]
            others = [p for p in present if p not in disc]
            union = lambda ps: np.any([masks[p] for p in ps], axis=0) if ps else None  # noqa: E731
            ims = [fill.inpaint(img, masks[p]) for p in present]
            ims += [fill.inpaint(img, union(disc)), fill.inpaint(img, union(others)) if others else img]
            with clf.lock, torch.inference_mode():
                logits = clf.forward(clf.image_to_tensor(np.stack(ims))).float().cpu().numpy()
            inp = [z0 - logits[i, y] for i in range(len(present))]
            exact = [z0 - rem.logit([p], y) for p in present]
            rho = _spearman(inp, exact)
            if not np.isnan(rho):
                rhos.append(rho)
            pred0 = rem.pred(())
            dc_agree.append(float((int(np.argmax(logits[len(present)])) != pred0) == (rem.pred(disc) != pred0)))
            pc_agree.append(float((int(np.argmax(logits[len(present) + 1])) == pred0) == (rem.pred(others) == pred0)))
        out[name] = {"spearman": float(np.mean(rhos)) if rhos else None, "dc_agreement": float(np.mean(dc_agree)),
                     "pc_agreement": float(np.mean(pc_agree)), "images": len(samples)}
    return out


def map_key(model: str, explainer: str, image: np.ndarray, classes) -> tuple:
    """The key of one explainer's maps of one image for ``classes``, shared by both protocols."""
    import hashlib

    return model, explainer, hashlib.sha1(image.tobytes()).hexdigest(), tuple(int(c) for c in classes)


def run_parts(variants, models, explainers, select_images, control_map, n: int = 20, gap_n: int = 10,
              quick: bool = False, size: int = 64, log=print, maps: dict | None = None) -> dict:
    """The part-level protocol for every variant x shipped model x explainer (and the gt and random
    controls), and the removal-operator gap per model. explain-bench passes its image selection (held-out
    images the model gets right and that pass the recolour test) and its control maps. ``maps``: the maps
    the region protocol already made of the same images, by ``map_key`` (the first ``n`` images of its
    first seed are these), read instead of explaining again."""
    import time

    from ..classifiers.flower2d_models import shipped_for
    from ..flower2d import generator as g
    from ..session import get_classifier, get_explainer

    t0 = time.perf_counter()
    explainers = list(explainers)
    controls = ("gt", "random")
    rows, gaps = [], []
    for variant in variants:
        for key in shipped_for(variant, models, quick):
            clf = get_classifier(key)
            samples, _ = select_images(clf, variant, n, 0)
            removals = [Removals(clf, params, size) for params, _, _ in samples]  # shared by every explainer
            for name in explainers + list(controls):
                ex = get_explainer(name) if name not in controls else None
                if ex is not None and ex.supports(clf):
                    continue
                rng = np.random.default_rng([0, 11])
                per = []
                t = time.perf_counter()
                for (params, img, parts), rem in zip(samples, removals):
                    m = g.disc_mask(params, parts)
                    if ex is None:
                        h = control_map(name, m, rng)
                        explain = (lambda x, cls, h=h: np.stack([h] * len(cls)))  # noqa: E731 (class-agnostic)
                    else:
                        def explain(x, cls, ex=ex, name=name, img=img):
                            known = (maps or {}).get(map_key(key, name, img, cls))
                            return known if known is not None else ex.explain(clf, x, cls).raw
                    per.append(score_image(clf, explain, params, img, parts, size, rem))
                rows.append({"variant": variant, "model": key, "explainer": name, "control": ex is None,
                             "scores": aggregate(per), "seconds_per_image": (time.perf_counter() - t) / max(len(per), 1)})
                log(f"{variant} {key} {name}: com {rows[-1]['scores']['com']:.3f}")
            gaps.append({"variant": variant, "model": key,
                         "inpainters": removal_gap(clf, samples[:gap_n], size)})
    return {"part_protocol": rows, "removal_gap": gaps,
            "parts_config": {"n": n, "gap_n": gap_n, "explainers": explainers, "controls": list(controls),
                             "thresholds": [float(THRESHOLDS[0]), float(THRESHOLDS[-1]), len(THRESHOLDS)]},
            "parts_seconds": round(time.perf_counter() - t0, 1)}


METRICS = ("csdc", "pc", "dc", "d", "sd", "ts", "bi", "com", "cor", "con", "mean")
#: FunnyBirds' reference row (framework README): ResNet-50 + Input x Gradient on FunnyBirds
FUNNYBIRDS_REFERENCE = {"csdc": 0.735, "pc": 0.602, "dc": 0.532, "d": 0.544, "sd": 0.546, "ts": 0.806, "bi": 0.998,
                        "com": 0.583, "cor": 0.546, "con": 0.806, "mean": 0.645}


def merge(old: dict, new: dict) -> dict:
    """``old``'s part-level rows with ``new``'s in place of the same (variant, model, explainer) and its
    other rows added (the removal gap and controls re-measured on the same images replace theirs). Both
    must score the same images (same n, gap n, thresholds and size), else one sentence says which differs."""
    from ..errors import InputError

    for k in ("n", "gap_n", "thresholds"):
        if old["parts_config"].get(k) != new["parts_config"].get(k):
            raise InputError(f"the part-level table to update was measured with {k}={old['parts_config'].get(k)} and "
                             f"this run with {k}={new['parts_config'].get(k)}; run with the same --n to update it.")
    if old["config"].get("size") != new["config"].get("size"):
        raise InputError("the part-level table to update was measured at another image size; run it again whole.")
    key = lambda r: (r["variant"], r["model"], r["explainer"])  # noqa: E731
    fresh = {key(r): r for r in new["part_protocol"]}
    rows = [fresh.pop(key(r), r) for r in old["part_protocol"]] + list(fresh.values())
    gaps = {(g_["variant"], g_["model"]): g_ for g_ in old.get("removal_gap", [])}
    gaps.update({(g_["variant"], g_["model"]): g_ for g_ in new.get("removal_gap", [])})
    cfg = dict(old["parts_config"])
    cfg["explainers"] = list(dict.fromkeys(list(old["parts_config"]["explainers"]) + list(new["parts_config"]["explainers"])))
    out = {**old, "parts_config": cfg, "machine": new.get("machine", old.get("machine")), "part_protocol": rows,
           "removal_gap": list(gaps.values())}
    out["updates"] = list(old.get("updates", [])) + [{"explainers": new["parts_config"]["explainers"],
                                                      "seconds": new.get("seconds")}]
    return out


def spread_rows(doc: dict) -> list[dict]:
    """Per variant and model: the explainer with the best mean (Com where the mean is n/a, as on single-6c),
    its mean, the random control's, their gap, and the ground-truth mask's Com beside the best Com of any
    explainer: how far the protocol separates a good map from a random one, and whether the truth still ties
    with the explainers."""
    rows = doc.get("part_protocol", [])
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows if r["variant"] == variant):
            rs = {r["explainer"]: r["scores"] for r in rows if r["variant"] == variant and r["model"] == model}
            real = {e: v for e, v in rs.items() if e not in ("gt", "random")}
            if not real or "random" not in rs:
                continue
            key = "mean" if all(v["mean"] is not None for v in real.values()) else "com"
            best = max(real, key=lambda e: real[e][key])
            out.append({"variant": variant, "model": model, "best": best, "score": key,
                        "best_mean": real[best][key], "random_mean": rs["random"][key],
                        "gap": real[best][key] - rs["random"][key],
                        "gt_com": rs["gt"]["com"] if "gt" in rs else None,
                        "best_com": max(v["com"] for v in real.values())})
    return out


def format_markdown(doc: dict) -> str:
    """The part-level tables and the removal-operator gap, generated for the README."""
    def f(v):
        return "n/a" if v is None else f"{v:.2f}"

    out = []
    rows = doc.get("part_protocol", [])
    for variant in dict.fromkeys(r["variant"] for r in rows):
        vr = [r for r in rows if r["variant"] == variant]
        out.append(f"**{variant}** (part-level protocol; {vr[0]['scores']['images']} images per model)\n")
        out.append("| model | explainer | " + " | ".join(m.upper() if len(m) <= 4 else m for m in METRICS) + " |")
        out.append("|---|---|" + "---:|" * len(METRICS))
        for r in sorted(vr, key=lambda r: (r["model"], -(r["scores"]["com"]))):
            out.append(f"| `{r['model']}` | {r['explainer']} | " + " | ".join(f(r["scores"][m]) for m in METRICS) + " |")
        out.append("")
    spread = spread_rows(doc)
    if spread:
        out.append("**The spread** (per model: the best explainer's mean against the random control's, and the "
                   "ground-truth mask's completeness against the best explainer's)\n")
        out.append("| variant | model | best explainer | its mean | random's mean | best − random | gt's Com | best Com |")
        out.append("|---|---|---|---:|---:|---:|---:|---:|")
        for r in spread:
            out.append(f"| {r['variant']} | `{r['model']}` | {r['best']} | {f(r['best_mean'])} | {f(r['random_mean'])} | "
                       f"{f(r['gap'])} | {f(r['gt_com'])} | {f(r['best_com'])} |")
        out.append("")
    out.append("FunnyBirds' reference row (its framework's README; FunnyBirds' own scenes, 5 parts and background "
               "objects)\n")
    out.append("| dataset | model + explainer | " + " | ".join(m.upper() if len(m) <= 4 else m for m in METRICS) + " |")
    out.append("|---|---|" + "---:|" * len(METRICS))
    out.append("| FunnyBirds | ResNet-50 + Input×Gradient | "
               + " | ".join(f(FUNNYBIRDS_REFERENCE[m]) for m in METRICS) + " |")
    out.append("")
    gaps = doc.get("removal_gap", [])
    if gaps:
        names = list(dict.fromkeys(n for g_ in gaps for n in g_["inpainters"]))
        out.append("**Removal by inpainting against true removal** (Spearman ρ of per-part logit drops / DC "
                   "agreement / PC agreement)\n")
        out.append("| model | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        for g_ in gaps:
            cells = []
            for n in names:
                v = g_["inpainters"].get(n, {})
                cells.append("unavailable" if "unavailable" in v else
                             f"{f(v.get('spearman'))} / {f(v.get('dc_agreement'))} / {f(v.get('pc_agreement'))}")
            out.append(f"| `{g_['model']}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
