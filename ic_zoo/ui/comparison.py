"""The comparison view: one column per compared model (its title, top-5 table, class maps and a note),
drawn by ``gr.render`` from what the tab's state holds, so there are exactly as many columns as models
and no hidden slots. The app and study mode both show it.

A handler computes the columns' content (``model_view`` per model) and hands it over with
``Comparison.show(state, views)``, which stores it in the tab's state and returns a new token: the
``layout`` token when the models differ from the drawn ones (the columns are drawn again), else the
``values`` token (the drawn columns are refreshed in place, a cheap update). Either follows the event's
answer as one more request; ``#model_columns_at`` then says which edit the columns show.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import gradio as gr
import numpy as np

from .. import present
from ..errors import IcZooError

_tokens = itertools.count(1)


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
        info.append(present.stroke_effect_text(session.stroke_effect(name, explainer), session.edits[-1]))
    view = ModelView(name, present.model_title(name, result), present.class_rows(result, rows_mode), panel,
                     "\n\n".join(info), None, int(cls) if cm is not None else None, explainer,
                     cm.to_dict() if cm is not None else None)
    if trust is True:
        add_trust(session, view)
    return view, cm


def shown_trust(session, name: str, cls: int, explainer: str) -> dict:
    """The trust scores of the maps a panel shows: the original's, and the modified image's after an edit."""
    return {w: session.trust(name, cls, explainer, w) for w in (("original", "modified") if session.edits
                                                                 else ("original",))}


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
class Comparison:
    """The comparison panel. Two gr.State tokens: a new ``layout`` draws the columns again (another number
    or order of models: gr.render), a new ``values`` refreshes the drawn columns in place (a plain event
    inside the render, whose outputs are the columns' components)."""

    layout: gr.State
    values: gr.State

    def show(self, st, views, stamp: int | str = "") -> dict:
        """Hand ``views`` to the columns, as the token to merge into a handler's outputs. ``stamp`` (the
        edit count) is written into ``#model_columns_at`` as ``data-at``, so that a page script or a test
        can tell which edit the columns show (they follow the event's answer)."""
        st.views, st.views_stamp = list(views), stamp
        names = [v.name for v in st.views]
        if names != getattr(st, "views_layout", []):
            st.views_layout = names
            return {self.layout: next(_tokens)}
        return {self.values: next(_tokens)}

    def clear(self, st) -> dict:
        return self.show(st, [])


def _stamp(st) -> str:
    return f"columns of edit {getattr(st, 'views_stamp', '')}."


def _column_values(view: ModelView, info: bool) -> list:
    out = [view.title, present.table_frame(view.rows), view.panel]
    return out + [view.info] if info else out


def comparison(state: gr.State, *, info: bool = True, table_height: int = 240,
               widths=("34%", "22%", "22%", "22%"),
               wire_column: Callable[[int, ModelView, gr.Dataframe], None] | None = None) -> Comparison:
    """The model columns, for the tab whose state is ``state`` (any object with ``views``). Column ``i``
    has the elem_ids ``model_{i}``, ``model_{i}_title``, ``_table``, ``_maps`` and ``_info``.
    ``wire_column(i, view, table)`` attaches a column's events (the app's row clicks); it runs on each
    redraw, inside it."""
    layout, values = gr.State(0), gr.State(0)

    @gr.render(inputs=[state], triggers=[layout.change], queue=False, show_progress="hidden",
               trigger_mode="always_last")
    def columns(st):
        views = list(getattr(st, "views", None) or [])
        if not views:
            return
        drawn, parts = [v.name for v in views], []
        with gr.Row(equal_height=False, elem_id="model_columns"):
            for i, v in enumerate(views):
                with gr.Column(min_width=230, elem_id=f"model_{i}"):
                    title, table, maps, *note = _column_values(v, info)
                    col = [gr.Markdown(title, elem_id=f"model_{i}_title"),
                           gr.Dataframe(table, interactive=False, wrap=True, elem_id=f"model_{i}_table",
                                        show_search="none", buttons=["copy"], max_height=table_height,
                                        column_widths=list(widths)),
                           gr.Image(maps, show_label=False, interactive=False, format="jpeg", elem_id=f"model_{i}_maps")]
                    if info:
                        col.append(gr.Markdown(note[0], elem_id=f"model_{i}_info"))
                    parts += col
                if wire_column is not None:
                    wire_column(i, v, col[1])
        at = gr.Markdown(_stamp(st), elem_id="model_columns_at", elem_classes=["ic-stamp"])

        def refresh(st):
            """The drawn columns' new values (a column whose model is no longer there is left as it is)."""
            now = list(getattr(st, "views", None) or [])
            out = []
            for i, name in enumerate(drawn):
                same = i < len(now) and now[i].name == name
                out += _column_values(now[i], info) if same else [gr.skip()] * (4 if info else 3)
            return [_stamp(st)] + out

        values.change(refresh, [state], [at] + parts, queue=False, show_progress="hidden", trigger_mode="always_last",
                      api_visibility="private")

    return Comparison(layout, values)
