"""The app's panels: one function each, building its components where it is called (inside the page's
``gr.Blocks`` and layout) and returning them in a small object. No event is wired here (see
``handlers``)."""
from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

import ic_zoo

from .. import gated_canvas
from ...presentation import present
from .. import painter
from ..comparison import Comparison, comparison
from .context import MAX_MODELS, ROWS, AppContext, classifier_choices, explainer_choices, inpainter_choices
from .state import AppState

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


CANVAS_HEIGHT = "min(440px, 45vh)"


def tab_state(ctx: AppContext) -> gr.State:
    """The tab's AppState. Gradio drops a state after its own time to live (long: ``ctx.tabs`` releases the
    images first, and a released state is a few hundred bytes that still tells a returning user what
    happened)."""
    return gr.State(AppState(), time_to_live=4 * ctx.tabs.ttl_s,
                    delete_callback=lambda st: st.release("it was idle too long") if isinstance(st, AppState)
                    else None)


@dataclass
class Header:
    tutorial: gr.Accordion
    skip_tutorial: gr.Button


def header() -> Header:
    """The title, a one-line hint and the tutorial, closed (issue 34 item 9: the first screen is the work,
    on the first visit too; the tutorial is one click away)."""
    gr.Markdown("## Interactive Classification\nPick an example or upload an image, then paint over a region: "
                "it is removed and every model classifies the edited image again, with the regions each one "
                "uses. New here? Open the tutorial below.", elem_id="header")
    with gr.Accordion("Tutorial: what am I looking at?", open=False, elem_id="tutorial") as tutorial:
        gr.Markdown(TUTORIAL)
        skip = gr.Button("Got it, hide the tutorial", size="sm")
    return Header(tutorial, skip)


@dataclass
class Inputs:
    gallery: gr.Gallery
    upload: gr.File


def inputs(ctx: AppContext) -> Inputs:
    with gr.Row(equal_height=False, elem_id="inputs"):
        with gr.Column(scale=4, min_width=320):
            gallery = gr.Gallery(value=list(ctx.examples), label="Examples (click one)", columns=8, height=128,
                                 allow_preview=False, elem_id="examples")
        with gr.Column(scale=1, min_width=220):
            upload = gr.File(label="…or upload an image (any common format)", file_count="single", type="filepath",
                             elem_id="upload", height=128)
    return Inputs(gallery, upload)


@dataclass
class Pickers:
    models: gr.Dropdown
    inpainter: gr.Dropdown
    explainer: gr.Dropdown
    set_models: gr.Button  # hidden: hosts the /set_models API endpoint (the picker itself uses .select)


def pickers(ctx: AppContext) -> Pickers:
    with gr.Row(elem_id="pickers"):
        models = gr.Dropdown(classifier_choices(ctx.named), value=ctx.default, multiselect=True,
                             max_choices=MAX_MODELS, allow_custom_value=True, filterable=True, scale=3,
                             elem_id="models", label=f"Models to compare (up to {MAX_MODELS}; or type timm:<name>, "
                                                     "torchvision:<name>, hf-hub:<repo id> and press Enter)")
        usable, unusable = inpainter_choices()
        inpainter = gr.Dropdown(usable, value="telea", scale=1, elem_id="inpainter",
                                label="Inpainter" + (f" (not here: {', '.join(unusable)}; see Plugins)"
                                                     if unusable else ""))
        explainer = gr.Dropdown(explainer_choices(), value="gradcam", label="Explainer", scale=1, elem_id="explainer")
    return Pickers(models, inpainter, explainer, gr.Button(visible=False))


@dataclass
class Editor:
    canvas: gr.ImageEditor  # not shown: the /edit API's input (a client sends the image and its stroke layers)
    paint: gr.HTML  # the canvas the page paints on (painter: strokes sent as points)
    api_edit: gr.Button  # never shown: /edit's trigger (API clients call it by name)
    undo: gr.Button
    redo: gr.Button
    reset: gr.Button
    blur: gr.Button
    status: gr.Markdown
    click_img: gr.Image
    collect: gr.Checkbox
    remove_selected: gr.Button
    mask_upload: gr.File
    compare: gr.Checkbox  # before / after on the canvas: the slider takes the canvas's place
    slider: gr.ImageSlider
    select_tools: gr.Accordion  # the click-select image gets the modified image only while it is open


def editor(ctx: AppContext) -> Editor:
    """The canvas column: the canvas, the status line right under it (on the first screen), its keys, the
    edit-stack buttons, and the other ways to select a region (click a superpixel, upload a mask)."""
    with gr.Column(scale=4, min_width=340, elem_id="canvas_column"):
        # 440 px, less on a short screen (a phone's first screen holds the canvas and the first result); the
        # canvas sizes itself once, from this, so it is a CSS value rather than a rule that overrides it
        # the page paints on ``paint`` (strokes sent as points, the image back as one JPEG); API clients send
        # an image and its stroke layers to ``canvas`` (/edit), which the page never shows
        paint = painter.painter("Paint over what to remove", height=CANVAS_HEIGHT)
        canvas = gated_canvas.editor("Paint over what to remove", height=CANVAS_HEIGHT, max_pixels=ctx.editor_pixels,
                                    elem_id="editor_api", visible=False)
        api_edit = gr.Button(visible=False)
        # before / after on the canvas itself (issue 34 item 7): the toggle swaps the canvas for a slider of
        # the same size, in the page (no request); the slider gets both images with every edit
        slider = gr.ImageSlider(label="Original | modified (drag the handle)", type="numpy", interactive=False,
                                elem_id="before_after", height=CANVAS_HEIGHT)
        status = gr.Markdown("Pick an example or upload an image to start.", elem_id="status")
        compare = gr.Checkbox(False, label="Compare with the original (a before / after slider in place of the "
                                           "canvas; untick to paint again)", elem_id="compare_toggle")
        gr.HTML(gated_canvas.keys_help(), elem_id="brush_label")
        with gr.Row():
            undo = gr.Button("Undo", size="sm", elem_id="undo")
            redo = gr.Button("Redo", size="sm", elem_id="redo")
            reset = gr.Button("Reset", size="sm", elem_id="reset")
            blur = gr.Button("Blur whole image", size="sm", elem_id="blur_all")
        with gr.Accordion("Other ways to select a region", open=False, elem_id="select_tools") as select_tools:
            with gr.Row(equal_height=False):
                with gr.Column(min_width=200):
                    click_img = gr.Image(label="Click a region to remove it (superpixels at the model's resolution; "
                                               "hold Shift to pick several)", type="numpy", interactive=False,
                                         format="png", elem_id="click_select", height=220)
                    with gr.Row():
                        collect = gr.Checkbox(False, label="Collect several regions", elem_id="collect")
                        remove = gr.Button("Remove the selected regions", size="sm", elem_id="remove_selected")
                with gr.Column(min_width=200):
                    mask_upload = gr.File(label="…or upload a mask (PNG, white = remove)", type="filepath",
                                          file_count="single", elem_id="mask_upload", height=120)
    return Editor(canvas, paint, api_edit, undo, redo, reset, blur, status, click_img, collect, remove, mask_upload, compare, slider,
                  select_tools)


@dataclass
class Results:
    domain_md: gr.Markdown
    domain_btn: gr.Button
    compare: Comparison
    rows: gr.Radio
    class_search: gr.Dropdown


def results() -> Results:
    """Beside the canvas (under it on a narrow screen): the domain line, one column per model (the
    comparison view, shared with study mode), the table mode and the class search."""
    with gr.Column(scale=7, min_width=340, elem_id="results"):
        with gr.Row(equal_height=True, elem_id="domain_row"):
            domain_md = gr.Markdown("", elem_id="domain_note")
            domain_btn = gr.Button("Use the ImageNet models", visible=False, size="sm", scale=0, min_width=220,
                                   elem_id="domain_switch")
        compare = comparison(slots=MAX_MODELS)
        with gr.Row():
            rows = gr.Radio(ROWS, value=ROWS[0], label="Table rows", elem_id="rows")
            class_search = gr.Dropdown([], label="Show the map of any class (type to search)", filterable=True,
                                       allow_custom_value=True, elem_id="class_search")
    return Results(domain_md, domain_btn, compare, rows, class_search)


def map_viewer(results: Results) -> None:
    """Under the canvas and the columns, full width: the chosen model's maps at the canvas's size, with a
    switcher when several models are compared (``comparison.Viewer``)."""
    from ..comparison import viewer

    results.compare.viewer = viewer()


@dataclass
class Tools:
    original: gr.Image
    hist_model: gr.Dropdown
    hist_img: gr.Image
    slow_btn: gr.Button
    slow_note: gr.Markdown
    slow_out: gr.Gallery
    con_model: gr.Dropdown
    con_a: gr.Dropdown
    con_b: gr.Dropdown
    con_btn: gr.Button
    con_img: gr.Image
    san_btn: gr.Button
    san_gallery: gr.Gallery
    san_text: gr.Markdown
    cmp_model: gr.Dropdown
    cmp_btn: gr.Button
    cmp_gallery: gr.Gallery
    cmp_text: gr.Markdown
    vebi_model: gr.Dropdown
    vebi_class: gr.Dropdown
    vebi_btn: gr.Button
    vebi_gallery: gr.Gallery
    vebi_text: gr.Markdown
    chk_btn: gr.Button
    chk_text: gr.Markdown
    chk_table: gr.Dataframe
    exp_btn: gr.Button
    exp_file: gr.File
    result_json: gr.JSON

    def model_pickers(self) -> list[gr.Dropdown]:
        """The tabs' model pickers, which follow the models the columns show (a new tab with a picker adds
        it here)."""
        return [self.hist_model, self.con_model, self.cmp_model, self.vebi_model]


def _maps_gallery(elem_id: str, columns: int, height: int) -> gr.Gallery:
    """A tab's gallery of map panels: whole panels (not their middle), no label (the tab says what)."""
    return gr.Gallery(columns=columns, height=height, show_label=False, elem_id=elem_id, elem_classes=["ic-gallery"],
                      object_fit="contain")


def _model_picker(ctx: AppContext, elem_id: str, **kw) -> gr.Dropdown:
    return gr.Dropdown(ctx.default, value=ctx.default[0] if ctx.default else None, label="Model", elem_id=elem_id, **kw)


def tools(ctx: AppContext) -> Tools:
    """The advanced tools, one tab each, under the results."""
    with gr.Tabs(elem_id="tools"):
        with gr.Tab("Crops"):
            original = gr.Image(label="Original, with the crop each model sees", type="numpy", interactive=False,
                                format="jpeg", elem_id="original", height=360)
        with gr.Tab("History", render_children=True):  # its picker is an input of every event's follow-up:
            # mounted, so that it sends the value the zoo switch gave it (an unmounted one sends its old one);
            # one that runs before the switch reaches the picker sends the old zoo's model (the follow-up
            # then shows the first model's history)
            hist_model = _model_picker(ctx, "history_model", allow_custom_value=True)
            hist_img = gr.Image(show_label=False, interactive=False, format="jpeg", elem_id="history")
        with gr.Tab("Slow maps"):
            slow_btn = gr.Button("Compute the chosen slow explainer's maps (Score-CAM, Ablation-CAM, FullGrad, "
                                 "occlusion) for the shown classes")
            slow_note = gr.Markdown("", elem_id="slow_note")
            slow_out = gr.Gallery(label="Slow maps", columns=2, height=300, elem_id="slow_maps",
                                  elem_classes=["ic-gallery"], object_fit="contain")  # whole panels, not their middle
        with gr.Tab("Contrast"):
            gr.Markdown("Why A rather than B: the map of logit(A) − logit(B).")
            with gr.Row():
                con_model = _model_picker(ctx, "contrast_model")
                con_a = gr.Dropdown([], label="A (the class to explain)", filterable=True, allow_custom_value=True,
                                    elem_id="contrast_a")
                con_b = gr.Dropdown([], label="B (rather than)", filterable=True, allow_custom_value=True,
                                    elem_id="contrast_b")
                con_btn = gr.Button("Show", elem_id="contrast_show")
            con_img = gr.Image(label="Contrastive map", interactive=False, format="jpeg", elem_id="contrast")
        with gr.Tab("Sanity check"):
            san_btn = gr.Button("Compare each shown map with the same explainer on a model whose head is randomised: "
                                "does the map depend on the model?")
            san_gallery = _maps_gallery("sanity_maps", columns=4, height=260)
            san_text = gr.Markdown()
        with gr.Tab("Compare explainers"):
            gr.Markdown("The shown class's map on the modified image by every interactive explainer, for one model, "
                        "each with its rank correlation (Spearman ρ) with the chosen explainer's map: do they point "
                        "at the same pixels?")
            with gr.Row():
                cmp_model = _model_picker(ctx, "compare_model")
                cmp_btn = gr.Button("Compare", elem_id="compare_show")
            cmp_gallery = _maps_gallery("compare_maps", columns=4, height=300)
            cmp_text = gr.Markdown(elem_id="compare_text")
        with gr.Tab("VEBI"):
            gr.Markdown("For models with a fitted VEBI relevance file (the Flower2D zoo ships one per model): the "
                        "internal features selected as relevant for a class, each shown as its average "
                        "visualisation over the images that fire it most.")
            with gr.Row():
                vebi_model = _model_picker(ctx, "vebi_model")
                vebi_class = gr.Dropdown([], label="Class", filterable=True, allow_custom_value=True, elem_id="vebi_class")
                vebi_btn = gr.Button("Show", elem_id="vebi_show")
            vebi_gallery = _maps_gallery("vebi_maps", columns=3, height=260)
            vebi_text = gr.Markdown(elem_id="vebi_text")
        with gr.Tab("Inpainter check"):
            chk_btn = gr.Button("Re-run the last edit with every inpainter: an effect of the model or of the filler?")
            chk_text = gr.Markdown()
            chk_table = gr.Dataframe(interactive=False)
        with gr.Tab("Export"):
            exp_btn = gr.Button("Build a zip (images, masks, maps of the shown and chosen classes, tables, versions, "
                                "weight hashes)")
            exp_file = gr.File(label="Download", interactive=False)
        with gr.Tab("Plugins"):
            gr.Markdown(present.plugins_markdown(ctx.report, ic_zoo.list_plugins()))
        with gr.Tab("Raw JSON"):
            result_json = gr.JSON(label="The result, as the API returns it")
    return Tools(original, hist_model, hist_img, slow_btn, slow_note, slow_out, con_model, con_a, con_b,
                 con_btn, con_img, san_btn, san_gallery, san_text, cmp_model, cmp_btn, cmp_gallery, cmp_text, vebi_model, vebi_class, vebi_btn, vebi_gallery,
                 vebi_text, chk_btn, chk_text, chk_table, exp_btn, exp_file, result_json)


@dataclass
class Page:
    """Every panel of the app's page, as the handlers see them."""

    state: gr.State
    header: Header
    inputs: Inputs
    pickers: Pickers
    editor: Editor
    results: Results
    tools: Tools
    work: gr.BrowserState | None = None  # the tab's signed work record (ui.work), kept by the browser
    work_in: gr.Textbox | None = None  # hidden: /restore, an API client's record sent back after a failover
    page_load: list = field(default_factory=list)  # (fn, inputs, outputs) run in turn when a tab opens

    def view_outputs(self) -> list:
        """What ``AppContext.show`` may change, in the order the API returns it (canvas first, the picker
        second; the domain line, the status and the JSON last)."""
        return [self.state, self.editor.canvas, self.pickers.models, self.tools.original, self.editor.slider,
                self.editor.click_img, self.tools.slow_note, *self.results.compare.outputs(), self.editor.paint,
                self.work, self.results.domain_md,
                self.results.domain_btn, self.editor.status, self.tools.result_json]

    def settings(self) -> list:
        """The inputs of an event that redraws the results: models, explainer, table rows, state."""
        return [self.pickers.models, self.pickers.explainer, self.results.rows, self.state]
