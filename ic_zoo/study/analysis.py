"""Humans vs models: what a study's participants removed, against where each model looks.

``python -m ic_zoo study analyze --db URL --out DIR`` reads only the log (the definition, task images,
strokes with their masks, every model's top-5 before and after each change, the answers) and writes,
per task image:

1. **Human maps**, each participant weighted equally however many strokes they made: the *removal map*
   (the share of participants whose final image had each pixel removed), the *first-stroke map*, and per
   model the *flip map* (for the participants who flipped that model's top-1: what they had removed at
   the first change that flipped it).
2. **Model maps** on the same image, for each model's original top-1, from the listed explainers
   (default Grad-CAM and occlusion), and the model's *flip region* where the explainer finds one: the
   smallest top share of the map whose removal (by the task's inpainter) changes the top-1.
3. **Agreement, human vs each model map:** top-k IoU at matched area (k = the participants' mean removed
   area), the Spearman correlation of the maps, the pointing game both ways; and per model the **effect**
   of the participants' removals: how often they flipped it, the confidence drop per removed percent,
   and whether their regions hurt it more than random regions of the same area and shape (each final
   removal moved to random places and inpainted by the same inpainter). Every figure has a bootstrap
   95 % interval over participants (BCa: bias-corrected and accelerated, as ``scipy.stats.bootstrap``).
4. **Per model across tasks:** which model "looks where people look", ranked by mean IoU with intervals.
   With ground truth in the study file (a task's ``parts``, a part map as Flower2D writes it, and
   ``truth``, the region that decides the class): humans vs truth and each model vs truth (top-|T| IoU,
   pointing), and the part each choice answer names against the part each model's map, each model's
   flips and the participants' own removals point at.

5. **The human noise ceiling and the published metrics** (``alignment.py``): per task the participants'
   split-half reliability (Spearman-Brown corrected, jackknife interval), each model map's agreement as a
   fraction of it, and Harmonization's blurred Spearman, top-10 % IoU and Dice beside ours; and a **saliency
   control** that needs no model (``saliency.py``), scored like a model map, with the share of each
   human-model agreement it explains.
6. **The per-participant long table** and the mixed-effects models and GEEs fitted to it (``models.py``).

Output: ``participants_long.csv``, ``mixed_models.csv``, ``analysis.json``, ``agreement.csv``, ``effects.csv``, ``ranking.csv``, ``answers.csv``,
``questions.csv`` (each question as its type summarises it), ``truth.csv``, one PNG per task under
``figures/`` and ``report.html``, a single self-contained page
(figures inlined). The admin page shows the same report for the live study (``/admin``, *Analyse now*,
or every minute while it is open).
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import sqlalchemy as sa

from .db import active, answers_t, images_t, interactions_t, participants_t, png_to_mask, stored_image
from . import alignment, groups, models, saliency, simulation
from .research import pick_study
from .stats import (bootstrap_weights, cohen_dz, holm, interval, leave_one_out, mean_interval,  # noqa: F401
                    sign_flip_p)

DEFAULT_EXPLAINERS = ("gradcam", "occlusion")
SALIENCY = "saliency (no model)"  # the bottom-up control's row among the models (saliency.py)
GRID = 64  # maps are compared on a grid of at most this many pixels a side
FLIP_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


# -- what each participant did on each task -------------------------------------------------------------
@dataclass
class Trace:
    """One participant on one task, rebuilt from the log's change events (masks only, no model)."""

    participant: str
    strokes: int = 0
    final: np.ndarray | None = None  # removed at the end (the union of the edits still applied)
    first: np.ndarray | None = None  # the first stroke
    flips: dict = field(default_factory=dict)  # model -> removed at the first change that flipped its top-1
    drop_per_pct: dict = field(default_factory=dict)  # model -> confidence drop (pp) per removed % at the end
    uploaded: bool = False  # replaced the task image by an upload: what follows is on another image


def traces(events: list[dict], shape) -> Trace:
    """Replay stroke / undo / redo / reset on masks, reading each model's logged result after each change."""
    active, redo = [], []
    t = Trace(events[0]["code"] if events else "")
    removed = np.zeros(shape, bool)
    last_models: dict = {}
    for ev in events:
        kind = ev["kind"]
        payload = json.loads(ev["payload"]) if isinstance(ev["payload"], str) else ev["payload"]
        if kind == "upload":
            t.uploaded = True
            break
        if kind == "stroke" and payload.get("prepared"):
            continue  # the researcher's prepared edit (predict-then-see): nobody chose it
        if kind == "stroke" and ev.get("mask_png") is not None:
            m = png_to_mask(ev["mask_png"])
            if m.shape != tuple(shape):
                continue
            active.append(m)
            redo.clear()
            t.strokes += 1
            if t.first is None:
                t.first = m
        elif kind == "undo" and active:
            redo.append(active.pop())
        elif kind == "redo" and redo:
            active.append(redo.pop())
        elif kind == "reset":
            active, redo = [], []
        else:
            continue
        removed = np.logical_or.reduce(active) if active else np.zeros(shape, bool)
        for m, r in (payload.get("models") or {}).items():
            last_models[m] = r
            if r.get("top1_changed") and m not in t.flips and removed.any():
                t.flips[m] = removed.copy()
    t.final = removed if t.strokes else None
    share = 100.0 * float(removed.mean())
    for m, r in last_models.items():
        tr = (r.get("tracked") or [None])[0]
        if tr and share > 0:
            t.drop_per_pct[m] = 100.0 * (tr["prob_original"] - tr["prob_modified"]) / share
    return t


# -- maps and their agreement ---------------------------------------------------------------------------
def to_grid(a: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = a.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return a.astype(np.float32)
    return cv2.resize(a.astype(np.float32), (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _tiebreak(h: np.ndarray) -> np.ndarray:
    """A human map has large ties (the share of participants is a few values): break them by a slightly
    blurred copy, so that the top-k region grows from the middle of a painted area, not from a corner."""
    import cv2

    return h + 1e-3 * cv2.GaussianBlur(h.astype(np.float32), (0, 0), 1.5) / max(float(h.max()), 1e-9)


def top_k(a: np.ndarray, k: float) -> np.ndarray:
    n = max(1, int(round(k * a.size)))
    out = np.zeros(a.size, bool)
    out[np.argsort(-a.ravel(), kind="stable")[:n]] = True
    return out.reshape(a.shape)


def agreement(human: np.ndarray, model: np.ndarray, k: float) -> dict:
    """top-k IoU at matched area, Spearman correlation, pointing both ways (human and model maps on one grid)."""
    from scipy.stats import spearmanr

    h = _tiebreak(human)
    th, tm = top_k(h, k), top_k(model, k)
    iou = float((th & tm).sum() / max((th | tm).sum(), 1))
    rho = float(spearmanr(h.ravel(), model.ravel()).statistic) if h.std() > 0 and model.std() > 0 else float("nan")
    return {"iou": iou, "spearman": rho,
            "pointing_model_in_human": float(th.ravel()[int(np.argmax(model))]),
            "pointing_human_in_model": float(tm.ravel()[int(np.argmax(h))])}


# -- the analysis ---------------------------------------------------------------------------------------
def _study_rows(engine, study_key):
    st = pick_study(engine, study_key)
    definition = json.loads(st["definition"])
    with engine.connect() as conn:
        parts = {r.id: r.code for r in conn.execute(sa.select(participants_t.c.id, participants_t.c.code)
                                                    .where(active(st["id"])))}
        rows = [dict(r) for r in conn.execute(
            sa.select(interactions_t).where(interactions_t.c.participant_id.in_(list(parts) or [-1]))
            .order_by(interactions_t.c.participant_id, interactions_t.c.seq)).mappings()]
        answers = [dict(r) for r in conn.execute(
            sa.select(answers_t).where(answers_t.c.participant_id.in_(list(parts) or [-1]))).mappings()]
        images = {t["id"]: stored_image(conn, st["id"], t["id"]) for t in definition["tasks"]}
        stored = {r[0] for r in conn.execute(sa.select(images_t.c.task_id).where(images_t.c.study_id == st["id"]))}
        truth = {}
        for t in definition["tasks"]:
            for key in ("parts", "truth"):
                if f"{key}:{t['id']}" in stored:
                    truth.setdefault(t["id"], {})[key] = stored_image(conn, st["id"], f"{key}:{t['id']}")[:, :, 0]
    for r in rows + answers:
        r["code"] = parts[r["participant_id"]]
    return st, definition, rows, answers, images, truth


def model_maps(image: np.ndarray, task: dict, explainers, pretrained: bool, device=None, log=print) -> dict:
    """{model: {"top1", "label", "maps": {explainer: map in image coordinates}, "flip": {explainer: mask}}}."""
    import ic_zoo
    from ..errors import IcZooError
    from ..session import Session, get_inpainter

    s = Session(image, pretrained=pretrained, device=device)
    fill = get_inpainter(task.get("inpainter", "telea"))
    out = {}
    for m in task["models"]:
        res = s.evaluate([m]).models[m]
        top = res.original[0]
        entry = {"top1": int(top.index), "label": top.label, "p": float(top.prob), "maps": {}, "flip": {},
                 "notes": {}}
        clf = ic_zoo.get_classifier(m, pretrained=pretrained, device=device)
        for ex in explainers:
            try:
                cm = s.explain(m, int(top.index), ex)
            except IcZooError as exc:
                entry["notes"][ex] = str(exc)
                log(f"  {m} {ex}: {exc}")
                continue
            heat = np.nan_to_num(cm.original.astype(np.float32))
            entry["maps"][ex] = heat
            entry["flip"][ex] = flip_region(clf, image, heat, int(top.index), fill)
        out[m] = entry
    return out


def flip_region(clf, image: np.ndarray, heat: np.ndarray, cls: int, fill) -> dict | None:
    """The smallest top share of ``heat`` (FLIP_FRACTIONS) whose removal changes the top-1, else None."""
    from ..errors import MaskError

    for f in FLIP_FRACTIONS:
        mask = top_k(heat, f)
        try:
            im = fill.inpaint(image, mask)
        except MaskError:
            break
        if clf.predict(im).top1 != cls:
            return {"fraction": f, "mask": mask}
    return None


def removal_effects(models: dict, image: np.ndarray, finals: list[np.ndarray], fill, n_random: int,
                    seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per participant and model (``models``: name -> (classifier, class)): the p(class) drop (pp) when their
    final removal is inpainted, and the mean drop of ``n_random`` random placements of the same mask (the
    same area and shape, moved with wrap-around). Each removal and its placements are inpainted once for all
    the models (several at a time on thread-safe inpainters) and each model sees them in one batch; the
    placements are drawn from ``seed`` in the participants' order, so every model is scored on the same
    images. A mask the inpainter refuses scores NaN. A removal identical to an earlier participant's (a prepared edit
    everyone was shown) takes that participant's scores: its random placements are the earlier one's, so
    it costs no pass and draws nothing."""
    rng = np.random.default_rng(seed)
    p0 = {name: float(clf.probabilities([image])[0, cls]) for name, (clf, cls) in models.items()}
    out: dict = {name: ([], []) for name in models}
    seen: dict[bytes, int] = {}  # a removal -> the first participant who made it (a prepared edit: everyone)
    first = [seen.setdefault(np.packbits(m).tobytes() + repr(m.shape).encode(), i) for i, m in enumerate(finals)]
    filled_all = iter(fill.inpaint_many(image, [m for i, m in enumerate(finals) if first[i] == i]))
    for i, (m, j) in enumerate(zip(finals, first)):
        if j != i:  # the same removal as an earlier participant's: the same scores, no pass and no draw
            for human, rand in out.values():
                human.append(human[j])
                rand.append(rand[j])
            continue
        filled = next(filled_all)
        if isinstance(filled, Exception):  # refused (too little context left): nothing to score
            for human, rand in out.values():
                human.append(float("nan"))
                rand.append(float("nan"))
            continue
        moved = []
        for _ in range(n_random):
            dy, dx = rng.integers(0, m.shape[0]), rng.integers(0, m.shape[1])
            moved.append(np.roll(m, (int(dy), int(dx)), axis=(0, 1)))
        images = [filled] + [r for r in fill.inpaint_many(image, moved) if not isinstance(r, Exception)]
        for name, (clf, cls) in models.items():
            drops = 100 * (p0[name] - clf.probabilities(images)[:, cls])
            out[name][0].append(float(drops[0]))
            out[name][1].append(float(np.mean(drops[1:])) if len(drops) > 1 else float("nan"))
    return {name: (np.asarray(h, float), np.asarray(r, float)) for name, (h, r) in out.items()}


PLAN_DEFAULTS = {"explainers": list(DEFAULT_EXPLAINERS), "bootstrap": 1000, "random": 8, "seed": 0,
                 "blur": {"size": 10, "sigma": 10.0}}


def image_sha(image: np.ndarray) -> str:
    """A task image's fingerprint (its shape and pixels): studies compared must show the same pictures."""
    import hashlib

    return hashlib.sha256(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def plan_of(definition: dict, explainers=None, n_boot=None, n_random=None, seed=None, blur=None) -> dict:
    """The settings a run uses: the study file's analysis plan (``analysis:``, part of the study's key) or the
    defaults, each overridden by what the caller asked; ``deviations`` names every setting asked otherwise
    than the plan says, ``hash`` identifies the plan."""
    import hashlib

    plan = definition.get("analysis")
    settings = json.loads(json.dumps({**PLAN_DEFAULTS, **(plan or {})}))
    deviations = []
    asked = {"explainers": None if explainers is None else list(explainers), "bootstrap": n_boot,
             "random": n_random, "seed": seed, "blur": blur}
    for key, value in asked.items():
        if value is None:
            continue
        if key == "blur":
            value = {"size": int(value["size"]), "sigma": float(value["sigma"])}
        elif key != "explainers":
            value = int(value)
        if plan is not None and value != plan[key]:
            deviations.append(f"{key} {value} (the plan says {plan[key]})")
        settings[key] = value
    digest = hashlib.sha256(json.dumps(plan or PLAN_DEFAULTS, sort_keys=True).encode()).hexdigest()[:12]
    return {"settings": settings, "from_study_file": plan is not None, "hash": digest, "deviations": deviations}


def analyze(engine, out: str | Path | None = None, study_key: str | None = None, explainers=None,
            n_boot: int | None = None, n_random: int | None = None, device=None, seed: int | None = None,
            log: Callable[[str], None] = print, cache: dict | None = None, blur: dict | None = None) -> dict:
    """The whole analysis (see the module docstring); writes the files into ``out`` when given. The settings
    left None come from the study file's analysis plan, or the defaults (``plan_of``); a setting given
    otherwise than the plan says is reported as a deviation. ``cache``: a dict kept between calls (the admin
    page's live report) for the model maps, which depend only on the task image, its models and the
    explainers."""
    import ic_zoo
    from ..errors import InputError
    from ..session import get_explainer, get_inpainter

    for ex in explainers or []:
        get_explainer(ex)  # an unknown name is one sentence (with the known ones) before any work
    if (n_boot is not None and int(n_boot) < 0) or (n_random is not None and int(n_random) < 1):
        raise InputError("the analysis takes --bootstrap 0 or more and --random 1 or more.")
    st, definition, rows, answers, images, truth = _study_rows(engine, study_key)
    plan = plan_of(definition, explainers, n_boot, n_random, seed, blur)
    cfg = plan["settings"]
    explainers, n_boot, n_random, seed = cfg["explainers"], cfg["bootstrap"], cfg["random"], cfg["seed"]
    bk = {"size": cfg["blur"]["size"], "sigma": cfg["blur"]["sigma"]}
    for ex in explainers:
        get_explainer(ex)  # the plan's too
    by: dict = {}
    for r in rows:
        if r["task_id"] is not None:
            by.setdefault(r["task_id"], {}).setdefault(r["code"], []).append(r)
    doc = {"study": st["key"], "title": st["title"], "explainers": list(explainers), "bootstrap": n_boot,
           "random_placements": n_random, "plan": plan, "tasks": []}
    for d in plan["deviations"]:
        log(f"this run deviates from the study's analysis plan: {d}")
    boot_iou: dict = {}  # (model, explainer) -> list of (point, bootstrap values) per task
    conditions = participant_conditions(rows)
    long_rows: list[dict] = []  # the per-participant long table (models.py)
    for task in definition["tasks"]:
        tid, image = task["id"], images[task["id"]]
        shape = image.shape[:2]
        tr = [traces(evs, shape) for _, evs in sorted(by.get(tid, {}).items())]
        with_strokes = [t for t in tr if t.strokes and not t.uploaded]
        entry = {"task": tid, "models": list(task["models"]), "participants": len(tr),
                 "with_strokes": len(with_strokes), "notes": [], "image_sha": image_sha(image)}
        doc["tasks"].append(entry)
        if len(tr) > len(with_strokes):
            entry["notes"].append(f"{len(tr) - len(with_strokes)} participant(s) made no stroke on the task image "
                                  "(or replaced it by an upload) and are left out of its maps.")
        if not with_strokes:
            entry["notes"].append("No participant removed anything on this task: there is nothing to compare.")
            log(f"task {tid}: no strokes")
            continue
        if len(with_strokes) == 1:
            entry["notes"].append("One participant only: the intervals are not defined.")
        pretrained = True
        for evs in by.get(tid, {}).values():
            for e in evs:
                if e["kind"] == "stroke":
                    pretrained = bool(json.loads(e["payload"]).get("pretrained", True))
        side = min(GRID, max(shape))
        finals = np.stack([to_grid(t.final, side) for t in with_strokes])  # (P, h, w), each in [0, 1]
        firsts = np.stack([to_grid(t.first, side) for t in with_strokes])
        human, first = finals.mean(0), firsts.mean(0)
        area = float(np.mean([t.final.mean() for t in with_strokes]))
        k = float(np.clip(area, 0.01, 0.5))
        W = bootstrap_weights(len(with_strokes), n_boot, seed)
        # (B, h, w); none for one participant, whose resamples are all the same map: an interval of one
        # value would read as certainty where there is no interval at all
        h_boot = np.tensordot(W, finals, axes=1) if len(finals) > 1 else finals[:0]
        h_jack = leave_one_out(finals) if len(finals) > 1 else finals[:0]
        entry.update(mean_removed=area, matched_k=k, human_map=human, first_map=first, flip_maps={},
                     agreement=[], effects=[])
        log(f"task {tid}: {len(with_strokes)} participant(s) with strokes, mean removal {100 * area:.1f}%")
        cache_key = (st["key"], tid, tuple(explainers), pretrained)
        maps = cache.get(cache_key) if cache is not None else None
        if maps is None:
            maps = model_maps(image, task, explainers, pretrained, device, log)
            if cache is not None:
                cache[cache_key] = maps
        entry["model_maps"] = maps
        fill = get_inpainter(task.get("inpainter", "telea"))
        clfs = {m: (ic_zoo.get_classifier(m, pretrained=pretrained, device=device), mm["top1"])
                for m, mm in maps.items()}
        removed = removal_effects(clfs, image, [t.final for t in with_strokes], fill, n_random, seed)
        # the human maps blurred once (Harmonization's metrics blur the human map), not once per model map
        hs = (human, *h_boot, *h_jack)
        blurred = [alignment.blur(h, **bk) for h in hs]

        def scored(g, hs=hs, blurred=blurred):
            """(point, bootstraps, jackknife) of agreement and the published metrics of map ``g``."""
            s_ = [{**agreement(h, g, k), **alignment.published_blurred(hb, g)} for h, hb in zip(hs, blurred)]
            return s_[0], s_[1:1 + len(h_boot)], s_[1 + len(h_boot):]

        for m, mm in maps.items():
            flipped = [t for t in with_strokes if m in t.flips]
            if flipped:
                entry["flip_maps"][m] = np.stack([to_grid(t.flips[m], side) for t in flipped]).mean(0)
            for ex, heat in mm["maps"].items():
                point, boots, jack = scored(to_grid(heat, side))
                row = {"model": m, "explainer": ex}
                for key, v in point.items():
                    row[key] = interval([b[key] for b in boots], v, [j[key] for j in jack])
                flip = mm["flip"].get(ex)
                row["model_flip_fraction"] = flip["fraction"] if flip else None
                entry["agreement"].append(row)
                boot_iou.setdefault((m, ex), []).append((point["iou"], np.array([b["iou"] for b in boots])))
            flips = np.array([float(m in t.flips) for t in with_strokes])
            per_pct = np.array([t.drop_per_pct.get(m, np.nan) for t in with_strokes])
            hd, rd = removed[m]
            diff = hd - rd
            long_rows += [{"participant": t.participant, "condition": conditions.get(t.participant, ""),
                           "task": tid, "model": m, "explainer": "", "measure": measure, "value": float(v)}
                          for t, a, b in zip(with_strokes, hd, diff)
                          for measure, v in (("human_drop_pp", a), ("human_minus_random_pp", b))]
            entry["effects"].append({"model": m, "top1": mm["label"], "flip_rate": mean_interval(flips, W),
                                     "drop_pp_per_removed_pct": mean_interval(per_pct, W),
                                     "human_drop_pp": mean_interval(hd, W), "random_drop_pp": mean_interval(rd, W),
                                     "human_minus_random_pp": mean_interval(diff, W),
                                     "human_minus_random_dz": cohen_dz(diff),
                                     "human_minus_random_p": sign_flip_p(diff, seed=seed),
                                     "human_beats_random": float(np.mean(diff[np.isfinite(diff)] > 0))
                                     if np.isfinite(diff).any() else float("nan")})
        # the bottom-up control: a saliency map that needs no model, scored like a model map
        sal = saliency.spectral_residual(image)
        sal_grid = to_grid(sal, side)
        point, boots, jack = scored(sal_grid)
        row = {"model": SALIENCY, "explainer": "spectral residual", "model_flip_fraction": None}
        for key, v in point.items():
            row[key] = interval([b[key] for b in boots], v, [j[key] for j in jack])
        entry["agreement"].append(row)
        boot_iou.setdefault((SALIENCY, "spectral residual"), []).append((point["iou"], np.array([b["iou"] for b in boots])))
        entry["saliency_map"] = sal_grid
        hblur = alignment.blur(human, normalize=True, **bk)
        for row in entry["agreement"][:-1]:
            row["explained_by_saliency"] = saliency.explained_share(hblur, to_grid(maps[row["model"]]["maps"][row["explainer"]], side),
                                                                    sal_grid)
        for eff in entry["effects"]:  # the saliency map's own flip analysis, per model
            clf = ic_zoo.get_classifier(eff["model"], pretrained=pretrained, device=device)
            fr = flip_region(clf, image, sal, maps[eff["model"]]["top1"], fill)
            eff["saliency_flip_fraction"] = fr["fraction"] if fr else None
        grids = {(m, ex): to_grid(heat, side) for m, mm in maps.items() for ex, heat in mm["maps"].items()}
        long_rows += participant_rows(tid, with_strokes, grids, side, conditions, list(maps))
        grids[(SALIENCY, "spectral residual")] = sal_grid
        ceil = alignment.ceiling(finals, grids, seed=seed, **bk)
        entry["ceiling"] = None if ceil is None else {k: v for k, v in ceil.items() if k != "models"}
        if ceil is None:
            entry["notes"].append("Fewer than four participants removed something: there is no noise ceiling.")
        for row in entry["agreement"]:
            a = (ceil or {}).get("models", {}).get((row["model"], row["explainer"]), {})
            row["alignment"] = a.get("alignment", [float("nan")] * 3)
            row["alignment_spearman"] = a.get("alignment_spearman", float("nan"))
        gt = truth.get(tid, {})
        if "truth" in gt:
            entry["truth"] = truth_scores(gt["truth"] > 127, human, h_boot, maps, side, h_jack)
        if "parts" in gt:
            entry["parts"] = parts_and_answers(gt["parts"], task, answers, with_strokes, maps, side)
    doc["ranking"] = ranking(boot_iou)
    doc["ranking_note"] = ranking_note(doc["ranking"])
    effects = [e for t in doc["tasks"] for e in t.get("effects", [])]  # one family: every task x model
    for e, p in zip(effects, holm([e["human_minus_random_p"] for e in effects])):
        e["human_minus_random_p_holm"] = p
    across_tasks(doc)
    doc["answers"] = answer_counts(definition, answers)
    doc["questions"] = question_summaries(definition, answers)
    long_rows += [{"participant": it["participant"], "condition": conditions.get(it["participant"], ""),
                   "task": it["task"], "model": it["model"], "explainer": "", "measure": "prediction_correct",
                   "value": it["correct"]} for it in simulation.predictions(rows)]
    doc["long"] = long_rows
    try:
        doc["models"] = models.fit_all(long_rows)
    except ImportError:  # statsmodels is the 'stats' extra
        doc["models"] = [{"analysis": "all", "formula": "", "terms": [],
                          "note": "Not fitted: the models need statsmodels (pip install 'ic-zoo[stats]')."}]
    doc["groups"] = groups.of_conditions(doc, [c["name"] for c in definition.get("conditions") or []],
                                         n_boot=max(int(n_boot), 200), seed=seed)
    doc["simulation"] = simulation.simulation(rows, conditions,
                                              [c["name"] for c in definition.get("conditions") or []],
                                              n_boot=max(int(n_boot), 200), seed=seed)
    if out is not None:
        doc["figures"] = write(doc, images, Path(out))
    return doc


def participant_rows(task: str, traces_: list, grids: dict, side: int, conditions: dict, names: list) -> list[dict]:
    """The long table's rows of one task (models.py): per participant with strokes and per model map, the IoU
    of their own final removal with the map's top region of the same area and the Spearman over all pixels;
    per model, whether they flipped it and the drop per removed percent."""
    out = []
    for t in traces_:
        final = to_grid(t.final, side)
        k = float(np.clip(t.final.mean(), 0.01, 0.5))
        base = {"participant": t.participant, "condition": conditions.get(t.participant, ""), "task": task}
        for (m, ex), g in grids.items():
            a = agreement(final, g, k)
            out += [{**base, "model": m, "explainer": ex, "measure": "iou", "value": a["iou"]},
                    {**base, "model": m, "explainer": ex, "measure": "spearman", "value": a["spearman"]}]
        for m in names:
            out += [{**base, "model": m, "explainer": "", "measure": "flipped", "value": float(m in t.flips)},
                    {**base, "model": m, "explainer": "", "measure": "drop_pp_per_removed_pct",
                     "value": float(t.drop_per_pct.get(m, np.nan))}]
    return out


def participant_conditions(rows: list[dict]) -> dict[str, str]:
    """Each participant's condition, as logged at consent ("" in a study without conditions)."""
    out = {}
    for r in rows:
        if r["kind"] == "consent":
            p = json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
            out[r["code"]] = p.get("condition") or ""
    return out


def truth_scores(truth: np.ndarray, human: np.ndarray, h_boot: np.ndarray, maps: dict, side: int,
                 h_jack=()) -> dict:
    """Humans vs the ground-truth region, and each model map vs it: the top-|T| IoU (T: the truth's
    area, as explain-bench scores maps) and whether the map's peak lies inside it. ``h_boot``: the
    bootstrap mean maps; ``h_jack``: the leave-one-out ones (for BCa)."""
    from ..analyses.metrics import pointing, top_m_iou

    t = to_grid(truth.astype(np.float32), side) > 0.5

    def score(a):
        return top_m_iou(a, t), pointing(a, t)

    hp = score(_tiebreak(human))
    hb = [score(_tiebreak(h)) for h in h_boot]
    hj = [score(_tiebreak(h)) for h in h_jack]
    out = {"area": float(truth.mean()), "human_iou": interval([b[0] for b in hb], hp[0], [j[0] for j in hj]),
           "human_pointing": interval([b[1] for b in hb], hp[1], [j[1] for j in hj]), "models": []}
    for m, mm in maps.items():
        for ex, heat in mm["maps"].items():
            iou, pt = score(to_grid(heat, side))
            out["models"].append({"model": m, "explainer": ex, "iou": iou, "pointing": pt})
    return out


def _part_name(text: str) -> str | None:
    """The Flower2D part a choice names ("petals" -> "petal", "center" -> "centre"), else None."""
    from ..flower2d.generator import PARTS

    t = str(text).strip().lower().replace("center", "centre")
    for name in PARTS:
        if t in (name, name + "s", name + "es") or (name == "leaf" and t == "leaves"):
            return name
    return None


def parts_and_answers(parts: np.ndarray, task: dict, answers: list[dict], traces_: list, maps: dict,
                      side: int) -> dict:
    """Where each map's mass lies, part by part, and the participants' answers that name a part against
    the part each model's map (and each model's flips) point at."""
    from ..flower2d.generator import PARTS

    names = {v: k for k, v in PARTS.items()}

    def top_part(a: np.ndarray) -> tuple[str, dict]:
        a = a.astype(np.float32)
        if a.shape != parts.shape:
            import cv2

            a = cv2.resize(a, (parts.shape[1], parts.shape[0]), interpolation=cv2.INTER_LINEAR)
        mass = {names[v]: float(a[parts == v].mean()) for v in np.unique(parts) if v in names}
        return max(mass, key=mass.get), mass

    human = np.mean([t.final for t in traces_], 0)
    out = {"human_top_part": top_part(human)[0], "models": [], "questions": []}
    for m, mm in maps.items():
        for ex, heat in mm["maps"].items():
            p, mass = top_part(heat)
            out["models"].append({"model": m, "explainer": ex, "top_part": p, "mean_by_part": mass})
        flips = [t.flips[m] for t in traces_ if m in t.flips]
        if flips:
            out.setdefault("flip_top_part", {})[m] = top_part(np.mean(flips, 0))[0]
    for q in task.get("questions", []):
        if q.get("type") != "choice" or not any(_part_name(c) for c in q.get("choices", [])):
            continue
        said = [_part_name(a["answer"]) for a in answers if a["task_id"] == task["id"] and a["question_id"] == q["id"]]
        said = [s for s in said if s]
        if not said:
            continue
        row = {"question": q["id"], "answers": {p: said.count(p) for p in sorted(set(said))},
               "agree_with_model": {}}
        for r in out["models"]:
            row["agree_with_model"][f"{r['model']} ({r['explainer']})"] = float(np.mean([s == r["top_part"] for s in said]))
        row["agree_with_their_removals"] = float(np.mean([s == out["human_top_part"] for s in said]))
        row["agree_with_flips"] = {m: float(np.mean([s == part for s in said]))
                                   for m, part in out.get("flip_top_part", {}).items()}
        out["questions"].append(row)
    return out


def ranking(boot_iou: dict) -> list[dict]:
    """Per (model, explainer): the mean IoU over tasks with a bootstrap interval (bias-corrected; no
    jackknife across tasks, so without acceleration), best first."""
    out = []
    for (m, ex), per_task in boot_iou.items():
        point = float(np.mean([p for p, _ in per_task]))
        n = min((len(b) for _, b in per_task), default=0)
        boots = np.mean([b[:n] for _, b in per_task], 0) if n else np.array([])
        out.append({"model": m, "explainer": ex, "tasks": len(per_task), "iou": interval(boots, point)})
    out.sort(key=lambda r: -r["iou"][0])
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


def ranking_note(rows: list[dict]) -> str:
    """Whether the ranking means anything, in one sentence: not when every IoU is small, nor when the first two
    intervals overlap, nor without intervals."""
    models = [r for r in rows if r["model"] != SALIENCY]
    if len(models) < 2:
        return "One model map only: there is nothing to rank."
    if max(r["iou"][0] for r in models) <= 0.05:
        return ("Every model map's IoU with the human map is at most 0.05: no map is where the participants "
                "removed, and the order means nothing.")
    a, b = models[0]["iou"], models[1]["iou"]
    if not (np.isfinite(a[1]) and np.isfinite(b[2])):
        return "The intervals are not defined (too few participants): the order is not tested."
    if a[1] <= b[2]:
        return (f"The first two intervals overlap ({models[0]['model']} ({models[0]['explainer']}) and "
                f"{models[1]['model']} ({models[1]['explainer']})): the data cannot tell them apart.")
    return f"The first map's interval lies above the second's: {models[0]['model']} ({models[0]['explainer']}) leads."


def across_tasks(doc: dict) -> None:
    """Adds to each ranking row, over the tasks: the mean pointing both ways, the mean IoU with the
    ground-truth region (Flower2D tasks) and the share of part-naming answers that name the part its map
    is on; and to the document the humans' own IoU with the truth over the same tasks."""
    def mean(v: list) -> float:
        return float(np.mean(v)) if v else float("nan")

    for r in doc["ranking"]:
        key, label = (r["model"], r["explainer"]), f"{r['model']} ({r['explainer']})"
        rows = [a for e in doc["tasks"] for a in e.get("agreement", []) if (a["model"], a["explainer"]) == key]
        for c in ("pointing_model_in_human", "pointing_human_in_model"):
            r[c] = mean([a[c][0] for a in rows])
        r["truth_iou"] = mean([t["iou"] for e in doc["tasks"] for t in (e.get("truth") or {}).get("models", [])
                               if (t["model"], t["explainer"]) == key])
        r["answers_naming_its_part"] = mean([q["agree_with_model"][label] for e in doc["tasks"]
                                             for q in (e.get("parts") or {}).get("questions", [])
                                             if label in q["agree_with_model"]])
    human = [e["truth"]["human_iou"][0] for e in doc["tasks"] if e.get("truth")]
    doc["humans_vs_truth"] = {"tasks": len(human), "iou": mean(human)}


RANKING_COLUMNS = ["rank", "model", "explainer", "tasks", "iou", "pointing_model_in_human",
                   "pointing_human_in_model", "truth_iou", "answers_naming_its_part"]


def answer_counts(definition: dict, answers: list[dict]) -> list[dict]:
    out = {}
    for a in answers:
        key = (a["task_id"], a["question_id"], a["answer"])
        out[key] = out.get(key, 0) + 1
    return [{"task": t, "question": q, "answer": a, "count": n} for (t, q, a), n in sorted(out.items(), key=str)]


def question_summaries(definition: dict, answers: list[dict]) -> list[dict]:
    """Per task and question, what its type reports of the answers (``QuestionType.summary``: how many
    answered; a choice's count per choice; a scale's mean with its 95 % t interval, median and counts)."""
    from .definition import questions_of

    out = []
    for (tid, qid), q in questions_of(definition).items():
        said = [a["answer"] for a in answers if a["task_id"] == tid and a["question_id"] == qid]
        out.append({"task": tid, "question": qid, **q.kind.summary(q, said)})
    return out


def question_rows(doc: dict) -> list[dict]:
    """``question_summaries`` as table rows: the counts and the interval written out."""
    rows = []
    for s in doc.get("questions", []):
        ci = s.get("mean_ci95")
        rows.append({"task": s["task"], "question": s["question"], "type": s["type"], "n": s["n"],
                     "mean": s.get("mean"), "mean ci95": f"{ci[0]:.2f} to {ci[1]:.2f}" if ci else "",
                     "median": s.get("median"),
                     "counts": ", ".join(f"{k}: {v}" for k, v in (s.get("counts") or {}).items())})
    return rows


QUESTION_COLUMNS = ["task", "question", "type", "n", "mean", "mean ci95", "median", "counts"]


# -- writing --------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, list):
        p, lo, hi = v
        return "n/a" if not np.isfinite(p) else (f"{p:.2f}" if not np.isfinite(lo) else f"{p:.2f} [{lo:.2f}, {hi:.2f}]")
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else (f"{v:.1e}" if 0 < abs(v) < 0.01 else f"{v:.2f}")
    return "" if v is None else str(v)


TRUTH_COLUMNS = ["who", "iou", "pointing"]


def truth_rows(e: dict) -> list[dict]:
    t = e["truth"]
    return [{"task": e["task"], "who": "humans (removal map)", "iou": t["human_iou"], "pointing": t["human_pointing"]}] + [
        {"task": e["task"], "who": f"{r['model']} ({r['explainer']})", "iou": r["iou"], "pointing": r["pointing"]}
        for r in t["models"]]


AGREEMENT_COLUMNS = ["task", "model", "explainer", "iou", "spearman", "pointing_model_in_human",
                     "pointing_human_in_model", "spearman_blurred", "iou_top10", "dice_top10", "alignment",
                     "alignment_spearman", "explained_by_saliency", "model_flip_fraction"]
EFFECT_COLUMNS = ["task", "model", "top1", "flip_rate", "drop_pp_per_removed_pct", "human_drop_pp",
                  "random_drop_pp", "human_minus_random_pp", "human_minus_random_dz", "human_minus_random_p",
                  "human_minus_random_p_holm", "human_beats_random", "saliency_flip_fraction"]


def _csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Intervals become three columns: value, value_lo, value_hi."""
    with open(path, "w", newline="") as f:
        cols = []
        for c in columns:
            cols += [c, f"{c}_lo", f"{c}_hi"] if any(isinstance(r.get(c), list) for r in rows) else [c]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            flat = {}
            for c in columns:
                v = r.get(c)
                if isinstance(v, list):
                    flat[c], flat[f"{c}_lo"], flat[f"{c}_hi"] = v
                else:
                    flat[c] = v
            w.writerow(flat)


FIGURE_COLUMNS = 4  # panels per row: every task's figure is as wide, whatever its number of models
PANEL_INCHES = 2.4
HEAT_CMAP = "viridis"  # perceptually uniform and readable with every common colour-vision deficiency


def figure(entry: dict, image: np.ndarray, fmt: str = "png", dpi: int = 150) -> bytes:
    """The task's figure as a paper needs it: panels of one size in rows of ``FIGURE_COLUMNS`` (the image; the
    human removal and first-stroke maps, the saliency control and each model's map, each overlaid on the image
    in a colour-blind-safe map with its colour bar; each model's flip region outlined), titles wrapped with the
    full class names and each map's IoU and Spearman; ``fmt`` png (at ``dpi``), pdf or svg."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grey = image.mean(2) if image.ndim == 3 else image
    panels = [("image", None, None), (f"human removal (n={entry['with_strokes']}), share of participants",
                                      entry["human_map"], None),
              ("first strokes, share of participants", entry["first_map"], None)]
    score = {(a["model"], a["explainer"]): a for a in entry["agreement"]}
    if entry.get("saliency_map") is not None:
        a = score.get((SALIENCY, "spectral residual"))
        panels.append((f"saliency, no model (control): IoU {a['iou'][0]:.2f}, ρ {a['spearman'][0]:.2f}",
                       entry["saliency_map"], None))
    for m, flip in entry["flip_maps"].items():
        rate = next((e["flip_rate"][0] for e in entry["effects"] if e["model"] == m), float("nan"))
        panels.append((f"removed when {m} flipped ({100 * rate:.0f}% of participants)", flip, None))
    for m, mm in entry["model_maps"].items():
        for ex, heat in mm["maps"].items():
            a = score[(m, ex)]
            flip = mm.get("flip", {}).get(ex)
            outline = flip["mask"] if flip else None
            title = (f"{m}, {ex}: {mm['label']}. IoU {a['iou'][0]:.2f}, ρ {a['spearman'][0]:.2f}, pointing "
                     f"{a['pointing_model_in_human'][0]:.0f}/{a['pointing_human_in_model'][0]:.0f}"
                     + (f"; outlined: its top {100 * flip['fraction']:.0f}% flips it" if flip else ""))
            panels.append((title, heat, outline))
    cols = FIGURE_COLUMNS
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES * cols, PANEL_INCHES * 1.25 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, heat, outline) in zip(axes.ravel(), panels):
        if heat is None:
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        else:
            h = np.asarray(heat, np.float32)
            if h.shape != grey.shape:
                import cv2

                h = cv2.resize(h, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
            ax.imshow(grey, cmap="gray", vmin=0, vmax=255 if grey.max() > 1 else 1)
            im = ax.imshow(h, cmap=HEAT_CMAP, alpha=0.6, vmin=0, vmax=max(float(h.max()), 1e-12))
            if outline is not None:
                o = np.asarray(outline, np.float32)
                if o.shape != grey.shape:
                    import cv2

                    o = cv2.resize(o, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_NEAREST)
                ax.contour(o, levels=[0.5], colors=["#ff3d00"], linewidths=1.2)
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            cb.ax.tick_params(labelsize=6)
        ax.set_title("\n".join(textwrap.wrap(title, 34)), fontsize=7)
    fig.suptitle(f"task {entry['task']}: matched area {100 * entry['matched_k']:.0f}%", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write(doc: dict, images: dict, out: Path) -> dict:
    """The files (see the module docstring); returns the figures' PNG bytes by task."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    agree, effects, figs = [], [], {}
    for e in doc["tasks"]:
        agree += [{"task": e["task"], **a} for a in e.get("agreement", [])]
        effects += [{"task": e["task"], **a} for a in e.get("effects", [])]
        if "human_map" in e:
            png = figure(e, images[e["task"]])
            (out / "figures" / f"{e['task']}.png").write_bytes(png)
            for fmt in ("pdf", "svg"):  # vector versions for a paper
                (out / "figures" / f"{e['task']}.{fmt}").write_bytes(figure(e, images[e["task"]], fmt))
            figs[e["task"]] = png
    _csv(out / "agreement.csv", agree, AGREEMENT_COLUMNS)
    _csv(out / "effects.csv", effects, EFFECT_COLUMNS)
    _csv(out / "ranking.csv", doc["ranking"], RANKING_COLUMNS)
    _csv(out / "answers.csv", doc["answers"], ["task", "question", "answer", "count"])
    _csv(out / "questions.csv", question_rows(doc), QUESTION_COLUMNS)
    _csv(out / "truth.csv", [r for e in doc["tasks"] if e.get("truth") for r in truth_rows(e)], ["task"] + TRUTH_COLUMNS)
    _csv(out / "participants_long.csv", doc.get("long", []), models.LONG_COLUMNS)
    _csv(out / "mixed_models.csv", [t for f in doc.get("models", []) for t in f["terms"]], models.MODEL_COLUMNS)
    sim = doc.get("simulation")
    if sim:
        _csv(out / "simulation_by_condition.csv", sim["by_condition"], simulation.BY_CONDITION_COLUMNS)
        _csv(out / "simulation_differences.csv", sim["differences"], simulation.DIFFERENCE_COLUMNS)
        _csv(out / "simulation_learning.csv", sim["learning"], simulation.LEARNING_COLUMNS)
        _csv(out / "simulation_participants.csv", sim["participants_table"], simulation.PARTICIPANT_COLUMNS)
    (out / "analysis.json").write_text(json.dumps(jsonable(doc), indent=1))
    (out / "report.html").write_text(report_html(doc, figs))
    return figs


def jsonable(doc: dict) -> dict:
    """The document without its arrays (maps are in the figures), NaN as null."""
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()
                    if not isinstance(v, (np.ndarray, bytes)) and k not in ("maps", "flip", "figures", "long")}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (float, np.floating)):
            return None if not np.isfinite(o) else float(o)
        if isinstance(o, np.integer):
            return int(o)
        return o

    return clean(doc)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    # a wide table scrolls in its own box: the page keeps the window's width
    return f"<div class=ic-scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


READING = """<p><b>How to read it.</b> The <i>human removal map</i> is the share of participants whose final image
had each pixel removed (each participant counts once, however many strokes). <i>IoU</i>: overlap of the
human map's and the model map's top regions of the same area (the participants' mean removed area);
1 means the same region. <i>Spearman ρ</i>: rank correlation of the two maps over all pixels.
<i>Pointing</i>: whether the model map's peak lies in the human top region (model in human) and the
other way round. <i>Flip rate</i>: the share of participants whose edits changed the model's top-1 at
some point. <i>Drop per removed %</i>: the fall of the original class's probability (percentage points)
per percent of the image removed, at the end. <i>Human − random</i>: how much more the participants'
final removals lowered that probability than the same masks moved to random places (same inpainter);
above 0 means people removed what the model uses; beside it its effect size (<i>dz</i>: the mean of the
participants' differences over their standard deviation) and a sign-flip permutation p (exact up to 12
participants), Holm-adjusted over every task and model of the report (<i>p holm</i>). The ranking is followed by
a sentence saying whether it means anything (not when every IoU is at most 0.05, nor when the first two
intervals overlap). <i>Spearman blurred</i>, <i>IoU top 10</i> and <i>Dice top 10</i>
are the Harmonization metrics (Fel et al., NeurIPS 2022) as they define them: the human map blurred with their
Gaussian (10 taps, sigma 10, zero padding), Spearman over all pixels, IoU and Dice of each map's pixels above its
90th percentile; comparable with published numbers. <i>Alignment</i>: the Pearson r of the model map with the
human map (blurred, border-normalised) over the <i>human noise ceiling</i>, the Spearman-Brown corrected
split-half reliability of the participants' map: 1 means the model agrees with the participants as well as
another cohort of as many participants would; its interval carries the ceiling's uncertainty. <i>Alignment
spearman</i>: the published Spearman over the ceiling in rho, the form of their headline score (a point).
Brackets: bootstrap 95 % intervals over participants (BCa, bias-corrected and accelerated).
In the ranking, over the tasks: <i>truth iou</i>, the overlap of the model's map with the region that
really decides the class (Flower2D tasks), and <i>answers naming its part</i>, the share of answers that
name the part the model's map is on. In the figures (PNG here; PDF and SVG beside them), every map is drawn over the
image in viridis (colour-blind safe) with its colour bar; the red outline on a model's map is the smallest top
share of the map whose removal flips that model by itself.</p>"""


def plan_html(plan: dict | None) -> str:
    """The report's statement of the analysis plan: its settings and hash, and every deviation of this run."""
    if not plan:
        return ""
    c = plan["settings"]
    what = (f"explainers {', '.join(c['explainers'])}; {c['bootstrap']} bootstrap resamples; {c['random']} random "
            f"placements; seed {c['seed']}; blur {c['blur']['size']} taps, sigma {c['blur']['sigma']:g}")
    src = "the study file's analysis plan" if plan["from_study_file"] else "the default settings (the study file fixes no plan)"
    out = f"<p><b>Analysis plan</b> ({src}, hash <code>{plan['hash']}</code>): {html.escape(what)}.</p>"
    if plan["deviations"]:
        out += ("<p class=note><b>This run deviates from the plan:</b> "
                + html.escape("; ".join(plan["deviations"])) + ".</p>")
    return out


def report_html(doc: dict, figs: dict) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(doc['title'])}: analysis</title>"
            f"</head><body>{report_body(doc, figs)}</body></html>")


REPORT_STYLE = (".ic-report{font-family:system-ui,sans-serif;font-size:15px;line-height:1.45;max-width:1200px;"
                "margin:1em auto;padding:0 1em}.ic-report h2{font-size:22px}.ic-report h3{font-size:17px}"
                ".ic-report .ic-scroll{max-width:100%;overflow-x:auto;margin:.5em 0}"
                ".ic-report table{border-collapse:collapse}.ic-report td,.ic-report th{border:1px solid #ccc;"
                "padding:4px 8px;font-size:14px;vertical-align:top}.ic-report th{background:#f3f3f3;text-align:left}"
                ".ic-report img{max-width:100%;height:auto}.ic-report .note{color:#8a5a00}")


def groups_html(result: dict) -> str:
    """The comparison's tables, for the report of a study with conditions and for compare.html."""
    return ("<h2>Groups compared</h2><p>Each group's mean per task (and over all tasks) with its 95 % BCa "
            "interval over participants; every pair's difference (first minus second) with its BCa interval, "
            "Hedges' g, a permutation p and the p Holm-adjusted over every row of the table.</p>"
            + _table(result["by_group"], groups.BY_GROUP_COLUMNS)
            + _table(result["differences"], groups.DIFFERENCE_COLUMNS))


def model_tables_html(fits: list[dict], title: str = "Models of the per-participant table") -> str:
    """The fitted models (``models.py``): per model its formula, method, terms and note."""
    if not fits:
        return ""
    parts = [f"<h2>{html.escape(title)}</h2><p>Fitted to <code>participants_long.csv</code> "
             "(one row per participant x task x model x measure; it loads unchanged in R): estimates with "
             "95 % Wald intervals and p values; for the logistic GEEs also as odds ratios.</p>"]
    for f in fits:
        parts.append(f"<h3>{html.escape(f['analysis'])}: <code>{html.escape(f['formula'])}</code></h3>"
                     + (f"<p>{html.escape(f.get('method', ''))}.</p>" if f.get("method") else "")
                     + (_table([{**t, "estimate": [t["estimate"], t["ci_low"], t["ci_high"]]} for t in f["terms"]],
                               ["term", "estimate", "p", "odds_ratio", "n", "groups"]) if f["terms"] else "")
                     + (f"<p class=note>{html.escape(f['note'])}</p>" if f.get("note") else ""))
    return "".join(parts)


def report_body(doc: dict, figs: dict) -> str:
    """The report without its page (what the admin page shows), its style included."""
    parts = [f"<h1>{html.escape(doc['title'])}: humans vs models</h1>",
             f"<p>Study <code>{html.escape(doc['study'])}</code>; explainers: {html.escape(', '.join(doc['explainers']))};"
             f" {doc['bootstrap']} bootstrap resamples; {doc['random_placements']} random placements per removal.</p>",
             plan_html(doc.get("plan")), READING, "<h2>Which model looks where people look</h2>",
             _table(doc["ranking"], RANKING_COLUMNS),
             f"<p class=note>{html.escape(doc.get('ranking_note', ''))}</p>"]
    if doc.get("humans_vs_truth", {}).get("tasks"):
        parts.append(f"<p>On the {doc['humans_vs_truth']['tasks']} task(s) with a ground-truth region, the "
                     f"participants' removal map overlaps it with IoU {doc['humans_vs_truth']['iou']:.2f} "
                     "(<i>truth iou</i> above: each model's map, the same way).</p>")
    for e in doc["tasks"]:
        parts.append(f"<h2>Task {html.escape(e['task'])}</h2><p>{e['participants']} participant(s), "
                     f"{e['with_strokes']} with strokes.</p>")
        parts += [f"<p class=note>{html.escape(n)}</p>" for n in e["notes"]]
        if e["task"] in figs:
            b64 = base64.b64encode(figs[e["task"]]).decode()
            parts.append(f'<img alt="maps of task {html.escape(e["task"])}" src="data:image/png;base64,{b64}">')
        c = e.get("ceiling")
        if c:
            parts.append(f"<p><b>Human noise ceiling</b> (split-half over {c['participants']} participants, "
                         f"Spearman-Brown corrected, Pearson r of blurred maps): {html.escape(_fmt(c['ceiling']))}; "
                         f"in Spearman's rho {html.escape(_fmt(c['ceiling_spearman']))}. <i>alignment</i> below is "
                         "each map's agreement as a fraction of it.</p>")
        if e.get("agreement"):
            parts.append("<h3>Agreement</h3>" + _table(e["agreement"], AGREEMENT_COLUMNS[1:]))
        if e.get("effects"):
            parts.append("<h3>Effect of the participants' removals</h3>" + _table(e["effects"], EFFECT_COLUMNS[1:]))
        if e.get("truth"):
            parts.append(f"<h3>Against the ground truth</h3><p>The region that decides the class covers "
                         f"{100 * e['truth']['area']:.1f}% of the image; IoU of each map's top region of that area "
                         "with it, and whether the map's peak lies inside it.</p>" + _table(truth_rows(e), TRUTH_COLUMNS))
        for q in (e.get("parts") or {}).get("questions", []):
            rows = [{"whose map": k, "top part": next((r["top_part"] for r in e["parts"]["models"]
                                                      if f"{r['model']} ({r['explainer']})" == k), ""),
                     "answers naming it": v} for k, v in q["agree_with_model"].items()]
            rows.append({"whose map": "the participants' own removals", "top part": e["parts"]["human_top_part"],
                         "answers naming it": q["agree_with_their_removals"]})
            rows += [{"whose map": f"the removals that flipped {m}", "top part": e["parts"]["flip_top_part"][m],
                      "answers naming it": v} for m, v in q.get("agree_with_flips", {}).items()]
            said = ", ".join(f"{k} {n}" for k, n in q["answers"].items())
            parts.append(f"<h3>Question {html.escape(q['question'])}: the part people named, against the maps</h3>"
                         f"<p>Answers: {html.escape(said)}.</p>" + _table(rows, ["whose map", "top part", "answers naming it"]))
    sim = doc.get("simulation")
    if sim:
        parts.append("<h2>Forward simulation: predicting the models</h2>"
                     f"<p>{sim['items']} model predictions by {sim['participants']} participant(s). <i>Accuracy</i>: "
                     "a participant's share of right predictions (each model of each trial once; <i>correct</i> = every "
                     "asked part right), averaged over the condition's participants, with its 95 % BCa interval over "
                     "participants. <i>Difference</i>: first condition minus second, BCa interval (participants "
                     "resampled within each condition), two-sided permutation p (condition labels shuffled) and "
                     "Holm-adjusted over the pairs of one measure and phase.</p>"
                     + _table(sim["by_condition"], simulation.BY_CONDITION_COLUMNS))
        if sim["differences"]:
            parts.append("<h3>Between conditions</h3>" + _table(sim["differences"], simulation.DIFFERENCE_COLUMNS))
        parts.append("<h3>Accuracy by trial (learning)</h3>" + _table(sim["learning"], simulation.LEARNING_COLUMNS))
    if doc.get("groups"):
        parts.append(groups_html(doc["groups"]) + model_tables_html(doc["groups"].get("models", []),
                                                                            "The groups' models"))
    parts.append(model_tables_html(doc.get("models") or []))
    if doc.get("questions"):
        parts.append("<h2>Questions</h2><p>Per question, as its type reports it: how many answered, a choice's "
                     "count per choice, a scale's mean with its 95 % interval (t distribution) and median.</p>"
                     + _table(question_rows(doc), QUESTION_COLUMNS))
    if doc["answers"]:
        parts.append("<h2>Answers</h2>" + _table(doc["answers"], ["task", "question", "answer", "count"]))
    return f"<style>{REPORT_STYLE}</style><div class=ic-report>{''.join(parts)}</div>"

