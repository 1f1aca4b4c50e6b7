"""The comparison view: one column per compared model (its title, top-5 table, class maps and a note).
The app and study mode both show it.

The columns are a fixed number of slots drawn with the page (as many as a selection may hold); a slot
with no model is hidden. A handler computes the columns' content (``model_view`` per model) and hands it
over with ``Comparison.show(state, views)``, which returns every slot's new value (or visibility) to merge
into the handler's outputs: the columns change in the same answer as the canvas and the status, with no
second request and no redraw that a later event could race (issue 34 item 4: ``gr.render`` redraws lost
events to a 500 under load). ``#model_columns_at`` says which edit the columns show.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import gradio as gr
import numpy as np

from ..analyses.stroke_effect import keep_for_next, stroke_effect
from ..analyses.trust import map_trust
from ..errors import IcZooError
from ..presentation import present
from .gradio_internals import block_id

@dataclass
class ModelView:
    """What one model's column shows."""

    name: str
    title: str  # markdown: the model and its top-1, with the change
    rows: list[dict]  # the table's rows (present.class_rows)
    panel: np.ndarray | None  # the maps (present.map_panel), None when the explainer cannot explain it
    info: str = ""  # markdown under the maps: which map, its trust score, the stroke's effect, or why there is no map
    trust: dict | None = None  # the trust scores of the maps shown ({"original": ..., "modified": ...} as dicts)
    cls: int | None = None  # the class of the maps and the explainer that made them (None: no maps)
    explainer: str = ""
    map: dict | None = None  # the shown maps' ClassMaps.to_dict() (their scale, whether blank), for the JSON
    shorter: dict | None = None  # the rows' labels that have a short name (present.first_synonyms)
    drawn: tuple | None = None  # (original, modified, ClassMaps, crop box): what the map viewer draws large
    edit: int = 0  # the edit the view is of

    def tiles(self, width: int = 480) -> tuple | None:
        """The maps at the viewer's size: on the original, on the modified image, their difference."""
        if self.drawn is None:
            return None
        original, modified, cm, box = self.drawn
        return present.map_tiles(original, modified, cm, width=min(width, original.shape[1] * 2), box=box)


_short_names: dict[int, tuple[list, dict]] = {}


def short_names(labels: list[str]) -> dict[str, str]:
    """present.first_synonyms of a model's labels, computed once per label list."""
    hit = _short_names.get(id(labels))
    if hit is None or hit[0] is not labels:
        hit = _short_names[id(labels)] = (labels, present.first_synonyms(labels))
    return hit[1]


def props_once(st, component, **props) -> dict:
    """``{component: gr.update(**props)}`` unless this tab's page has these props already (``{}`` then).

    A prop update (visibility, label, choices) costs Gradio a rebuild of the component and of its config on
    every event (about 4 ms each on a 2-core machine; a stroke had ten of them, most of its
    post-processing) and the page a re-render; a plain value costs neither. The state (``st.props_sent``)
    is the tab's, so a reloaded page, which starts from the layout's props, starts with an empty record."""
    sent, key = st.__dict__.setdefault("props_sent", {}), block_id(component)
    if sent.get(key) == props:
        return {}
    sent[key] = props
    return {component: gr.update(**props)}


def value_with_props(st, component, value, **props):
    """``component``'s new value, with ``props`` only when they changed (:func:`props_once`)."""
    upd = props_once(st, component, **props)
    return gr.update(value=value, **props) if upd else value


TRUST_PENDING = "Trust: being measured (the map's deletion AUC against random maps)..."


def model_view(session, name: str, result, cls: int, explainer: str, *, rows_mode: str = "tracked",
               slow_note: str = "", effect: bool = False, trust: bool | str = True):
    """One model's column for ``result`` (its ModelResult in ``session``): the map of class ``cls`` by
    ``explainer``, its trust score (``Session.trust``) beside it when ``trust`` (``"later"``: a line
    saying it is being measured, for ``add_trust`` to fill in), and with ``effect`` the share of the map
    the last stroke removed. Returns the view and the ClassMaps (None when the explainer refused, its
    sentence then in ``info``)."""
    info, cm = [], None
    try:
        cm = session.explain(name, cls, explainer)
        panel = present.map_panel(session.original, session.modified, cm, box=result.box)
        info.append(f"Map: **{present.short(cm.label)}** ({explainer}{slow_note})")
        if cm.blank:  # an empty map is no answer: said beside it, with the explainers that give one
            info.append(present.blank_text(cm))
        if trust == "later":
            info.append(TRUST_PENDING)
    except IcZooError as exc:
        panel = None
        info.append(present.md_text(exc))
    if effect and session.edits:
        info.append(present.stroke_effect_text(stroke_effect(session, name, explainer), session.edits[-1]))
    if effect and cm is not None:  # the next stroke's effect: its map while this version's run is kept
        keep_for_next(session, name, explainer)
    rows = present.class_rows(result, rows_mode)
    names = short_names(session.classifier(name).labels)
    view = ModelView(name, present.model_title(name, result), rows, panel,
                     "\n\n".join(info), None, int(cls) if cm is not None else None, explainer,
                     cm.to_dict() if cm is not None else None,
                     {r["label"]: names[r["label"]] for r in rows if r["label"] in names},
                     (session.original, session.modified, cm, result.box) if cm is not None else None,
                     len(session.edits))
    if trust is True:
        add_trust(session, view)
    return view, cm


def shown_trust(session, name: str, cls: int, explainer: str) -> dict:
    """The trust scores of the maps a panel shows: the original's, and the modified image's after an edit."""
    return {w: map_trust(session, name, cls, explainer, w) for w in (("original", "modified") if session.edits
                                                                 else ("original",))}


class _ModelProgress:
    """One model's part of the slow maps' progress, and its previews: an explainer that refines its map (the
    fast occlusion) shows it here at each step (``explainers._base.preview_of``), and the maps so far go out
    packed like the final result, the refining model's map last (``preview``)."""

    def __init__(self, progress, i: int, m: str, n: int, preview=None, pack_so_far=None, label: str = ""):
        self.progress, self.i, self.m, self.n, self.label = progress, i, m, n, label
        self.steps = 0
        if preview is not None:
            self.preview = lambda image, raw: preview(pack_so_far(self.panel(image, raw)))

    def __call__(self, f, msg=""):
        self.progress((self.i + f) / self.n, f"{self.m}: {msg}")

    def panel(self, image, raw) -> tuple[np.ndarray, str]:
        self.steps += 1
        heat = np.asarray(raw, np.float32)[0]
        heat = np.maximum(heat, 0) / max(float(heat.max()), 1e-12)  # its own maximum: a map in progress
        caption = f"{self.m}: {self.label}, refining (step {self.steps}, the image the model sees)"
        return present.single_panel(image, heat, caption), caption


def slow_maps(session, names, explainer: str, classes: dict, progress, preview=None) -> bytes:
    """Each model's map of its class by a slow explainer, packed as a job's result (ic_zoo.app.jobs.pack):
    ``pics`` (PNG name, caption), ``trust`` lines, ``warnings`` (a model that gave no map, in one sentence)
    and ``edits`` (the edit the maps are of). ``progress(fraction, note)`` moves 0..1 over all models.
    ``preview(bytes)``: given, in the same format (``"preview": True``), the maps done so far and the one
    being refined, each time an explainer that refines its map shows a step (the fast occlusion: its coarse
    map at once); the final result never depends on it."""
    from ..imageio import image_to_png
    from .jobs import pack

    pics, trust, warnings, files = [], [], [], {}

    def pack_so_far(step: tuple[np.ndarray, str]) -> bytes:
        picture, caption = step
        return pack({"pics": pics + [["step.png", caption]], "trust": [], "warnings": list(warnings),
                     "edits": len(session.edits), "preview": True},
                    {**{name: files[name] for name, _ in pics}, "step.png": image_to_png(picture)})

    for i, m in enumerate(names):
        try:
            cls = int(classes[m])
            clf = session.classifier(m)
            label = clf.labels[cls] if 0 <= cls < clf.num_classes else ""
            prog = _ModelProgress(progress, i, m, len(names), preview, pack_so_far, present.short(label))
            cm = session.explain(m, cls, explainer, progress=prog)
            scores = shown_trust(session, m, cls, explainer)
        except IcZooError as exc:
            warnings.append(f"{m}: {exc}")
            continue
        files[f"{i}.png"] = image_to_png(present.map_panel(session.original, session.modified, cm))
        pics.append([f"{i}.png", f"{m}: {cm.label} (edit {len(session.edits)})"])
        trust.append(f"- **{m}**: {present.trust_text(scores)} {present.blank_text(cm)}".rstrip())
    return pack({"pics": pics, "trust": trust, "warnings": warnings, "edits": len(session.edits)}, files)


def add_trust(session, view: ModelView) -> bool:
    """Measure the trust score of ``view``'s maps (the original's, and the modified image's after an edit)
    and put it beside them; False when there is nothing to do (no maps, or measured already)."""
    if view.cls is None or view.trust is not None:
        return False
    try:
        scores = shown_trust(session, view.name, view.cls, view.explainer)
        line = present.trust_text(scores)
        view.trust = {w: t.to_dict() for w, t in scores.items()}
    except IcZooError as exc:
        line, view.trust = f"Trust: {present.md_text(exc)}", {}
    parts = view.info.split("\n\n")
    if TRUST_PENDING in parts:
        parts[parts.index(TRUST_PENDING)] = line
    else:
        parts.insert(1, line)
    view.info = "\n\n".join(parts)
    return True


@dataclass
class Slot:
    """One column's components."""

    column: gr.Column
    title: gr.Markdown
    table: gr.Dataframe
    maps: gr.Image
    info: gr.Markdown | None

    def components(self) -> list:
        return [self.column, self.title, self.table, self.maps] + ([self.info] if self.info is not None else [])


@dataclass
class Viewer:
    """The map viewer (issue 34 item 7): one model's maps at the size of the canvas, the model chosen by a
    switcher; labels and colour bars are the page's text, each picture has a full-screen button."""

    which: gr.Radio
    title: gr.Markdown
    original: gr.Image
    modified: gr.Image
    difference: gr.Image
    legend: gr.HTML

    def components(self) -> list:
        return [self.which, self.title, self.original, self.modified, self.difference, self.legend]

    def draw(self, st, views, name: str | None = None) -> dict:
        """The viewer for ``views``: the model ``name`` (else the one chosen before, else the first)."""
        views = list(views)
        names = [v.name for v in views]
        chosen = name if name in names else getattr(st, "viewer_model", None)
        chosen = chosen if chosen in names else (names[0] if names else None)
        st.viewer_model = chosen
        view = views[names.index(chosen)] if chosen is not None else None
        tiles = view.tiles() if view is not None else None
        if tiles is not None:
            view.drawn[2].compact()  # drawn: the state keeps the raw maps, not their image-size copies
        out = props_once(st, self.which, choices=names, value=chosen, visible=len(names) > 1)
        if tiles is None:
            out.update({self.title: ("" if view is None else f"**{view.name}**: no map to show here (see its column)."),
                        self.original: None, self.modified: None, self.difference: None, self.legend: ""})
            return out
        cm = view.drawn[2]
        label = present.short(cm.label)
        out.update({self.title: f"Maps of **{view.name}**: *{label}* by {view.explainer}, edit {view.edit} "
                                f"(the white frame is the part of the image the model sees)",
                    # the labels change with the class only (the title says which edit): a plain value else
                    self.original: value_with_props(st, self.original, tiles[0], label=f"Original: {label}"),
                    self.modified: value_with_props(st, self.modified, tiles[1], label=f"Modified: {label}"),
                    self.difference: value_with_props(st, self.difference, tiles[2],
                                                      label="Difference: red rose, blue fell"),
                    self.legend: present.map_legend_html(cm)})
        return out


def viewer() -> Viewer:
    """The map viewer's components (elem_ids ``map_viewer``, ``map_model``, ``map_title``,
    ``map_original``, ``map_modified``, ``map_difference``, ``map_legend``)."""
    with gr.Column(elem_id="map_viewer"):
        with gr.Row(equal_height=True):
            which = gr.Radio([], label="Maps of", elem_id="map_model", visible=False, scale=3, min_width=640)
            title = gr.Markdown("", elem_id="map_title")
        with gr.Row(equal_height=False, elem_id="map_row"):
            pics = [gr.Image(label=what, interactive=False, format="jpeg", elem_id=f"map_{key}", min_width=300,
                             buttons=["fullscreen", "download"], elem_classes=["ic-map"])
                    for key, what in (("original", "Original"), ("modified", "Modified"),
                                      ("difference", "Difference"))]
        legend = gr.HTML("", elem_id="map_legend")
    return Viewer(which, title, *pics, legend)


@dataclass
class Comparison:
    """The comparison panel: ``slots`` columns and the stamp saying which edit they show; with a
    :class:`Viewer`, the chosen model's maps drawn large (the app; study mode has none)."""

    slots: list[Slot]
    at: gr.Markdown
    viewer: Viewer | None = None

    def outputs(self) -> list:
        """The components ``show`` may change (an event that shows views lists them among its outputs)."""
        return ([self.at] + [c for s in self.slots for c in s.components()]
                + (self.viewer.components() if self.viewer is not None else []))

    def show(self, st, views, stamp: int | str = "", *, info_only: bool = False) -> dict:
        """Hand ``views`` to the columns: a dict of new values to merge into a handler's outputs. ``stamp``
        (the edit count) is written into ``#model_columns_at``, so that a page script or a test can tell
        which edit the columns show. ``info_only``: only the notes changed (the trust follow-up, right after
        the event that drew the rest): the titles, tables and maps are not sent again."""
        views = list(views)
        if len(views) > len(self.slots):
            raise IcZooError(f"At most {len(self.slots)} models can be compared side by side; "
                             f"{len(views)} were given.")
        # kept for the notes' follow-up and the viewer's switch, which draw no column maps: a view's panel
        # (the largest thing in it, 7 MB a model at 768 px) is not kept once it is sent
        st.views, st.views_stamp = [dataclasses.replace(v, panel=None) for v in views], stamp
        out: dict = {self.at: _stamp(st)}
        for slot, view in itertools.zip_longest(self.slots, views):
            if view is None:
                out.update(props_once(st, slot.column, visible=False))
                continue
            if not info_only:
                out.update(props_once(st, slot.column, visible=True))
                out[slot.title] = view.title
                out[slot.table] = present.table_frame(view.rows, view.shorter)
                out[slot.maps] = view.panel
            if slot.info is not None:
                out[slot.info] = view.info
        if self.viewer is not None and not info_only:
            out.update(self.viewer.draw(st, views))
        for v in st.views:  # drawn: what is kept for a later switch of the viewer is the raw maps
            if v.drawn is not None:
                v.drawn[2].compact()
        return out

    def clear(self, st) -> dict:
        return self.show(st, [])


def _stamp(st) -> str:
    return f"columns of edit {getattr(st, 'views_stamp', '')}."


def comparison(*, slots: int, info: bool = True, table_height: int = 360,
               widths=("40%", "20%", "20%", "20%")) -> Comparison:
    """The model columns, ``slots`` of them, hidden until a model is shown in them. Column ``i`` has the
    elem_ids ``model_{i}``, ``model_{i}_title``, ``_table``, ``_maps`` and ``_info``. Their events (the
    app's row clicks) are wired once per slot by the caller; a handler reads which model a slot shows
    from the tab's state (its ``views[i]``)."""
    made = []
    with gr.Row(equal_height=False, elem_id="model_columns"):
        for i in range(slots):
            with gr.Column(min_width=230, elem_id=f"model_{i}", visible=False) as col:
                slot = Slot(col, gr.Markdown(elem_id=f"model_{i}_title"),
                            gr.Dataframe(interactive=False, wrap=True, elem_id=f"model_{i}_table",
                                         datatype=present.TABLE_TYPES,
                                         show_search="none", buttons=["copy"], max_height=table_height,
                                         column_widths=list(widths)),
                            gr.Image(show_label=False, interactive=False, format="jpeg", elem_id=f"model_{i}_maps"),
                            gr.Markdown(elem_id=f"model_{i}_info") if info else None)
            made.append(slot)
    at = gr.Markdown(_stamp(None), elem_id="model_columns_at", elem_classes=["ic-stamp"])
    return Comparison(made, at)
