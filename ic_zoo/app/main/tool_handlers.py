"""The handlers of the tools' tabs (history, slow maps, contrast, sanity, VEBI, inpainter check, export),
each followed by its wiring."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

import ic_zoo

from ... import imageio
from ...analyses.contrast import contrast
from ...analyses.history import history as history_of
from ...analyses.inpainter_check import inpainter_check
from ...analyses.sanity import sanity
from ...errors import IcZooError
from ...presentation import export, present
from .. import guard, jobs
from ..comparison import add_trust, slow_maps
from .context import MAX_MODELS, AppContext
from .panels import Page
from .state import AppState


def wire(ctx: AppContext, ui: Page) -> dict:
    """Wire every tool; returns the History tab's refresh, for the events that change the image to chain."""
    history = wire_history(ctx, ui)
    wire_slow_maps(ctx, ui)
    wire_contrast(ctx, ui)
    wire_sanity(ctx, ui)
    wire_compare(ctx, ui)
    wire_vebi(ctx, ui)
    wire_inpainter_check(ctx, ui)
    wire_export(ctx, ui)
    return history


def wire_history(ctx: AppContext, ui: Page) -> dict:
    """The History tab's refresh, which also measures the trust score beside each column's maps (the
    columns are shown first, at the stroke's speed; their trust lines follow). Every event that changes
    the image chains it."""
    t, compare = ui.tools, ui.results.compare

    @ctx.tab_guarded
    def on_after(name, st):
        if not isinstance(st, AppState) or st.session is None:
            return {t.hist_img: None}
        if name not in (st.models or []):  # a follow-up that ran before the picker followed a zoo switch
            name = (st.models or [None])[0]
        out = {t.hist_img: present.history_image(history_of(st.session, name)) if name else None}
        shown = getattr(st, "views", None) or []
        views, measured = list(shown), False
        for v in views:  # every view measured (no short cut), unless a newer event replaced them: its own
            if st.views is not shown:  # follow-up measures those (a stroke never waits for a stale one)
                return out
            measured = add_trust(st.session, v) or measured
        if measured and st.views is shown:
            out.update(compare.show(st, views, stamp=st.views_stamp, info_only=True))
            if st.result is not None:  # the JSON gains the scores (the domain line stays as it is)
                out[t.result_json] = ctx.result_doc(st, st.models, st.result)
            out[ui.state] = st
        return out

    history = dict(fn=on_after, inputs=[t.hist_model, ui.state],
                   outputs=[t.hist_img, *compare.outputs(), ui.state, t.result_json],
                   api_visibility="private", show_progress="hidden",
                   # a queue of its own: a stroke never waits behind follow-ups (which yield it the cores too:
                   # priority), and one at a time
                   concurrency_id="followups", concurrency_limit=1)
    t.hist_model.change(**history)
    return history


#: beside the maps while one is refined (each step a function of the image and the settings, not of time)
PREVIEW_NOTE = ("*Refining: the map so far, coarse regions first, then finer superpixels. The final map, the same "
                "on any machine, replaces it with its trust score.*")


def _gallery(doc: dict, files: dict) -> list:
    """The slow maps' gallery from a packed result (slow_maps): (picture, caption) per panel."""
    return [(imageio.png_to_image(files[name]), caption) for name, caption in doc["pics"]]


def wire_slow_maps(ctx: AppContext, ui: Page) -> None:
    t = ui.tools

    @ctx.tab_call
    def on_slow(names, explainer, st, progress=gr.Progress(), request: gr.Request = None):
        st = ctx.need_session(st, request)
        if ic_zoo.get_spec("explainer", explainer).meta.get("cost") != "slow":
            raise gr.Error(f"{explainer} is interactive: its maps are already shown. Choose a slow explainer "
                           "(Score-CAM, Ablation-CAM, FullGrad, occlusion) first.")
        names = (names or [])[:MAX_MODELS]
        forward = guard.monotonic(progress)  # an explainer reports 0..1 per image: never backwards
        s = st.session
        classes = {m: ctx.shown_class(st, m) for m in names}
        st.slow_of = (s.version, len(s.edits))  # the maps are of the image as it is now
        record = ctx.job_record(st, names) if ctx.jobs is not None else None
        if record is None:  # no queue (ZeroGPU: the GPU is this call's), or work too large for a record
            result = slow_maps(s, names, explainer, classes, lambda f, n: forward(f, desc=n))
        else:  # a job: another replica finishes it if this one dies; asking again gets the same job
            key = ctx.jobs.submit("slow_maps", {"record": record, "models": names, "explainer": explainer,
                                                "classes": classes})
            for status in ctx.jobs.follow(key, lambda f, n: forward(f, desc=n)):
                if status.state == "done":
                    result = status.result
                else:  # a step of a map being refined (the fast occlusion's coarse map at once): shown as it comes
                    yield {t.slow_out: _gallery(*jobs.unpack(status.result)), t.slow_note: PREVIEW_NOTE}
        doc, files = jobs.unpack(result)
        for msg in doc["warnings"]:
            gr.Warning(msg)
        pics = _gallery(doc, files)
        note = present.slow_maps_note(st.slow_of, s) + ("\n\n" + "\n".join(doc["trust"]) if doc["trust"] else "")
        yield {t.slow_out: pics, t.slow_note: note, ui.state: st}

    t.slow_btn.click(on_slow, [ui.pickers.models, ui.pickers.explainer, ui.state], [t.slow_out, t.slow_note, ui.state],
                     api_name="slow_maps", **ctx.common)


def wire_contrast(ctx: AppContext, ui: Page) -> None:
    t = ui.tools

    def contrast_choices(name):
        if not name:
            return gr.update(choices=[]), gr.update(choices=[])
        labels = ctx.clf(name).labels
        return gr.update(choices=labels, value=labels[0]), gr.update(choices=labels, value=labels[1])

    t.con_model.change(contrast_choices, t.con_model, [t.con_a, t.con_b], api_visibility="private")
    ui.page_load.append((contrast_choices, t.con_model, [t.con_a, t.con_b]))

    @ctx.tab_call
    def on_contrast(name, a, b, explainer, st, request: gr.Request = None):
        st = ctx.need_session(st, request)
        if not (name and a and b):
            raise gr.Error("Choose a model and two classes.")
        labels = ctx.clf(name).labels
        for lab in (a, b):
            if lab not in labels:
                raise gr.Error(f"'{lab}' is not a class of {name}; pick one from the list.")
        ex = present.interactive_explainer(explainer)[0]
        cm = contrast(st.session, name, labels.index(a), labels.index(b), "gradcam" if ex == "cam" else ex)
        panel = present.map_panel(st.session.original, st.session.modified, cm)
        title = f"why '{present.short(a, 34)}' rather than '{present.short(b, 34)}'"
        return present.titled(panel, title)  # (an image, as API clients expect; the title names both classes)

    t.con_btn.click(on_contrast, [t.con_model, t.con_a, t.con_b, ui.pickers.explainer, ui.state], t.con_img,
                    api_name="contrast", **ctx.common)


def wire_sanity(ctx: AppContext, ui: Page) -> None:
    t = ui.tools

    @ctx.tab_call
    def on_sanity(names, explainer, st, request: gr.Request = None):
        st = ctx.need_session(st, request)
        ex = present.interactive_explainer(explainer)[0]
        pics, lines = [], []
        for m in (names or [])[:MAX_MODELS]:
            try:
                out = sanity(st.session, m, ctx.shown_class(st, m), ex)
            except IcZooError as exc:
                lines.append(f"- **{m}**: {present.md_text(exc)}")
                continue
            pics += [(present.single_panel(st.session.modified, out.real, "real"), f"{m}: real"),
                     (present.single_panel(st.session.modified, out.randomized, "randomised head"),
                      f"{m}: randomised head")]
            verdict = ("similar: this map says little about what the model learned" if out.correlation > 0.8
                       else "different: the map depends on the learned head")
            lines.append(f"- **{m}**, *{present.short(out.label)}*: correlation {out.correlation:.2f} "
                         f"with the randomised-head map ({verdict}).")
        return {t.san_gallery: pics, t.san_text: "\n".join(lines)}

    t.san_btn.click(on_sanity, [ui.pickers.models, ui.pickers.explainer, ui.state], [t.san_gallery, t.san_text],
                    api_name="sanity", **ctx.common)


def wire_vebi(ctx: AppContext, ui: Page) -> None:
    t = ui.tools

    def vebi_classes(name):
        if not name:
            return gr.update(choices=[], value=None)
        labels = ctx.clf(name).labels
        return gr.update(choices=labels, value=labels[0])

    t.vebi_model.change(vebi_classes, t.vebi_model, t.vebi_class, api_visibility="private")
    ui.page_load.append((vebi_classes, t.vebi_model, t.vebi_class))

    @ctx.tab_call
    def on_vebi(name, label):
        from ...explainers import vebi as V

        if not name or not label:
            raise gr.Error("Choose a model and a class.")
        c = ctx.clf(name)
        rel = V.load_relevance(c)
        if rel is None:
            raise gr.Error(f"{name} has no VEBI relevance file; fit one with: python -m ic_zoo vebi fit --model {name}")
        if label not in c.labels:
            raise gr.Error(f"'{label}' is not a class of {name}.")
        j = c.labels.index(label)
        pics, lines = [], [f"**{label}**: {int((rel.W[:, j] > 0).sum())} relevant features (mu = {rel.mu:g}); top:"]
        for r, f in enumerate(rel.top_features(j)):
            desc = V.describe_feature(rel, f)
            lines.append(f"- {desc}, weight {rel.W[f, j]:.2f}")
            if rel.interp_image is not None:
                heat = rel.interp_heat[j, r].astype(np.float32) / 255.0
                pics.append((present.single_panel(rel.interp_image[j, r], heat, desc, width=192), desc))
        return {t.vebi_gallery: pics, t.vebi_text: "\n".join(lines)}

    t.vebi_btn.click(on_vebi, [t.vebi_model, t.vebi_class], [t.vebi_gallery, t.vebi_text], api_name="vebi_features")


def wire_compare(ctx: AppContext, ui: Page) -> None:
    """The Compare explainers tab: the shown class's map by every interactive explainer that can map the model,
    each with the Spearman correlation of its map with the chosen explainer's (on the modified image, in image
    coordinates); an explainer that refuses the model is named with its sentence."""
    t = ui.tools

    @ctx.tab_call
    def on_compare(name, explainer, st, request: gr.Request = None):
        from scipy.stats import spearmanr

        st = ctx.need_session(st, request)
        if name not in (st.models or []):
            raise gr.Error("Choose one of the models the columns show.")
        cls, chosen = ctx.shown_class(st, name), present.interactive_explainer(explainer)[0]
        ref = st.session.explain(name, cls, chosen).modified
        pics, lines = [], [f"**{name}**, map of *{present.short(ctx.clf(name).labels[cls])}*; ρ with {chosen}:"]
        for spec in ic_zoo.list_plugins("explainer"):
            if spec.is_namespace or spec.meta.get("cost") == "slow" or spec.unavailable_reason():
                continue  # the slow ones are the Slow maps tab's
            try:
                cm = st.session.explain(name, cls, spec.name)
            except IcZooError as exc:
                lines.append(f"- {spec.name}: {present.md_text(exc)}")
                continue
            a, b = cm.modified.ravel(), ref.ravel()
            rho = float(spearmanr(a, b)[0]) if a.std() > 0 and b.std() > 0 else float("nan")
            said = "n/a (a constant map)" if rho != rho else f"{rho:+.2f}"
            pics.append((present.single_panel(st.session.modified, cm.modified, spec.name), f"{spec.name}: ρ {said}"))
            lines.append(f"- {spec.name}: {said}")
        return {t.cmp_gallery: pics, t.cmp_text: "\n".join(lines)}

    t.cmp_btn.click(on_compare, [t.cmp_model, ui.pickers.explainer, ui.state], [t.cmp_gallery, t.cmp_text],
                    api_name="compare_explainers", **ctx.common)


def wire_inpainter_check(ctx: AppContext, ui: Page) -> None:
    t = ui.tools

    @ctx.tab_call
    def on_check(names, st, progress=gr.Progress(), request: gr.Request = None):
        st = ctx.need_session(st, request)
        forward = guard.monotonic(progress)
        chk = inpainter_check(st.session, (names or [])[:MAX_MODELS], progress=lambda f, msg: forward(f, desc=msg))
        return {t.chk_text: present.inpainter_check_summary(chk), t.chk_table: present.inpainter_check_frame(chk)}

    t.chk_btn.click(on_check, [ui.pickers.models, ui.state], [t.chk_text, t.chk_table], api_name="inpainter_check",
                    **ctx.common)


def wire_export(ctx: AppContext, ui: Page) -> None:
    t = ui.tools

    @ctx.tab_call
    def on_export(names, explainer, st, request: gr.Request = None):
        st = ctx.need_session(st, request)
        ex = present.interactive_explainer(explainer)[0]
        d = Path(tempfile.mkdtemp(prefix="ic_zoo_export_"))
        names = (names or [])[:MAX_MODELS]
        chosen = {m: [st.selected[m]] for m in names if m in st.selected}  # the classes picked for the maps
        return str(export.export_zip(st.session, names, ex, d / "interactive_classification.zip",
                                     extra={"source": st.source}, map_classes=chosen))

    t.exp_btn.click(on_export, [ui.pickers.models, ui.pickers.explainer, ui.state], t.exp_file, api_name="export",
                    **ctx.common)
