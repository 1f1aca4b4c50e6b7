"""Interactive Classification: the Gradio app (layout and event wiring only; the work is in ic_zoo).

    python app.py                        # http://127.0.0.1:7860
    python app.py --share                # a temporary public link (expires after 72 h)
    python app.py --host 0.0.0.0 --port 8080 --auth alice:secret

Paint over part of the image: the region is inpainted, every selected model re-classifies the result,
and each model's top-5 (with the change), class maps and the crop it sees are shown side by side.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr  # noqa: E402

import ic_zoo  # noqa: E402
from ic_zoo import discovery, export, gradio_util, imageio, present, zoo  # noqa: E402
from ic_zoo.errors import IcZooError  # noqa: E402
from ic_zoo.gradio_util import editor_rgb, fit_max_side, guarded, model_call, same_image, stroke_mask, write_editor_png  # noqa: E402

log = logging.getLogger("ic_zoo.app")
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
MAX_MODELS = 4
MAX_SIDE = 768  # uploads are downscaled to this longer side: the canvas stays responsive, models see <= 256 px
ROWS = ["original top-5 (tracked)", "modified top-5"]
# Gradio's own per-session records (a copy of the page's config each, created even by a bare upload
# call): at most this many, oldest dropped; well above IC_ZOO_MAX_SESSIONS, which bounds the images
SESSION_CAPACITY = int(os.environ.get("IC_ZOO_GRADIO_SESSIONS", "1000"))
SHARE_WARNING = ("Public share links expire after 72 hours and depend on Gradio's relay; for a user study, "
                 "deploy a Hugging Face Space or self-host (python app.py --host 0.0.0.0 --auth user:pass).")

TUTORIAL = """
**What this is.** Paint over part of the image: that region is removed (inpainted) and every selected model
classifies the edited image again. You see which classes gained or lost confidence, and *class activation
maps* showing where each model looks, so you can compare the regions you think matter with the ones the
models use.

**How to paint.** Pick an example or upload an image and paint over a region; on release it is
inpainted. `[` and `]` change the brush size; strokes accumulate; **Undo** (Ctrl/Cmd-Z), **Redo**
(Shift-Ctrl/Cmd-Z) and **Reset** step through them. *Other ways to select a region*: click a superpixel
(Shift-click several), or upload a mask. The coloured frames show the part of the image each model actually sees: strokes
outside a model's frame are invisible to it.

**Reading the tables.** Rows are the original image's top-5 classes, followed into the edited image
(toggle to see the edited image's own top-5). *orig. %* and *mod. %* are the confidences; *Δ pp* is the
change in percentage points, green up, red down. Click a row to see that class's map. In the maps, both
images share one colour scale (red = more), and the difference map shows where evidence rose (red) or fell
(blue).

**What to try.** On a Flower2D flower, paint over the petals: the class changes, because petal and centre
colour define it; paint over a leaf: nothing happens. On a photo, remove what you think the model needs,
then check with *Inpainter check* that the change is not an artefact of the filler, and with *Sanity check*
that the map depends on the model at all.
"""


# -- state -------------------------------------------------------------------------------------------
class AppState:
    """Everything one browser tab owns (kept in gr.State, never in globals)."""

    def __init__(self) -> None:
        self.session: ic_zoo.Session | None = None
        self.selected: dict[str, int] = {}  # model -> class shown in the maps
        self.rows: dict[str, list[dict]] = {}  # model -> rows of its table, as shown
        self.result = None
        self.source = ""
        self.displayed: np.ndarray | None = None  # what the editor shows: the modified image with crop frames
        self.original_view: np.ndarray | None = None  # the original with every model's crop frame
        self.last_png: str | None = None
        self.domain = "imagenet"  # of the current image: "imagenet" (a photo) or "flower2d"
        self.models: list[str] | None = None  # the last valid model selection (kept when a typed name is refused)
        self.user_chose = False  # the user picked models: images no longer switch the zoo by their domain
        self.typed: list[str] = []  # names this tab typed that were accepted
        self.notice = ""  # a message for the next status line (a refused model name)
        self.expired = ""  # why this tab's session was released (gradio_util.Tabs), until a new image
        self.slow_of: tuple[int, int] | None = None  # (session version, edit count) the slow maps are of
        self.pending: np.ndarray | None = None  # regions clicked for one selection, not applied yet

    def release(self, reason: str) -> None:
        """Drop the images and caches (the tab was idle too long, or the server needed room)."""
        self.session, self.result, self.rows, self.selected = None, None, {}, {}
        self.displayed = self.original_view = None
        if self.last_png is not None:
            Path(self.last_png).unlink(missing_ok=True)
            self.last_png = None
        self.expired = reason

    def take_notice(self) -> str:
        notice, self.notice = self.notice, ""
        return notice

    def __deepcopy__(self, memo):  # gr.State deep-copies its initial value only
        return AppState()


# -- helpers -------------------------------------------------------------------------------------------
def example_list() -> list[tuple[str, str]]:
    """(path, caption) for the examples, each caption naming the zoo it uses: photos (ImageNet models)
    first, then Flower2D flowers (the Flower2D models, which know their ground truth)."""
    import json

    out = []
    captions = {"chelsea": "Chelsea the cat: paint over the eyes", "coffee": "An espresso: paint over the cup",
                "camera": "The cameraman: paint over the tripod", "astronaut": "Astronaut Eileen Collins",
                "rocket": "A SpaceX rocket"}
    for name, cap in captions.items():
        p = EXAMPLES / f"{name}.jpg"
        if p.is_file():
            out.append((str(p), f"{cap} · ImageNet models"))
    idx = EXAMPLES / "flower2d" / "index.json"
    if idx.is_file():
        for row in json.loads(idx.read_text()):
            out.append((str(EXAMPLES / "flower2d" / row["image"]), f"Flower2D: {row['label_name']} · Flower2D models"))
    return out


def _choices(kind: str) -> list[tuple[str, str]]:
    out = []
    for s in ic_zoo.list_plugins(kind):
        if s.is_namespace:
            continue
        label = s.name
        if s.meta.get("cost") == "slow":
            label += " (slow)"
        if kind != "classifier":
            reason = s.unavailable_reason()
            if reason:
                label += " (unavailable)"
        out.append((label, s.name))
    return out


def _inpainter_choices() -> tuple[list[tuple[str, str]], list[str]]:
    """The inpainters that can run here (choices), and the names of the others (named beside the picker,
    not offered: a stroke must never be painted for a filler that cannot fill it; the Plugins tab says
    why)."""
    usable, unusable = [], []
    for s in ic_zoo.list_plugins("inpainter"):
        reason = s.unavailable_reason()
        if reason is None:
            usable.append((s.name, s.name))
        else:
            unusable.append(s.name)
    return usable, unusable


def _classifier_choices(extra=()) -> list[tuple[str, str]]:
    """Every registered classifier (marked when it needs a download), then names given with --model or
    typed in the picker (``timm:<name>``, ``torchvision:<name>``, ``hf-hub:<repo id>``)."""
    out, seen = [], set()
    for s in ic_zoo.list_plugins("classifier"):
        if s.is_namespace:
            continue
        reason = s.unavailable_reason()
        note = " (embedded, offline)" if s.meta.get("embedded") and reason is None else ""
        out.append((s.name + (note if reason is None else " (needs a download)"), s.name))
        seen.add(s.name)
    for name in extra:
        if name not in seen:
            out.append((name, name))
            seen.add(name)
    return out


# -- the app ---------------------------------------------------------------------------------------------
def build_demo(models: list[str] | None = None, device: str | None = None, max_side: int = MAX_SIDE,
               plugins_dir: str | None = None, concurrency: int | None = None, pretrained: bool = True) -> gr.Blocks:
    if plugins_dir is None and not os.environ.get(discovery.PLUGINS_DIR_ENV) and not discovery.autoload_disabled():
        plugins_dir = str(HERE / "plugins")  # the app's own folder, wherever it is started from
    report = discovery.ensure_loaded(**({"plugins_dir": plugins_dir} if plugins_dir else {}))
    named = [zoo.resolve_model(m, pretrained=pretrained) for m in (models or [])]  # one sentence if one cannot work
    auto_models = not named  # no --model: each new image gets the zoo of its domain
    # the zoo of each domain, decided once at start-up (each decision checks every default's weights)
    zoo_for = {d: zoo.default_models(pretrained=pretrained, domain=d)[:MAX_MODELS] for d in zoo.DOMAINS}
    default = (named or zoo_for["imagenet"])[:MAX_MODELS]
    checked: set[str] = set(named)  # names that passed zoo.resolve_model

    def check_models(names) -> list[str]:
        """The names, each validated once (before anything loads); one sentence for the first bad one."""
        names = [str(n).strip() for n in (names or [])][:MAX_MODELS]
        for n in names:
            if n not in checked:
                zoo.resolve_model(n, pretrained=pretrained)
                checked.add(n)
        return names

    if gradio_util.on_zero_gpu():
        # ZeroGPU runs each model call in a forked worker: load the default zoos here, in the main
        # process, so that every worker has them (ZeroGPU moves them to its GPU)
        for m in dict.fromkeys(default + zoo_for["imagenet"] + zoo_for["flower2d"]):
            try:
                ic_zoo.get_classifier(m, pretrained=pretrained, device=device)
            except IcZooError as exc:
                log.warning("could not preload %s: %s", m, exc)
    explainer_default = "gradcam"
    # what the canvas may send back: the app shows images of at most max_side, so anything far larger
    # did not come from this page (an API client sends its own image through /load, which fits it)
    editor_pixels = min(imageio.max_pixels_default(), max(4 * max_side * max_side, 1_000_000))
    conc = concurrency or int(os.environ.get("IC_ZOO_CONCURRENCY", "2"))
    examples = example_list()

    def clf(name):
        return ic_zoo.get_classifier(name, pretrained=pretrained, device=device)

    def new_session(st: AppState, img: np.ndarray, source: str, names=None):
        """A new image: a new session; returns the models to switch to when the image's domain calls for
        another zoo and nobody named models (no --model, no choice in this tab), else None."""
        st.session = ic_zoo.Session(fit_max_side(img, max_side), device=device, pretrained=pretrained)
        st.selected, st.rows, st.result, st.source = {}, {}, None, source
        st.expired, st.slow_of, st.pending = "", None, None
        for msg in st.session.warnings:  # a tiny image, NaN pixels: beside the results, and as a toast
            gr.Warning(msg)
            st.notice = f"{st.notice} {msg}".strip()
        st.original_view = None
        st.domain = zoo.image_domain(st.session.original)
        if not auto_models or st.user_chose:
            return None
        want = zoo_for[st.domain]
        return want if list(names or []) != want else None

    def boxes(st, names):
        return {m: clf(m).input_box(st.session.original.shape) for m in names}

    png_dir = Path(tempfile.mkdtemp(prefix="ic_zoo_editor_"))
    # bounded memory: every tab's state is released after IC_ZOO_SESSION_TTL_S idle, or when more than
    # IC_ZOO_MAX_SESSIONS tabs hold images (least recently used first); see gradio_util.Tabs
    tabs = gradio_util.Tabs(AppState)

    def tab_call(fn):  # a handler that runs models and takes (or returns) a tab's state
        return tabs.hold(model_call(fn))

    def tab_guarded(fn):  # the same, for handlers that stay in the main process on ZeroGPU
        return tabs.hold(guarded(fn))

    def editor_value(st, names):
        shown = present.burn_frames(st.session.modified, boxes(st, names))
        st.displayed = shown
        path = write_editor_png(shown, png_dir / f"{id(st)}_{st.session.version}_{time.monotonic_ns()}.png")
        if st.last_png is not None:  # Gradio copied the previous one into its cache already
            Path(st.last_png).unlink(missing_ok=True)
        st.last_png = str(path)
        return {"background": str(path), "layers": [], "composite": None}  # the canvas composes it

    def render(st: AppState, names, explainer, rows_mode, show_editor=True, show_original=True,
               stroke_effect=True, switch_to=None) -> dict:
        """The outputs of every event, by component: the canvas, the picker, the original, the before /
        after slider, the click-select image, each shown model's title, table, maps and note, the domain
        line, the status and the JSON. Components left out stay as they are. ``switch_to``: models
        replacing ``names`` (the picker is updated); otherwise the picker is left alone."""
        # Plain values: Gradio turns every gr.update() into a component rebuild and a config update, which
        # cost more than a whole Flower2D edit. Column visibility has its own event.
        if switch_to is not None:
            names = switch_to
        names = check_models(names)
        out: dict = {state: st}
        if switch_to is not None:
            out[model_dd] = gr.update(value=names)
        if st.session is None:
            if show_editor:
                out[editor] = None
            out.update({original_img: None, domain_md: "", domain_btn: gr.update(visible=False), result_json: None})
            notice = st.take_notice()
            if notice:
                out[status] = notice
            return by_position(out)
        if not names:
            raise gr.Error("Select at least one model.")
        st.models = names
        interactive, slow_note_text = present.interactive_explainer(explainer)
        t0 = time.perf_counter()
        # one forward per model serves the prediction and the maps (the explainer's taps ride along)
        res = st.session.evaluate(names, explainer=interactive, map_classes=[])
        st.result = res
        s = st.session
        if show_editor:
            out[editor] = editor_value(st, names)
            out[slider] = (s.original, s.modified)
            out[click_img] = s.modified
        if show_original or st.original_view is None:
            st.original_view = present.boxes_overlay(s.original, boxes(st, names))
            out[original_img] = st.original_view
        flipped = []
        for i, m in enumerate(names[:MAX_MODELS]):
            _, title_c, table_c, maps_c, info_c = slots[i]
            r = res.models[m]
            rows = present.class_rows(r, "modified" if rows_mode == ROWS[1] else "tracked")
            st.rows[m] = rows
            c = st.selected.get(m, r.tracked[0].index)
            if r.top1_changed:
                flipped.append(m)
            info = []
            try:
                cm = s.explain(m, c, interactive)
                panel = present.map_panel(s.original, s.modified, cm, box=r.box)
                info.append(f"Map: **{present.short(cm.label)}** ({interactive}{slow_note_text})")
            except IcZooError as exc:
                panel = None
                info.append(str(exc))
            if stroke_effect and s.edits:
                info.append(present.stroke_effect_text(s.stroke_effect(m, interactive), s.edits[-1]))
            out.update({title_c: present.model_title(m, r), table_c: present.table_frame(rows), maps_c: panel,
                        info_c: "\n\n".join(info)})
        dt = time.perf_counter() - t0
        out[status] = present.status_line(s, dt, flipped, st.take_notice())
        if st.slow_of is not None:
            out[slow_note] = present.slow_maps_note(st.slow_of, s)
        doc = res.to_dict()
        if s.edits:
            doc["last_edit"] = s.edits[-1].summary()
        doc["image_shape"] = list(s.original.shape)
        doc["image_domain"] = st.domain
        mismatch = zoo.domain_mismatch(names, domain=st.domain)  # (line, the fitting domain) or None
        doc["domain_mismatch"] = mismatch is not None
        if mismatch is None:
            out.update({domain_md: "", domain_btn: gr.update(visible=False)})
        else:
            text, fits = mismatch
            out.update({domain_md: f"**{text}**",
                        domain_btn: gr.update(visible=True, value=f"Use the {zoo.DOMAIN_TITLE[fits]} models")})
            doc["domain_note"] = text
        out[result_json] = doc
        return by_position(out)

    def by_position(out: dict) -> list:
        """``out`` in the order of ``outputs`` (the one place that order is written): a model slot not in
        use gets blanks (plain values cost Gradio less than a skip), any other component left out is
        left as it is."""
        for _, *parts in slots:
            for c, blank in zip(parts, ("", None, None, "")):
                out.setdefault(c, blank)
        return [out.get(c, gr.skip()) for c in outputs]

    with gr.Blocks(title="Interactive Classification", fill_width=True, delete_cache=(3600, 3 * 3600)) as demo:
        # Gradio drops a state after its own time to live (long: Tabs releases the images first, and a
        # released state is a few hundred bytes that still tells a returning user what happened)
        state = gr.State(AppState(), time_to_live=4 * tabs.ttl_s,
                         delete_callback=lambda st: st.release("it was idle too long") if isinstance(st, AppState)
                         else None)
        seen_tutorial = gr.BrowserState(False, storage_key="ic_zoo_tutorial_seen")
        gr.Markdown("## Interactive Classification\nPaint over part of an image and watch every model change its "
                    "mind (or not), with the regions each one uses.", elem_id="header")
        with gr.Accordion("Tutorial: what am I looking at?", open=True, elem_id="tutorial") as tutorial:
            gr.Markdown(TUTORIAL)
            skip_tutorial = gr.Button("Got it, hide the tutorial", size="sm")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                gallery = gr.Gallery(value=[(p, c) for p, c in examples], label="Examples (click one)", columns=8,
                                     height=128, allow_preview=False, elem_id="examples")
            with gr.Column(scale=1, min_width=220):
                upload = gr.File(label="…or upload an image (any common format)", file_count="single",
                                 type="filepath", elem_id="upload", height=128)
        with gr.Row():
            model_dd = gr.Dropdown(_classifier_choices(named), value=default, multiselect=True, max_choices=MAX_MODELS,
                                   allow_custom_value=True, filterable=True, scale=3, elem_id="models",
                                   label=f"Models to compare (up to {MAX_MODELS}; or type timm:<name>, "
                                         "torchvision:<name>, hf-hub:<repo id> and press Enter)")
            usable, unusable = _inpainter_choices()
            inpainter_dd = gr.Dropdown(usable, value="telea", scale=1, elem_id="inpainter",
                                       label="Inpainter" + (f" (not here: {', '.join(unusable)}; see Plugins)"
                                                            if unusable else ""))
            explainer_dd = gr.Dropdown(_choices("explainer"), value=explainer_default, label="Explainer", scale=1,
                                       elem_id="explainer")
        with gr.Row(equal_height=False):
            # the canvas, and beside it (under it on a narrow screen) the results
            with gr.Column(scale=4, min_width=340, elem_id="canvas_column"):
                editor = gradio_util.editor("Paint over what to remove", height=440, max_pixels=editor_pixels)
                gr.HTML(gradio_util.keys_help(), elem_id="brush_label")
                with gr.Row():
                    undo_btn = gr.Button("Undo", size="sm", elem_id="undo")
                    redo_btn = gr.Button("Redo", size="sm", elem_id="redo")
                    reset_btn = gr.Button("Reset", size="sm", elem_id="reset")
                    blur_btn = gr.Button("Blur whole image", size="sm", elem_id="blur_all")
                status = gr.Markdown("Pick an example or upload an image to start.", elem_id="status")
                with gr.Accordion("Other ways to select a region", open=False, elem_id="select_tools"):
                    with gr.Row(equal_height=False):
                        with gr.Column(min_width=200):
                            click_img = gr.Image(label="Click a region to remove it (superpixels at the model's "
                                                       "resolution; hold Shift to pick several)", type="numpy",
                                                 interactive=False, format="png", elem_id="click_select",
                                                 height=220)
                            with gr.Row():
                                collect = gr.Checkbox(False, label="Collect several regions", elem_id="collect")
                                remove_sel = gr.Button("Remove the selected regions", size="sm",
                                                       elem_id="remove_selected")
                        with gr.Column(min_width=200):
                            mask_upload = gr.File(label="…or upload a mask (PNG, white = remove)", type="filepath",
                                                  file_count="single", elem_id="mask_upload", height=120)
            with gr.Column(scale=7, min_width=340, elem_id="results"):
                with gr.Row(equal_height=True):
                    domain_md = gr.Markdown("", elem_id="domain_note")
                    domain_btn = gr.Button("Use the ImageNet models", visible=False, size="sm", scale=0,
                                           min_width=220, elem_id="domain_switch")
                slots = []
                with gr.Row(equal_height=False):
                    for i in range(MAX_MODELS):
                        with gr.Column(visible=False, min_width=230, elem_id=f"model_{i}") as col:
                            title = gr.Markdown(elem_id=f"model_{i}_title")
                            table = gr.Dataframe(interactive=False, wrap=True, elem_id=f"model_{i}_table",
                                                 show_search="none", buttons=["copy"], max_height=240,
                                                 column_widths=["43%", "19%", "19%", "19%"])
                            maps = gr.Image(show_label=False, interactive=False, format="jpeg",
                                            elem_id=f"model_{i}_maps")
                            info = gr.Markdown(elem_id=f"model_{i}_info")
                        slots.append((col, title, table, maps, info))
                with gr.Row():
                    rows_radio = gr.Radio(ROWS, value=ROWS[0], label="Table rows", elem_id="rows")
                    class_search = gr.Dropdown([], label="Show the map of any class (type to search)",
                                               filterable=True, allow_custom_value=True, elem_id="class_search")
        set_models_btn = gr.Button(visible=False)  # hosts the /set_models API endpoint (the picker uses .select)
        with gr.Tabs(elem_id="tools"):
            with gr.Tab("Before / after"):
                with gr.Row(equal_height=False):
                    slider = gr.ImageSlider(label="Original | modified (drag the handle)", type="numpy",
                                            interactive=False, elem_id="before_after")
                    original_img = gr.Image(label="Original, with the crop each model sees", type="numpy",
                                            interactive=False, format="jpeg", elem_id="original", height=360)
            with gr.Tab("History"):
                hist_model = gr.Dropdown(default, value=default[0] if default else None, label="Model")
                hist_img = gr.Image(show_label=False, interactive=False, format="jpeg", elem_id="history")
            with gr.Tab("Slow maps"):
                slow_btn = gr.Button("Compute the chosen slow explainer's maps (Score-CAM, Ablation-CAM, FullGrad) "
                                     "for the shown classes")
                slow_note = gr.Markdown("", elem_id="slow_note")
                slow_out = gr.Gallery(label="Slow maps", columns=2, height=300, elem_id="slow_maps")
            with gr.Tab("Contrast"):
                gr.Markdown("Why A rather than B: the map of logit(A) − logit(B).")
                with gr.Row():
                    con_model = gr.Dropdown(default, value=default[0] if default else None, label="Model")
                    con_a = gr.Dropdown([], label="A (the class to explain)", filterable=True, allow_custom_value=True)
                    con_b = gr.Dropdown([], label="B (rather than)", filterable=True, allow_custom_value=True)
                    con_btn = gr.Button("Show")
                con_img = gr.Image(label="Contrastive map", interactive=False, format="jpeg", elem_id="contrast")
            with gr.Tab("Sanity check"):
                san_btn = gr.Button("Compare each shown map with the same explainer on a model whose head is "
                                    "randomised: does the map depend on the model?")
                san_gallery = gr.Gallery(columns=4, height=260, show_label=False)
                san_text = gr.Markdown()
            with gr.Tab("VEBI"):
                gr.Markdown("For models with a fitted VEBI relevance file (the Flower2D zoo ships one per model): the "
                            "internal features selected as relevant for a class, each shown as its average "
                            "visualisation over the images that fire it most.")
                with gr.Row():
                    vebi_model = gr.Dropdown(default, value=default[0] if default else None, label="Model")
                    vebi_class = gr.Dropdown([], label="Class", filterable=True, allow_custom_value=True)
                    vebi_btn = gr.Button("Show")
                vebi_gallery = gr.Gallery(columns=3, height=260, show_label=False)
                vebi_text = gr.Markdown()
            with gr.Tab("Inpainter check"):
                chk_btn = gr.Button("Re-run the last edit with every inpainter: an effect of the model or of the "
                                    "filler?")
                chk_text = gr.Markdown()
                chk_table = gr.Dataframe(interactive=False)
            with gr.Tab("Export"):
                exp_btn = gr.Button("Build a zip (images, masks, maps of the shown and chosen classes, tables, "
                                    "versions, weight hashes)")
                exp_file = gr.File(label="Download", interactive=False)
            with gr.Tab("Plugins"):
                gr.Markdown(present.plugins_markdown(report, ic_zoo.list_plugins()))
            with gr.Tab("Raw JSON"):
                result_json = gr.JSON(label="The result, as the API returns it")
        gradio_util.page_script(demo)

        outputs = [state, editor, model_dd, original_img, slider, click_img, slow_note]
        for col, title, table, maps, info in slots:
            outputs += [title, table, maps, info]
        outputs += [domain_md, domain_btn, status, result_json]
        columns = [col for col, *_ in slots]

        def show_columns(names, st=None):
            """A column per selected model, shown once there is an image (no placeholder tables before):
            until then "hidden" (mounted, so that the first image's maps appear when it is shown)."""
            n = len(names or [])
            shown = isinstance(st, AppState) and st.session is not None
            return [gr.update(visible=(True if shown else "hidden") if i < n else False) for i in range(MAX_MODELS)]
        common = dict(concurrency_id="models", concurrency_limit=conc)

        # -- handlers --------------------------------------------------------------------------------
        @tab_call
        def on_edit(value, names, inpainter, explainer, rows_mode, st):
            st = st if isinstance(st, AppState) else AppState()
            if not value or value.get("background") is None:
                return render(st, names, explainer, rows_mode, show_editor=False, show_original=False)
            if st.session is None and st.expired:  # the canvas still shows the image of a released session:
                why, st.expired = st.expired, ""  # told once; an image sent again then starts a new session
                raise gr.Error(gradio_util.expired_sentence(why))
            img = editor_rgb(value["background"])
            mask = stroke_mask(value)
            known = st.session is not None and (same_image(img, st.session.modified) or (
                st.displayed is not None and same_image(img, st.displayed)))
            if not known:
                switch = new_session(st, img, "editor", names)
                if mask is not None and mask.shape != st.session.original.shape[:2]:
                    mask = imageio.resize_mask(mask, st.session.original.shape[:2])
                if mask is not None and mask.any():
                    st.session.apply(mask, inpainter)
                return render(st, names, explainer, rows_mode, switch_to=switch)
            if mask is not None and mask.any():
                st.session.apply(mask, inpainter)
            return render(st, names, explainer, rows_mode, show_original=False)

        @tab_call
        def on_click_select(collect, names, inpainter, explainer, rows_mode, st, evt: gr.SelectData):
            """A click on the click-select image: the superpixel under it is removed, like a stroke; with
            *collect* on (or Shift held) it joins a selection that *Remove the selected regions* applies."""
            st = _need_session(st)
            x, y = (int(v) for v in evt.index[:2])
            region = st.session.region_at(x, y)
            if collect:
                st.pending = region if st.pending is None else (st.pending | region)
                shown = present.highlight(st.session.modified, st.pending)
                return by_position({state: st, click_img: shown, status: f"{int(st.pending.sum())} pixels "
                                    "selected; press *Remove the selected regions* (or release Shift)."})
            st.session.apply(region, inpainter)
            return render(st, names, explainer, rows_mode, show_original=False)

        @tab_call
        def on_remove_selected(names, inpainter, explainer, rows_mode, st):
            st = _need_session(st)
            if st.pending is None or not st.pending.any():
                raise gr.Error("No region is selected: click the regions to remove first.")
            pending, st.pending = st.pending, None
            st.session.apply(pending, inpainter)
            return render(st, names, explainer, rows_mode, show_original=False)

        @tab_call
        def on_mask(path, names, inpainter, explainer, rows_mode, st):
            """An uploaded mask (white or opaque = remove) applied as one stroke; one of another size is
            resized to the image, and the page says so."""
            st = _need_session(st)
            if not path:
                return render(st, names, explainer, rows_mode, show_editor=False, show_original=False)
            mask = imageio.load_mask(path)
            shape = st.session.original.shape[:2]
            if mask.shape != shape:
                st.notice = (f"The mask was {mask.shape[1]}x{mask.shape[0]} and the image is {shape[1]}x{shape[0]}: "
                             "it was resized to fit.")
                gr.Warning(st.notice)
                mask = imageio.resize_mask(mask, shape)
            if not mask.any():
                raise gr.Error("The mask is empty (nothing white or opaque): nothing to remove.")
            st.session.apply(mask, inpainter)
            return render(st, names, explainer, rows_mode, show_original=False)

        @tab_call
        def on_upload(path, names, explainer, rows_mode, st):
            st = AppState() if not isinstance(st, AppState) else st
            if not path:
                return render(st, names, explainer, rows_mode, show_editor=False, show_original=False)
            img = ic_zoo.load_image(path)
            switch = new_session(st, img, os.path.basename(str(path)), names)
            return render(st, names, explainer, rows_mode, switch_to=switch)

        @tab_call
        def on_example(names, explainer, rows_mode, st, evt: gr.SelectData):
            st = AppState() if not isinstance(st, AppState) else st
            path, caption = examples[evt.index]
            switch = new_session(st, ic_zoo.load_image(path), caption, names)
            return render(st, names, explainer, rows_mode, switch_to=switch)

        @tab_call
        def on_switch(names, explainer, rows_mode, st):
            """The domain line's button: the zoo that fits the image, in one click."""
            st = _need_session(st)
            st.user_chose = False
            return render(st, names, explainer, rows_mode, show_original=True, switch_to=zoo_for[st.domain])

        @tab_guarded
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

        @tab_guarded  # not on a ZeroGPU worker: models load in the main process, which every worker shares
        def on_models(names, st, progress=gr.Progress(track_tqdm=True)):
            """The models to compare (the picker, or the /set_models API): check every new name before
            anything loads, refuse a bad one with its sentence (the previous selection stays), then load
            the new models with progress, outside the models queue so other users' edits go on meanwhile."""
            st = st if isinstance(st, AppState) else AppState()
            names = [str(n).strip() for n in (names or []) if str(n).strip()]
            if not names:
                return st, gr.skip(), "Select at least one model."
            previous = list(st.models if st.models is not None else default)
            ok, problems = [], []
            for n in names:
                try:
                    ok.append(check_models([n])[0])
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
            new = [n for n in ok if not ic_zoo.REGISTRY.has_instance("classifier", n, pretrained=pretrained,
                                                                        device=device)]
            for i, n in enumerate(new):
                progress((i, len(new)), desc=f"{n}: getting its weights (a download the first time), then building it")
                t0 = time.perf_counter()
                try:
                    clf(n)
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
            lines = problems + ([f"Loaded {', '.join(loaded)}."] if loaded else [])
            st.notice = " ".join(lines)
            return st, gr.update(value=ok, choices=_classifier_choices(named + st.typed)), " ".join(lines) or \
                f"Models: {', '.join(ok)}."

        def _need_session(st):
            if isinstance(st, AppState) and st.session is None and st.expired:
                raise gr.Error(gradio_util.expired_sentence(st.expired))
            if not isinstance(st, AppState) or st.session is None:
                raise gr.Error("Pick an example or upload an image first.")
            return st

        def stack_step(op: str):
            def step(names, explainer, rows_mode, st):
                st = _need_session(st)
                if not getattr(st.session, op)():
                    gr.Info(f"Nothing to {op}.")
                return render(st, names, explainer, rows_mode, show_original=False)

            step.__name__ = step.__qualname__ = f"on_{op}"
            return tab_call(step)

        on_undo, on_redo = stack_step("undo"), stack_step("redo")

        @tab_call
        def on_reset(names, explainer, rows_mode, st):
            st = _need_session(st)
            st.session.reset()
            st.selected = {}
            return render(st, names, explainer, rows_mode, show_original=False)

        @tab_call
        def on_blur(names, explainer, rows_mode, st):
            st = _need_session(st)
            st.session.apply(np.ones(st.session.original.shape[:2], bool), "blur", sigma=3.0)
            return render(st, names, explainer, rows_mode, show_original=False)

        @tab_call
        def on_settings(names, explainer, rows_mode, st):
            st = st if isinstance(st, AppState) else AppState()
            return render(st, names, explainer, rows_mode, show_editor=st.session is not None, show_original=True)

        def on_table_select(slot: int):
            @tab_call
            def select(names, explainer, rows_mode, st, evt: gr.SelectData):
                return _select_row(slot, names, explainer, rows_mode, st, evt)

            return select

        def _select_row(slot, names, explainer, rows_mode, st, evt):
            st = _need_session(st)
            names = list(names or [])
            if slot < len(names) and evt.index is not None:
                m = names[slot]
                row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
                rows = st.rows.get(m) or []
                if 0 <= row < len(rows):
                    st.selected[m] = rows[row]["index"]
            return render(st, names, explainer, rows_mode, show_editor=False, show_original=False)

        @tab_call
        def on_class_search(label, names, explainer, rows_mode, st):
            if not isinstance(st, AppState) or st.session is None:  # choices refreshed before any image
                return render(st if isinstance(st, AppState) else AppState(), names, explainer, rows_mode,
                              show_editor=False, show_original=False)
            if label:
                hits = [m for m in names or [] if label in clf(m).labels]
                if not hits:
                    raise gr.Error(f"No selected model has a class called '{label}'.")
                for m in hits:
                    st.selected[m] = clf(m).labels.index(label)
            return render(st, names, explainer, rows_mode, show_editor=False, show_original=False)

        def class_choices(names):
            seen, out = set(), []
            for m in (names or [])[:MAX_MODELS]:
                try:
                    for lab in clf(m).labels:
                        if lab not in seen:
                            seen.add(lab)
                            out.append(lab)
                except IcZooError:
                    continue
            return gr.update(choices=out, value=None)

        def model_lists(names):
            names = list(names or [])
            first = names[0] if names else None
            return gr.update(choices=names, value=first), gr.update(choices=names, value=first)

        def contrast_choices(name):
            if not name:
                return gr.update(choices=[]), gr.update(choices=[])
            labels = clf(name).labels
            return gr.update(choices=labels, value=labels[0]), gr.update(choices=labels, value=labels[1])

        @tab_guarded
        def on_history(name, st):
            if not isinstance(st, AppState) or st.session is None or not name:
                return None
            return present.history_image(st.session.history(name))

        @tab_call
        def on_contrast(name, a, b, explainer, st):
            st = _need_session(st)
            if not (name and a and b):
                raise gr.Error("Choose a model and two classes.")
            labels = clf(name).labels
            for lab in (a, b):
                if lab not in labels:
                    raise gr.Error(f"'{lab}' is not a class of {name}; pick one from the list.")
            ex = present.interactive_explainer(explainer)[0]
            cm = st.session.contrast(name, labels.index(a), labels.index(b), "gradcam" if ex == "cam" else ex)
            return present.map_panel(st.session.original, st.session.modified, cm)

        @tab_call
        def on_sanity(names, explainer, st):
            st = _need_session(st)
            ex = present.interactive_explainer(explainer)[0]
            pics, lines = [], []
            for m in (names or [])[:MAX_MODELS]:
                r = st.result.models[m] if st.result and m in st.result.models else None
                c = st.selected.get(m, r.tracked[0].index if r else 0)
                try:
                    out = st.session.sanity(m, c, ex)
                except IcZooError as exc:
                    lines.append(f"- **{m}**: {exc}")
                    continue
                pics += [(present.single_panel(st.session.modified, out["real"], "real"), f"{m}: real"),
                         (present.single_panel(st.session.modified, out["randomized"], "randomised head"),
                          f"{m}: randomised head")]
                verdict = ("similar: this map says little about what the model learned" if out["correlation"] > 0.8
                           else "different: the map depends on the learned head")
                lines.append(f"- **{m}**, *{present.short(out['label'])}*: correlation {out['correlation']:.2f} "
                             f"with the randomised-head map ({verdict}).")
            return pics, "\n".join(lines)

        def vebi_classes(name):
            if not name:
                return gr.update(choices=[], value=None)
            labels = clf(name).labels
            return gr.update(choices=labels, value=labels[0])

        @tab_call
        def on_vebi(name, label):
            from ic_zoo.explainers import vebi as V

            if not name or not label:
                raise gr.Error("Choose a model and a class.")
            c = clf(name)
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
                    img = rel.interp_image[j, r]
                    heat = rel.interp_heat[j, r].astype(np.float32) / 255.0
                    pics.append((present.single_panel(img, heat, desc, width=192), desc))
            return pics, "\n".join(lines)

        @tab_call
        def on_check(names, st, progress=gr.Progress()):
            st = _need_session(st)
            forward = gradio_util.monotonic(progress)
            chk = st.session.inpainter_check((names or [])[:MAX_MODELS],
                                             progress=lambda f, msg: forward(f, desc=msg))
            return present.inpainter_check_summary(chk), present.inpainter_check_frame(chk)

        @tab_call
        def on_slow(names, explainer, st, progress=gr.Progress()):
            st = _need_session(st)
            if ic_zoo.get_spec("explainer", explainer).meta.get("cost") != "slow":
                raise gr.Error(f"{explainer} is interactive: its maps are already shown. Choose a slow explainer "
                               "(Score-CAM, Ablation-CAM, FullGrad) first.")
            pics = []
            names = (names or [])[:MAX_MODELS]
            forward = gradio_util.monotonic(progress)  # an explainer reports 0..1 per image: never backwards
            for i, m in enumerate(names):
                r = st.result.models[m] if st.result and m in st.result.models else None
                c = st.selected.get(m, r.tracked[0].index if r else 0)

                def prog(f, msg, i=i, m=m):
                    forward((i + f) / len(names), desc=f"{m}: {msg}")

                try:
                    cm = st.session.explain(m, c, explainer, progress=prog)
                except IcZooError as exc:
                    gr.Warning(f"{m}: {exc}")
                    continue
                pics.append((present.map_panel(st.session.original, st.session.modified, cm),
                             f"{m}: {cm.label} (edit {len(st.session.edits)})"))
            st.slow_of = (st.session.version, len(st.session.edits))
            return pics, present.slow_maps_note(st.slow_of, st.session), st

        @tab_call
        def on_export(names, explainer, st):
            st = _need_session(st)
            ex = present.interactive_explainer(explainer)[0]
            d = Path(tempfile.mkdtemp(prefix="ic_zoo_export_"))
            names = (names or [])[:MAX_MODELS]
            chosen = {m: [st.selected[m]] for m in names if m in st.selected}  # the classes picked for the maps
            return str(export.export_zip(st.session, names, ex, d / "interactive_classification.zip",
                                         extra={"source": st.source}, map_classes=chosen))

        # -- wiring ----------------------------------------------------------------------------------
        settings = [model_dd, explainer_dd, rows_radio, state]
        hist_then = dict(fn=on_history, inputs=[hist_model, state], outputs=hist_img, api_visibility="private")
        ev = editor.change(on_edit, [editor, model_dd, inpainter_dd, explainer_dd, rows_radio, state], outputs,
                           api_name="edit", trigger_mode="always_last", show_progress_on=[status], **common)
        ev.then(**hist_then)
        cols_then = dict(fn=show_columns, inputs=[model_dd, state], outputs=columns, api_visibility="private",
                         queue=False)
        upload.upload(on_upload, [upload] + settings, outputs, api_name="load", show_progress_on=[status],
                      **common).then(**hist_then).then(**cols_then)
        pick = [model_dd, inpainter_dd, explainer_dd, rows_radio, state]
        click_img.select(on_click_select, [collect] + pick, outputs, api_visibility="private",
                         show_progress_on=[status], **common).then(**hist_then)
        remove_sel.click(on_remove_selected, pick, outputs, api_name="remove_selected", show_progress_on=[status],
                         **common).then(**hist_then)
        mask_upload.upload(on_mask, [mask_upload] + pick, outputs, api_name="apply_mask",
                           show_progress_on=[status], **common).then(**hist_then)
        gallery.select(on_example, settings, outputs, api_visibility="private", show_progress_on=[status],
                       **common).then(**hist_then).then(**cols_then)
        for btn, fn, name in ((undo_btn, on_undo, "undo"), (redo_btn, on_redo, "redo"), (reset_btn, on_reset, "reset"),
                              (blur_btn, on_blur, "blur_all")):
            btn.click(fn, settings, outputs, api_name=name, show_progress_on=[status], **common).then(**hist_then)
        loads = dict(show_progress_on=[status], concurrency_id="loads", concurrency_limit=2)
        model_dd.select(on_pick, [model_dd, state], [state, model_dd, status], api_visibility="private",
                        **loads).then(on_settings, settings, outputs, api_visibility="private",
                                      show_progress_on=[status], **common)
        set_models_btn.click(on_models, [model_dd, state], [state, model_dd, status], api_name="set_models",
                             **loads).then(on_settings, settings, outputs, api_visibility="private",
                                           show_progress_on=[status], **common)
        domain_btn.click(on_switch, settings, outputs, api_name="switch_zoo", show_progress_on=[status], **common)
        model_dd.change(**cols_then).then(
            class_choices, model_dd, class_search, api_visibility="private").then(
            model_lists, model_dd, [hist_model, con_model], api_visibility="private").then(
            lambda names: gr.update(choices=list(names or []), value=(names or [None])[0]), model_dd, vebi_model,
            api_visibility="private").then(**hist_then)
        for comp in (explainer_dd, rows_radio):
            comp.change(on_settings, settings, outputs, api_visibility="private", show_progress_on=[status], **common)
        for i, (_, _, table, _, _) in enumerate(slots):
            table.select(on_table_select(i), settings, outputs, api_visibility="private",
                         show_progress_on=[status], **common)
        class_search.change(on_class_search, [class_search] + settings, outputs, api_visibility="private",
                            show_progress_on=[status], **common)
        hist_model.change(**hist_then)
        con_model.change(contrast_choices, con_model, [con_a, con_b], api_visibility="private")
        con_btn.click(on_contrast, [con_model, con_a, con_b, explainer_dd, state], con_img, api_name="contrast",
                      **common)
        san_btn.click(on_sanity, [model_dd, explainer_dd, state], [san_gallery, san_text], api_name="sanity", **common)
        chk_btn.click(on_check, [model_dd, state], [chk_text, chk_table], api_name="inpainter_check", **common)
        slow_btn.click(on_slow, [model_dd, explainer_dd, state], [slow_out, slow_note, state], api_name="slow_maps",
                       **common)
        vebi_model.change(vebi_classes, vebi_model, vebi_class, api_visibility="private")
        vebi_btn.click(on_vebi, [vebi_model, vebi_class], [vebi_gallery, vebi_text], api_name="vebi_features")
        exp_btn.click(on_export, [model_dd, explainer_dd, state], exp_file, api_name="export", **common)
        skip_tutorial.click(lambda: (gr.update(open=False), True), None, [tutorial, seen_tutorial],
                            api_visibility="private", queue=False)
        # the tutorial is open on the first visit only (remembered in the browser)
        demo.load(lambda seen: (gr.update(open=not seen), True), seen_tutorial, [tutorial, seen_tutorial],
                  api_visibility="private", queue=False)
        demo.load(**cols_then).then(
            class_choices, model_dd, class_search, api_visibility="private").then(
            contrast_choices, con_model, [con_a, con_b], api_visibility="private").then(
            vebi_classes, vebi_model, vebi_class, api_visibility="private")
    demo.ic_zoo_tabs = tabs  # for tests and the soak benchmark
    return demo


def build_study(path: str, db: str | None = None, **kwargs) -> gr.Blocks:
    """Study mode: the study's tasks only, consent first, every interaction logged (see README)."""
    from ic_zoo.study import load_study
    from ic_zoo.study.ui import build_study_demo

    try:
        study = load_study(path)
        return build_study_demo(study, db, **kwargs)
    except IcZooError as exc:
        sys.exit(f"error: {exc}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Interactive Classification (Gradio app)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="create a temporary public link (expires after 72 h)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS", help="require a login (repeatable)")
    p.add_argument("--model", "-m", action="append", help="models to compare by default (repeatable)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--plugins-dir", default=None, help="folder of plugin .py files (default ./plugins)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, help="uploads are downscaled to this longer side")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (for trying the app offline)")
    p.add_argument("--study", default=os.environ.get("IC_ZOO_STUDY"),
                   help="run a user study defined in this YAML/TOML file (see examples/study/)")
    p.add_argument("--db", default=os.environ.get("IC_ZOO_STUDY_DB"),
                   help="study log: sqlite:///file.sqlite (default: <study name>.sqlite here) or postgresql://...")
    return p.parse_args(argv)


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    auth = []
    for item in args.auth:
        if ":" not in item:
            sys.exit("--auth takes user:password")
        auth.append(tuple(item.split(":", 1)))
    if args.share:
        print(f"NOTE: {SHARE_WARNING}", flush=True)
    if args.study:
        app = build_study(args.study, args.db, device=args.device, pretrained=not args.no_pretrained,
                          plugins_dir=args.plugins_dir,  # reachable from elsewhere: its secrets must be set
                          public=args.share or args.host not in ("127.0.0.1", "localhost", "::1"))
    else:
        try:
            app = build_demo(models=args.model, device=args.device, max_side=args.max_side,
                             plugins_dir=args.plugins_dir, pretrained=not args.no_pretrained)
        except IcZooError as exc:  # a --model that cannot work here: its sentence, before anything starts
            sys.exit(f"error: {exc}")
    app.queue(default_concurrency_limit=2)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth or None,
               max_file_size="50mb", footer_links=[] if args.study else ["api"], show_error=False,
               state_session_capacity=SESSION_CAPACITY)


if __name__ == "__main__":
    main()
else:  # `gradio app.py` (hot reload) and imports find a module-level demo
    if os.environ.get("IC_ZOO_APP_NO_DEMO") == "1":
        demo = None
    elif os.environ.get("IC_ZOO_STUDY"):  # a Space running a study: set IC_ZOO_STUDY (and IC_ZOO_STUDY_DB)
        demo = build_study(os.environ["IC_ZOO_STUDY"], os.environ.get("IC_ZOO_STUDY_DB"))
    else:
        demo = build_demo()
