"""The app's event handlers, each followed by its wiring. A handler returns ``{component: value}``
(usually ``ctx.show(...)``: the model columns, the canvas, the status, the JSON); components left out
keep their value. ``wire`` attaches them all; the tools' tabs are in ``tool_handlers``."""
from __future__ import annotations

import os
import time

import gradio as gr
import numpy as np

import ic_zoo

from .. import gated_canvas, tab_store
from ... import imageio
from ...presentation import present
from ...errors import IcZooError
from ..gated_canvas import editor_rgb, same_image, stroke_mask
from .. import painter
from . import tool_handlers
from .context import MAX_MODELS, AppContext, classifier_choices
from .panels import Page
from .state import AppState


def wire(ctx: AppContext, ui: Page, demo: gr.Blocks) -> None:
    history = tool_handlers.wire(ctx, ui)  # the tools' tabs; `history` refreshes the History tab
    # `history` also measures the shown maps' trust: every event that changes them chains it
    wire_images(ctx, ui, history, demo)
    wire_canvas(ctx, ui, history)
    wire_selections(ctx, ui, history)
    wire_edit_stack(ctx, ui, history)
    wire_models(ctx, ui, history)
    wire_views(ctx, ui, history)
    wire_row_clicks(ctx, ui, history)
    wire_page(ctx, ui, demo)


# -- a new image: an upload, an example, the fitting zoo -------------------------------------------------
def wire_images(ctx: AppContext, ui: Page, history: dict, demo: gr.Blocks) -> None:
    out, settings, busy, latest = ui.view_outputs(), ui.settings(), ctx.busy(), ctx.latest()

    @ctx.interactive
    def on_upload(path, names, explainer, rows_mode, st):
        st = ctx.state_of(st)
        if not path:
            return ctx.show(st, names, explainer, rows_mode, show_editor=False, show_original=False)
        switch = ctx.new_session(st, ic_zoo.load_image(path, max_side=ctx.max_side), os.path.basename(str(path)),
                                 names)
        return ctx.show(st, names, explainer, rows_mode, switch_to=switch)

    ui.inputs.upload.upload(on_upload, [ui.inputs.upload] + settings, out, api_name="load", **latest).then(**history)

    @ctx.interactive
    def on_example(gallery: gr.Gallery, names, explainer, rows_mode, st, evt: gr.SelectData = None):
        """An example's click. The gallery is an input as its props: a click made while the previous
        example is still classified runs after it (trigger mode "always_last") with the event data of the
        click that started the wait, so the example is read from the gallery's selected index, which the
        page keeps up to date (the event's index only when the props have none)."""
        st = ctx.state_of(st)
        index = getattr(gallery, "selected_index", None)
        if not isinstance(index, int) and evt is not None:
            index = evt.index
        if not isinstance(index, int) or not 0 <= index < len(ctx.examples):
            raise gr.Error("Click an example to load it.")
        path, caption = ctx.examples[index]
        switch = ctx.new_session(st, ic_zoo.load_image(path, max_side=ctx.max_side), caption, names)
        return ctx.show(st, names, explainer, rows_mode, switch_to=switch)

    ui.inputs.gallery.select(on_example, [ui.inputs.gallery] + settings, out, api_visibility="private", **latest).then(**history)

    @ctx.interactive
    def on_switch(names, explainer, rows_mode, st, request: gr.Request = None):
        """The domain line's button: the zoo that fits the image, in one click."""
        st = ctx.need_session(st, request)
        st.user_chose = False
        return ctx.show(st, names, explainer, rows_mode, show_original=True, switch_to=ctx.zoo_for[st.domain])

    ui.results.domain_btn.click(on_switch, settings, out, api_name="switch_zoo", **busy).then(**history)

    @ctx.interactive
    def on_restore(record, names, explainer, rows_mode, st):
        """A page opens (a reload, or a tab moved from another replica): the work its browser keeps is
        rebuilt here (ui.work); a record that cannot be used is said once and forgotten."""
        st = ctx.state_of(st)
        if st.session is not None or not record:  # this tab's work is here already, or there is none
            return {ui.state: st}
        try:
            models = ctx.restore(st, record)
        except IcZooError as exc:
            st.session = None
            return {ui.state: st, ui.work: None, ui.editor.status: present.md_text(exc)}
        return ctx.show(st, names, explainer, rows_mode, switch_to=models)

    demo.load(on_restore, [ui.work] + settings, out, api_visibility="private", **busy).then(**history)

    @ctx.interactive
    def on_restore_api(record, names, explainer, rows_mode, st):
        """/restore: an API client's reload. The work record an earlier answer gave (from any replica) is
        rebuilt here; a record that cannot be used is one sentence, and the tab keeps what it had."""
        st = ctx.state_of(st)
        if not record or not isinstance(record, str):
            raise gr.Error("Send the work record an earlier answer gave (the long signed string in the answer "
                           "of /load or /edit).")
        models = ctx.restore(st, record)
        return ctx.show(st, names, explainer, rows_mode, switch_to=models)

    if ui.work_in is not None:
        ui.work_in.submit(on_restore_api, [ui.work_in] + settings, out, api_name="restore", **busy).then(**history)


# -- strokes, other selections, the edit stack ------------------------------------------------------------
def _stroke_inputs(ui: Page) -> list:
    """The inputs of an event that removes a region: models, inpainter, explainer, table rows, state."""
    pk = ui.pickers
    return [pk.models, pk.inpainter, pk.explainer, ui.results.rows, ui.state]


def wire_canvas(ctx: AppContext, ui: Page, history: dict) -> None:
    out, busy = ui.view_outputs(), ctx.busy()
    ed, pick = ui.editor, _stroke_inputs(ui)

    @ctx.interactive
    def on_edit(value, names, inpainter, explainer, rows_mode, st, request: gr.Request):
        st = ctx.state_of(st, request)
        if not value or value.get("background") is None:
            return ctx.show(st, names, explainer, rows_mode, show_editor=False, show_original=False)
        ctx.check_stroke(names, inpainter, explainer, rows_mode)  # before anything changes
        if st.session is None and st.expired:  # the canvas still shows the image of a released session:
            why, st.expired = st.expired, ""  # told once; an image sent again then starts a new session
            raise gr.Error(tab_store.expired_sentence(why))
        img = editor_rgb(value["background"])
        mask = stroke_mask(value)
        known = st.session is not None and (same_image(img, st.session.modified) or (
            st.displayed is not None and same_image(img, st.displayed)))
        if not known:
            switch = ctx.new_session(st, img, "editor", names)
            if mask is not None and mask.shape != st.session.original.shape[:2]:
                mask = imageio.resize_mask(mask, st.session.original.shape[:2])
            if mask is not None and mask.any():
                st.session.apply(mask, inpainter)
            return ctx.show(st, names, explainer, rows_mode, switch_to=switch, page_canvas=False)
        if mask is not None and mask.any():
            st.session.apply(mask, inpainter)
        return ctx.show(st, names, explainer, rows_mode, show_original=False, page_canvas=False)

    # /edit is the API's (the page paints on ``ed.paint``): triggered by a button the page never shows, so that
    # the hidden canvas's value changes never run it; the follow-up is public as /trust: an API client calls
    # it after /edit for the maps' trust scores
    ed.api_edit.click(on_edit, [ed.canvas] + pick, out, api_name="edit", trigger_mode="always_last",
                      **busy).then(**{**history, "api_name": "trust", "api_visibility": "public"})

    @ctx.interactive
    def on_stroke(value, names, inpainter, explainer, rows_mode, st, request: gr.Request):
        """The page's stroke (painter): its points, applied to the image this tab shows. Every stroke the page
        has not seen acknowledged comes again; each id is applied once, all new ones as one edit. Answered in
        two steps: the new image and the status line once the models have classified it, then the columns
        (``show_steps``)."""
        st = ctx.state_of(st, request)
        if st.session is None:
            if st.expired:
                why, st.expired = st.expired, ""
                raise gr.Error(tab_store.expired_sentence(why))
            if isinstance(value, dict) and value.get("v"):  # the page shows an image this server does not have
                raise gr.Error(gated_canvas.UPLOAD_GONE, print_exception=False)
            raise gr.Error("Pick an example or upload an image first, then paint over what to remove.")
        strokes, painted = painter.parse(value, st.paint_ack)  # a malformed one: its sentence (guarded)
        ctx.check_stroke(names, inpainter, explainer, rows_mode)  # before anything changes
        if not strokes:  # all applied already (the page sent them again; an earlier answer acknowledged
            yield {ui.state: st}  # them): nothing changes
            return
        mask = painter.stroke_mask(strokes, painted, st.session.original.shape[:2])
        if mask.any():
            st.session.apply(mask, inpainter)
        st.paint_ack = max(s["id"] for s in strokes)
        yield from ctx.show_steps(st, names, explainer, rows_mode, show_original=False, api_canvas=False)

    ed.paint.submit(on_stroke, [ed.paint] + pick, out, api_name="stroke", trigger_mode="always_last",
                    **busy).then(**history)


def wire_selections(ctx: AppContext, ui: Page, history: dict) -> None:
    """Click-to-select (a superpixel; several with Shift or *collect*) and mask upload: strokes too."""
    out, busy = ui.view_outputs(), ctx.busy()
    ed, pick = ui.editor, _stroke_inputs(ui)

    @ctx.interactive
    def on_click_select(collect, names, inpainter, explainer, rows_mode, st, evt: gr.SelectData,
                        request: gr.Request = None):
        """A click on the click-select image: the superpixel under it is removed, like a stroke; with
        *collect* on (or Shift held) it joins a selection that *Remove the selected regions* applies."""
        st = ctx.need_session(st, request)
        ctx.check_stroke(names, inpainter, explainer, rows_mode)
        x, y = (int(v) for v in evt.index[:2])
        region = st.session.region_at(x, y)
        if collect:
            st.pending = region if st.pending is None else (st.pending | region)
            return {ui.state: st, ed.click_img: present.highlight(st.session.modified, st.pending),
                    ed.status: f"{int(st.pending.sum())} pixels selected; press *Remove the selected regions* "
                               "(or release Shift)."}
        st.session.apply(region, inpainter)
        return ctx.show(st, names, explainer, rows_mode, show_original=False)

    ed.click_img.select(on_click_select, [ed.collect] + pick, out, api_visibility="private", **busy).then(**history)

    # the before / after slider and the click-select image are drawn only while shown (ic_zoo.app.main.context.show):
    # opening one sends the current images; the slider's toggle also swaps it for the canvas in the page
    def shown(flag: str, component, images):
        def on_toggle(on, st):
            st = ctx.state_of(st)
            setattr(st, flag, bool(on))
            return {ui.state: st, **({component: images(st.session)} if on and st.session is not None else {})}
        return on_toggle

    ed.compare.change(None, ed.compare, None, js="(on) => { document.body.classList.toggle('ic-compare', !!on); }",
                      api_visibility="private", queue=False)
    ed.compare.change(ctx.tab_guarded(shown("comparing", ed.slider, lambda s: (s.original, s.modified))),
                      [ed.compare, ui.state], [ui.state, ed.slider], api_visibility="private")
    for event, on in ((ed.select_tools.expand, True), (ed.select_tools.collapse, False)):
        event(ctx.tab_guarded(shown("selecting", ed.click_img, lambda s: s.modified)),
              [gr.State(on), ui.state], [ui.state, ed.click_img], api_visibility="private")

    @ctx.interactive
    def on_remove_selected(names, inpainter, explainer, rows_mode, st, request: gr.Request = None):
        st = ctx.need_session(st, request)
        ctx.check_stroke(names, inpainter, explainer, rows_mode)
        if st.pending is None or not st.pending.any():
            raise gr.Error("No region is selected: click the regions to remove first.")
        pending, st.pending = st.pending, None
        st.session.apply(pending, inpainter)
        return ctx.show(st, names, explainer, rows_mode, show_original=False)

    ed.remove_selected.click(on_remove_selected, pick, out, api_name="remove_selected", **busy).then(**history)

    @ctx.interactive
    def on_mask(path, names, inpainter, explainer, rows_mode, st, request: gr.Request = None):
        """An uploaded mask (white or opaque = remove) applied as one stroke; one of another size is
        resized to the image, and the page says so."""
        st = ctx.need_session(st, request)
        if not path:
            return ctx.show(st, names, explainer, rows_mode, show_editor=False, show_original=False)
        ctx.check_stroke(names, inpainter, explainer, rows_mode)
        shape = st.session.original.shape[:2]
        mask = imageio.load_mask(path, max_side=max(shape))  # no more decoded into arrays than the image's size
        if mask.shape != shape:
            st.notice = (f"The mask was {mask.shape[1]}x{mask.shape[0]} and the image is {shape[1]}x{shape[0]}: "
                         "it was resized to fit.")
            gr.Warning(st.notice)
            mask = imageio.resize_mask(mask, shape)
        if not mask.any():
            raise gr.Error("The mask is empty (nothing white or opaque): nothing to remove.")
        st.session.apply(mask, inpainter)
        return ctx.show(st, names, explainer, rows_mode, show_original=False)

    ed.mask_upload.upload(on_mask, [ed.mask_upload] + pick, out, api_name="apply_mask", **busy).then(**history)


def wire_edit_stack(ctx: AppContext, ui: Page, history: dict) -> None:
    out, busy, ed = ui.view_outputs(), ctx.busy(), ui.editor

    def stack_step(op: str):
        def step(names, explainer, rows_mode, st, request: gr.Request = None):
            st = ctx.need_session(st, request)
            ctx.check_settings(names, explainer, rows_mode)  # before the stack moves
            if op == "reset":
                st.session.reset()
                st.selected = {}
            elif op == "blur_all":
                st.session.apply(np.ones(st.session.original.shape[:2], bool), "blur", sigma=3.0)
            elif not getattr(st.session, op)():
                gr.Info(f"Nothing to {op}.")
            return ctx.show(st, names, explainer, rows_mode, show_original=False)

        step.__name__ = step.__qualname__ = f"on_{op}"
        return ctx.interactive(step)

    for btn, op in ((ed.undo, "undo"), (ed.redo, "redo"), (ed.reset, "reset"), (ed.blur, "blur_all")):
        btn.click(stack_step(op), ui.settings(), out, api_name=op, **busy).then(**history)


# -- the models to compare --------------------------------------------------------------------------------
def choose_models(ctx: AppContext, ui: Page):
    """The handler that sets a tab's models (the picker, or the /set_models API)."""

    @ctx.tab_guarded  # not on a ZeroGPU worker: models load in the main process, which every worker shares
    def on_models(names, st, progress=gr.Progress(track_tqdm=True)):
        """Check every new name before anything loads, refuse a bad one with its sentence (the previous
        selection stays), then load the new models with progress, outside the models queue so other
        users' edits go on meanwhile."""
        st = ctx.state_of(st)
        names = [str(n).strip() for n in (names or []) if str(n).strip()]
        if not names:
            return {ui.state: st, ui.editor.status: "Select at least one model."}
        previous = list(st.models if st.models is not None else ctx.default)
        ok, problems = [], []
        for n in names:
            try:
                ok.append(ctx.check_models([n])[0])
            except IcZooError as exc:
                problems.append(str(exc))
        if len(ok) > MAX_MODELS:
            problems.append(f"At most {MAX_MODELS} models can be compared; the first {MAX_MODELS} are kept.")
            ok = ok[:MAX_MODELS]
        if problems and not ok:
            ok = previous
        for n in ok:  # a typed name (a namespace's: timm:..., hf-hub:...) joins this tab's choices
            if n not in st.typed and ic_zoo.get_spec("classifier", n).name != n:
                st.typed.append(n)
        loaded = []
        new = [n for n in ok if not ic_zoo.REGISTRY.has_instance("classifier", n, pretrained=ctx.pretrained,
                                                                    device=ctx.device)]
        for i, n in enumerate(new):
            progress((i, len(new)), desc=f"{n}: getting its weights (a download the first time), then building it")
            t0 = time.perf_counter()
            try:
                ctx.clf(n)
            except IcZooError as exc:
                problems.append(str(exc))
                ok.remove(n)
                continue
            loaded.append(f"{n} in {time.perf_counter() - t0:.1f} s")
        if not ok:
            ok = previous
        st.user_chose = st.user_chose or ok != previous  # a refused name alone changes nothing
        st.models = ok
        for msg in problems:
            gr.Warning(msg)
        lines = [present.md_text(p) for p in problems] + ([f"Loaded {', '.join(loaded)}."] if loaded else [])
        st.notice = " ".join(lines)
        return {ui.state: st, ui.pickers.models: gr.update(value=ok, choices=classifier_choices(ctx.named + st.typed)),
                ui.editor.status: " ".join(lines) or f"Models: {', '.join(ok)}."}

    return on_models


def wire_models(ctx: AppContext, ui: Page, history: dict) -> None:
    pk, t = ui.pickers, ui.tools
    picked = [ui.state, pk.models, ui.editor.status]
    loads = dict(show_progress_on=[ui.editor.status], concurrency_id="loads", concurrency_limit=2)
    redraw = dict(fn=on_settings(ctx), inputs=ui.settings(), outputs=ui.view_outputs(), api_visibility="private",
                  **ctx.latest())
    on_models = choose_models(ctx, ui)

    pk.set_models.click(on_models, [pk.models, ui.state], picked, api_name="set_models", **loads).then(**redraw).then(
        **history)

    @ctx.tab_guarded
    def on_pick(names, st, evt: gr.SelectData, progress=gr.Progress(track_tqdm=True)):
        """A model picked, typed (Enter) or removed in the picker. Gradio reports a typed name only as a
        select event, and may hand over the picker's value from before it, so the change is applied
        to that value from the event itself."""
        names = [str(n) for n in (names or [])]
        value = str(evt.value) if evt.value is not None else ""
        if evt.selected and value and value not in names:
            names.append(value)
        elif not evt.selected and value in names:
            names.remove(value)
        return on_models(names, st, progress)

    pk.models.select(on_pick, [pk.models, ui.state], picked, api_visibility="private", **loads).then(**redraw).then(
        **history)

    def class_choices(names):
        """Every class of the selected models, for the class search."""
        seen, out = set(), []
        for m in (names or [])[:MAX_MODELS]:
            try:
                for lab in ctx.clf(m).labels:
                    if lab not in seen:
                        seen.add(lab)
                        out.append(lab)
            except IcZooError:
                continue
        return gr.update(choices=out, value=None)

    def model_lists(names):
        """The tools' model pickers follow the selection."""
        names = list(names or [])  # one update each: Gradio pops the value out of the dict it is given
        return {c: gr.update(choices=names, value=names[0] if names else None) for c in t.model_pickers()}

    pk.models.change(class_choices, pk.models, ui.results.class_search, api_visibility="private").then(
        model_lists, pk.models, t.model_pickers(), api_visibility="private").then(**history)
    ui.page_load.append((class_choices, pk.models, ui.results.class_search))


# -- what the columns show: the explainer, the table rows, the class of the maps ---------------------------
def on_settings(ctx: AppContext):
    @ctx.interactive
    def on_settings(names, explainer, rows_mode, st):
        st = ctx.state_of(st)
        return ctx.show(st, names, explainer, rows_mode, show_editor=st.session is not None, show_original=True)

    return on_settings


def wire_row_clicks(ctx: AppContext, ui: Page, history: dict) -> None:
    """A click on a row of a model column's table shows that class's maps (the column's model is the one
    the tab's state says the slot shows)."""

    def select_row(i, names, explainer, rows_mode, st, evt, request: gr.Request = None):
        st = ctx.need_session(st, request)
        views = list(getattr(st, "views", None) or [])
        name = views[i].name if i < len(views) else None
        if name in (names or []) and evt.index is not None:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
            rows = st.rows.get(name) or []
            if 0 <= row < len(rows):
                st.selected[name] = rows[row]["index"]
        return ctx.show(st, names, explainer, rows_mode, show_editor=False, show_original=False)

    def wire_slot(i, table):  # Gradio's default trigger mode: a deferred run ("always_last") would carry the
        # event data of the first click, not the last
        @ctx.interactive
        def on_row(names, explainer, rows_mode, st, evt: gr.SelectData, request: gr.Request = None):
            return select_row(i, names, explainer, rows_mode, st, evt, request)

        table.select(on_row, ui.settings(), ui.view_outputs(), api_visibility="private", **ctx.busy()).then(
            **history)

    for i, slot in enumerate(ui.results.compare.slots):
        wire_slot(i, slot.table)


def wire_views(ctx: AppContext, ui: Page, history: dict) -> None:
    latest = ctx.latest()
    redraw = on_settings(ctx)
    for comp in (ui.pickers.explainer, ui.results.rows):
        comp.change(redraw, ui.settings(), ui.view_outputs(), api_visibility="private", **latest).then(**history)

    @ctx.interactive
    def on_class_search(label, names, explainer, rows_mode, st):
        if not isinstance(st, AppState) or st.session is None:  # choices refreshed before any image
            return ctx.show(ctx.state_of(st), names, explainer, rows_mode, show_editor=False, show_original=False)
        if label:
            hits = [m for m in names or [] if label in ctx.clf(m).labels]
            if not hits:
                raise gr.Error(f"No selected model has a class called '{label}'.")
            for m in hits:
                st.selected[m] = ctx.clf(m).labels.index(label)
        return ctx.show(st, names, explainer, rows_mode, show_editor=False, show_original=False)

    v = ui.results.compare.viewer
    if v is not None:  # the map viewer's switcher: the chosen model's maps, from the columns' views

        @ctx.interactive
        def on_map_model(name, st, request: gr.Request = None):
            st = ctx.need_session(st, request)
            return v.draw(st, getattr(st, "views", None) or [], name)

        v.which.input(on_map_model, [v.which, ui.state], v.components(), api_visibility="private", **latest)

    ui.results.class_search.change(on_class_search, [ui.results.class_search] + ui.settings(), ui.view_outputs(),
                                   api_visibility="private", **latest).then(**history)


# -- the page: the tutorial, and what a new tab loads ---------------------------------------------------------
def wire_page(ctx: AppContext, ui: Page, demo: gr.Blocks) -> None:
    h = ui.header
    h.skip_tutorial.click(lambda: gr.update(open=False), None, h.tutorial, api_visibility="private", queue=False)
    ev = None
    for fn, inputs, outputs in ui.page_load:  # each list a panel needs, filled when the tab opens
        ev = (demo.load if ev is None else ev.then)(fn, inputs, outputs, api_visibility="private")
