"""What the app shows, computed without any UI library: tables, map panels, crop boxes, the history plot.

Kept here (not in app.py) so that the CLI, notebooks and tests can produce the same views, and so
that app.py stays layout and event wiring.
"""
from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

import numpy as np

from .viz import diverging, overlay

if TYPE_CHECKING:  # the analyses' answers, read by attribute
    from ..analyses.history import History
    from ..analyses.inpainter_check import InpainterCheck, ModelCheck
    from ..analyses.stroke_effect import StrokeEffect

#: colours for per-model crop boxes and history lines (RGB)
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167)]
UP, DOWN = "#1a7f37", "#cf222e"  # green up, red down


# an absolute path on the server: a slash not after a letter, digit, ':' or '/' (so not a URL, nor an
# owner/name repo id), then at least two path parts
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:~/|/)(?:[\w.@+~-]+/)+[\w.@+~-]*")


def public_text(sentence) -> str:
    """A library sentence for a web page: server paths (a cache folder, a weights file) replaced by "[a
    folder on the server]". The library and the CLI keep them: there the reader is the server's user."""
    return _SERVER_PATH.sub("[a folder on the server]", str(sentence))


def md_text(sentence) -> str:
    """A library sentence as Markdown shows it whole: its ``<name>`` placeholders are text, not HTML tags;
    server paths left out (``public_text``)."""
    return public_text(sentence).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def short(label: str, n: int = 38) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def model_title(name: str, res) -> str:
    """A model's heading: its top-1, struck through and replaced when the edit changed it."""
    if res.top1_changed:
        return f"### {name}\ntop-1: ~~{short(res.original[0].label)}~~ → **{short(res.modified[0].label)}**"
    return f"### {name}\ntop-1: **{short(res.original[0].label)}** ({100 * res.modified[0].prob:.1f}%)"


def class_rows(res, mode: str = "tracked") -> list[dict]:
    """Rows of one model's table. ``tracked``: the original's top-k followed into the modified image;
    ``modified``: the modified image's own top-k, with where each class stood in the original."""
    if mode == "tracked" or res.modified is None:
        return [{"index": t.index, "label": t.label, "original": t.prob_original, "modified": t.prob_modified,
                 "delta_pp": t.delta_pp, "rank_original": t.rank_original, "rank_modified": t.rank_modified}
                for t in res.tracked]
    po = res.probs_original
    return [{"index": c.index, "label": c.label, "original": float(po[c.index]), "modified": c.prob,
             "delta_pp": 100 * (c.prob - float(po[c.index])), "rank_original": int((po > po[c.index]).sum()) + 1,
             "rank_modified": r + 1} for r, c in enumerate(res.modified)]


def first_synonyms(labels) -> dict[str, str]:
    """The short name of each label that has one: its first synonym ("dock, dockage, docking facility" ->
    "dock"), where no other class of the same model starts with it (Flower2D's "red petals, green centre"
    is not a list of synonyms: "red petals" starts three classes, so it is kept whole)."""
    import collections

    firsts = {lab: lab.split(",")[0].strip() for lab in labels if "," in lab}
    count = collections.Counter(lab.split(",")[0].strip() for lab in labels)
    return {lab: f for lab, f in firsts.items() if f and count[f] == 1}


def label_cell(label: str, shorter: dict[str, str] | None = None) -> str:
    """A table's class cell (markdown): the short name, the full label on hover; escaped, as labels come
    from plugins and downloaded configs."""
    shown = short((shorter or {}).get(label, label), 30)
    return f'<span title="{html.escape(label, quote=True)}">{html.escape(shown)}</span>'


TABLE_TYPES = ["markdown", "number", "number", "number"]  # the Dataframe's datatype for table_frame


def table_frame(rows: list[dict], shorter: dict[str, str] | None = None):
    """A pandas Styler: the class by its short name (the full label on hover: ``label_cell``), confidences
    in %, the change in percentage points coloured green up, red down."""
    import pandas as pd

    return style_table(pd.DataFrame({
        "class": [label_cell(r["label"], shorter) for r in rows],
        "orig. %": [100 * r["original"] for r in rows],
        "mod. %": [100 * r["modified"] for r in rows],
        "Δ pp": [r["delta_pp"] for r in rows],
    }))


def _colour(v):
    if not isinstance(v, float) or np.isnan(v) or abs(v) < 0.05:
        return ""
    return f"color: {UP if v > 0 else DOWN}; font-weight: 600"


def style_table(df):
    """The table's look, applied to its numbers (a Styler cannot be pickled; its DataFrame can)."""
    return df.style.format({"orig. %": "{:.1f}", "mod. %": "{:.1f}", "Δ pp": "{:+.1f}"}, na_rep="—") \
        .map(_colour, subset=["Δ pp"])


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], 0)


def _fit(img: np.ndarray, width: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if w == width:
        return img
    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA if w > width
                      else cv2.INTER_LINEAR)


def map_panel(original: np.ndarray, modified: np.ndarray, maps, width: int = 256, box=None) -> np.ndarray:
    """One picture per model: the class map on the original, on the modified image (one shared scale),
    and their signed difference (red rose, blue fell), captioned with the class, above the colour bars
    of both scales."""
    a, b, d = map_tiles(original, modified, maps, width=width, box=box)
    what = short(maps.label, 30)
    tiles = [_caption(a, f"original: {what}"), _caption(b, f"modified: {what}"), _caption(d, "difference")]
    sep = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    top = np.concatenate([tiles[0], sep, tiles[1], sep, tiles[2]], 1)
    shared = colour_bar(2 * width + 4, f"{maps.explainer}, one scale for both: 0 to {maps.scale:.3g}")
    diff = colour_bar(width, "fell    0    rose", diverging_bar=True)
    sep = np.full((shared.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([top, np.concatenate([shared, sep, diff], 1)], 0)


def map_tiles(original: np.ndarray, modified: np.ndarray, maps, width: int | None = None, box=None) -> tuple:
    """The three pictures of a model's maps, uncaptioned: the class map on the original and on the modified
    image (one shared scale) and their signed difference (red rose, blue fell), each ``width`` pixels wide
    (None: the image's own size), with the model's crop frame when ``box`` is given."""
    from .viz import draw_box

    heat_a, heat_b, frame = maps.original, maps.modified, max(1, original.shape[1] // 200)
    if width and width < original.shape[1]:
        # made at the size shown, not made at the image's and shrunk: the images and the maps are shrunk
        # first (area averaging, the maps' values kept), so colouring and blending cost a third of the pixels
        import cv2

        s = width / original.shape[1]
        original, modified = _fit(original, width), _fit(modified, width)
        size = (original.shape[1], original.shape[0])
        heat_a, heat_b = (cv2.resize(np.ascontiguousarray(m, np.float32), size, interpolation=cv2.INTER_AREA)
                          for m in (heat_a, heat_b))
        box = None if box is None else tuple(v * s for v in box)
        frame = max(1, width // 200)
    a = overlay(original, heat_a)
    b = overlay(modified, heat_b)
    d = diverging(heat_b - heat_a, modified)
    if box is not None:
        a, b, d = (draw_box(x, box, (255, 255, 255), frame) for x in (a, b, d))
    return tuple(_fit(x, width) for x in (a, b, d)) if width else (a, b, d)


def css_ramp(rgb: np.ndarray) -> str:
    """CSS gradient stops of a colour ramp (an (n, 3) or (1, n, 3) uint8 array, evenly spaced)."""
    rgb = np.asarray(rgb).reshape(-1, 3)
    n = len(rgb)
    return ", ".join(f"#{r:02x}{g:02x}{b:02x} {100 * i / (n - 1):.1f}%" for i, (r, g, b) in enumerate(rgb.tolist()))


def map_legend_html(maps) -> str:
    """The maps' colour bars as HTML, at the page's text size: the shared scale of the two class maps (0
    to its maximum, with ticks) and the difference's (fell, 0, rose)."""
    import html

    from .viz import _jet

    hi = float(maps.scale)
    ramp = np.linspace(0, 1, 17, dtype=np.float32)[None]

    def bar(css: str, ticks: list[str], caption: str) -> str:
        spans = "".join(f"<span>{html.escape(t)}</span>" for t in ticks)
        return (f'<div class="ic-legend"><div class="ic-bar" style="background: linear-gradient(to right, {css})">'
                f'</div><div class="ic-ticks">{spans}</div><div class="ic-caption">{html.escape(caption)}</div></div>')

    return ('<div class="ic-legends">'
            + bar(css_ramp(_jet(ramp)), ["0", f"{hi / 2:.3g}", f"{hi:.3g}"],
                  f"{maps.explainer} map of {maps.label}: one scale for the original and the modified image")
            + bar(css_ramp(diverging(ramp * 2 - 1)), ["fell", "0", "rose"], "difference: modified minus original")
            + "</div>")


def blank_text(maps, markdown: bool = True) -> str:
    """The line beside a blank map (``ClassMaps.blank``: no positive evidence, zero everywhere), naming the
    explainers that do give a map of the class for this model; "" for a map that is not blank. Plain text
    (for the CLI) without ``markdown``."""
    if not maps.blank:
        return ""
    which = ("" if maps.blank_original and maps.blank_modified
             else " of the original" if maps.blank_original else " of the modified image")
    em = "*" if markdown else ""
    line = (f"No positive evidence for {em}{short(maps.label)}{em} in this {maps.explainer} map{which} "
            "(zero everywhere: for a CAM, every weighted activation is negative)")
    alts = maps.alternatives
    if alts:
        names = alts[0] if len(alts) == 1 else ", ".join(alts[:-1]) + " and " + alts[-1]
        line += f"; {names} give{'s' if len(alts) == 1 else ''} one for this model"
    elif alts is not None:
        line += "; no other interactive explainer gives one for this model"
    return line + "."


def titled(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` with a one-line title above it (a contrastive panel names both of its classes there)."""
    return _caption(img, text)


def colour_bar(width: int, text: str = "", diverging_bar: bool = False) -> np.ndarray:
    """A horizontal colour bar (jet 0 to the shared maximum, or blue-white-red for a difference) with a
    caption under it."""
    import cv2

    from .viz import _jet

    ramp = np.linspace(0, 1, max(width, 2), dtype=np.float32)[None].repeat(10, 0)
    bar = diverging(ramp * 2 - 1) if diverging_bar else _jet(ramp)
    out = np.concatenate([bar, np.full((18, bar.shape[1], 3), 255, np.uint8)], 0)
    if text:
        cv2.putText(out, text, (4, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (30, 30, 30), 1, cv2.LINE_AA)
    return out


def single_panel(image: np.ndarray, heat: np.ndarray, title: str, width: int = 256) -> np.ndarray:
    return _caption(_fit(overlay(image, heat), width), title)


def boxes_overlay(image: np.ndarray, boxes: dict[str, tuple], width: int | None = None) -> np.ndarray:
    """Draw every model's input crop (what it actually sees) on ``image``, with a legend."""
    import cv2

    from .viz import draw_box

    out = image.copy()
    lw = max(2, image.shape[1] // 160)
    for i, (name, box) in enumerate(boxes.items()):
        # coinciding crops would hide each other: each model's outline sits one line width further in
        x0, y0, x1, y1 = box
        out = draw_box(out, (x0 + i * lw, y0 + i * lw, x1 - i * lw, y1 - i * lw), PALETTE[i % len(PALETTE)], lw)
    if width:
        out = _fit(out, width)
    legend = np.full((18 * len(boxes) + 4, out.shape[1], 3), 255, np.uint8)
    for i, name in enumerate(boxes):
        cv2.rectangle(legend, (4, 4 + 18 * i), (16, 16 + 18 * i), PALETTE[i % len(PALETTE)], -1)
        cv2.putText(legend, short(name, 60), (22, 15 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (30, 30, 30), 1,
                    cv2.LINE_AA)
    return np.concatenate([out, legend], 0)


def highlight(image: np.ndarray, mask: np.ndarray, colour=(255, 0, 0), alpha: float = 0.45) -> np.ndarray:
    """``image`` with ``mask`` tinted (a selection not applied yet)."""
    out = image.astype(np.float32).copy()
    out[mask] = out[mask] * (1 - alpha) + np.array(colour, np.float32) * alpha
    return (out + 0.5).astype(np.uint8)


def burn_frames(image: np.ndarray, boxes: dict[str, tuple]) -> np.ndarray:
    """A copy of ``image`` with every model's input crop outlined (for display only: the session keeps
    the clean image, and the editor's strokes are read from its layer, never from these pixels)."""
    import cv2

    out = image.copy()
    h, w = image.shape[:2]
    lw = max(1, min(h, w) // 160)
    for i, (name, (x0, y0, x1, y1)) in enumerate(boxes.items()):
        o = i * lw
        cv2.rectangle(out, (int(x0) + o, int(y0) + o), (max(0, int(round(x1)) - 1 - o), max(0, int(round(y1)) - 1 - o)),
                      PALETTE[i % len(PALETTE)], lw)
    return out


def history_image(hist: "History", width: int = 640, height: int = 260) -> np.ndarray:
    """Confidence of the tracked classes across the edit history; dashed lines where the top class flipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    steps = [s.step for s in hist.steps]
    for j, label in enumerate(hist.labels):
        ax.plot(steps, [100 * s.probs[j] for s in hist.steps], marker="o", ms=3,
                color=np.array(PALETTE[j % len(PALETTE)]) / 255, label=short(label, 30))
    by_step = {s.step: s for s in hist.steps}
    for f in hist.flips:
        ax.axvline(f, color="#cf222e", ls="--", lw=1)
        ax.text(f, 101, f"top-1 → {short(by_step[f].top1_label, 18)}", color="#cf222e", fontsize=7,
                ha="center", va="bottom")
    ax.set_xlabel("edit")
    ax.set_ylabel("confidence %")
    ax.set_ylim(0, 100)
    ax.set_xticks(steps)
    ax.set_title(hist.model, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def whole_image_blur(edit) -> bool:
    """The app's *Blur whole image*: a blur whose mask is the whole image (a stroke in name only)."""
    return edit is not None and edit.inpainter == "blur" and edit.area == edit.mask.size


def stroke_effect_text(eff: "StrokeEffect | None", edit=None) -> str:
    """What the last edit did to the class: a stroke by its area and the map's mass inside it; the
    whole-image blur as a blur (its "stroke" covers everything, so the mass says nothing)."""
    if not eff:
        return ""
    change = (f"its confidence went {100 * eff.prob_before:.1f}% → {100 * eff.prob_after:.1f}% "
              f"({eff.delta_pp:+.1f} pp)")
    if whole_image_blur(edit):
        sigma = edit.params.get("sigma")
        return (f"The whole image was blurred{f' (sigma {sigma:g})' if sigma else ''}; for *{short(eff.label)}* "
                f"{change}.")
    mass = "n/a" if eff.mass_in_stroke is None else f"{100 * eff.mass_in_stroke:.0f}%"
    return (f"Last stroke covered {100 * eff.stroke_area:.1f}% of the image and {mass} of the "
            f"{eff.explainer} map of *{short(eff.label)}*; {change}.")


def inpainter_check_frame(check: "InpainterCheck"):
    import pandas as pd

    rows = []
    for m, r in check.models.items():
        for inp, v in r.by_inpainter.items():
            rows.append({"model": m, "class": short(r.label, 28), "inpainter": inp,
                         "before %": round(100 * r.prob_before, 1), "after %": round(100 * v.prob, 1),
                         "Δ pp": round(v.delta_pp, 1), "top-1 after": short(v.top1_label, 28)})
    return pd.DataFrame(rows)


def inpainter_check_verdict(r: "ModelCheck") -> str:
    """A verdict only where the numbers carry one: the effect (the median change over the fillers) must
    be larger than its spread across them, the fillers must agree on whether the top-1 changed, and every
    filler must give a change of the same sign and at least half the size (one that does not is named:
    "holds" with blur at -10.5 pp beside a median of -83.8 pp would not be true)."""
    by = {name: v.delta_pp for name, v in r.by_inpainter.items()}
    n = len(by)
    if n < 2:
        return "only one inpainter ran, so there is nothing to compare"
    effect = float(np.median(list(by.values())))
    if abs(effect) <= r.spread_pp:
        return (f"no verdict: the effect ({effect:+.1f} pp) is not larger than its spread across fillers "
                f"({r.spread_pp:.1f} pp)")
    if r.flip_votes not in (0, n):
        return "the fillers disagree on the top-1: part of the effect may be an inpainting artefact"
    weak = [(name, d) for name, d in by.items() if np.sign(d) != np.sign(effect) or abs(d) < abs(effect) / 2]
    if weak:
        return (f"the fillers disagree: the median effect is {effect:+.1f} pp, but "
                f"{', '.join(f'{name} gives {d:+.1f} pp' for name, d in weak)}; part of the effect may be the "
                "filler's")
    return f"the effect ({effect:+.1f} pp) holds across fillers"


def inpainter_check_summary(check: "InpainterCheck") -> str:
    lines = []
    for m, r in check.models.items():
        n = len(r.by_inpainter)
        lines.append(f"- **{m}**: Δ of *{short(r.label)}* spans {r.spread_pp:.1f} pp over {n} inpainters "
                     f"(std {r.std_pp:.1f}); top-1 changed with {r.flip_votes}/{n}: "
                     f"{inpainter_check_verdict(r)}.")
    for inp, why in check.skipped.items():
        lines.append(f"- {inp} skipped: {md_text(why)}")
    return "\n".join(lines)


def plugins_markdown(report, specs) -> str:
    lines = ["| kind | name | status | source |", "|---|---|---|---|"]
    for s in specs:
        reason = s.unavailable_reason()
        status = "ok" if reason is None else f"unavailable: {reason}"
        if s.meta.get("cost") == "slow":
            status += " (slow)"
        lines.append(f"| {s.kind} | `{s.name}` | {status} | {s.source} |")
    if report is not None and report.failed:
        lines += ["", "**Failed to load:**", ""]
        lines += [f"- `{r.source}`: {r.error}" for r in report.failed]
    elif report is not None:
        lines += ["", f"All {len(report.records)} plugin sources loaded."]
    return "\n".join(lines)


# -- display rules (one place for what the app and study mode say) ------------------------------------
def interactive_explainer(name: str) -> tuple[str, str]:
    """The explainer whose maps are shown on every stroke, and a note when it is not ``name``: a slow
    explainer (Score-CAM, Ablation-CAM, FullGrad) would take seconds to minutes per stroke, so Grad-CAM
    stands in until *Compute slow maps* is pressed."""
    from ..discovery import get_spec

    if get_spec("explainer", name).meta.get("cost") != "slow":
        return name, ""
    return "gradcam", f"; {name} is slow, use *Slow maps*"


def trust_text(scores: dict) -> str:
    """One line for beside a model's maps: each shown map's deletion AUC against random maps' (``scores``:
    "original" / "modified" -> trust.TrustScore), and whether it beats them."""
    parts = []
    for which, t in scores.items():
        if not np.isfinite(t.auc):  # no AUC to show: the verdict says why
            parts.append(f"{which}: {t.verdict}")
            continue
        road = f", ROAD {t.road:+.2f}" if t.road is not None else ""
        parts.append(f"{which} {t.auc:.2f} vs random {t.random_auc:.2f}: **{t.verdict}**{road}")
    first = next(iter(scores.values()))
    return (f"Trust (deletion AUC when the map's hottest regions, at the random maps' scale, are removed by "
            f"{first.inpainter}; lower is better): " + "; ".join(parts) + ". " + TRUST_SCOPE)


#: what the trust score can and cannot tell (beside every score; measured against Flower2D's truth in
#: docs/explainers.md, "The trust score against the truth")
TRUST_SCOPE = ("It tells whether the regions the map marks matter to this model more than random regions do; "
               "it cannot tell how sharp the map is, which pixels inside a region matter, or whether the model "
               "is right.")


def status_line(session, seconds: float, flipped: list[str], notice: str = "", done: str = "models and maps") -> str:
    """The line under the canvas after an event: the edits, what the last one was, the time (of ``done``),
    the flips. Every successful event writes it, so an earlier error never lingers."""
    edits = session.edits
    last = edits[-1] if edits else None
    what = ""
    if last is not None:
        what = (f"; the whole image blurred in {1000 * last.seconds:.0f} ms" if whole_image_blur(last)
                else f"; last inpainted with {last.inpainter} in {1000 * last.seconds:.0f} ms")
    line = (f"{len(edits)} edit(s){what}; {done} in {1000 * seconds:.0f} ms"
            + (f"; **top-1 changed for {', '.join(flipped)}**" if flipped else ""))
    return f"{notice} {line}" if notice else line


def slow_maps_note(computed: tuple[int, int], session) -> str:
    """The slow maps are of one image, ``computed`` = (its ``session.version``, its edit count): say which,
    and that they are stale once the image changed (an undo and a new stroke keep the count, not the
    version)."""
    version, at_edit = computed
    now = len(session.edits)
    if version == session.version:
        return f"These maps are of the current image (edit {now})."
    return (f"**These maps are from edit {at_edit}, of an image that has changed since (now at edit {now}).** "
            "Press the button to compute them again.")
