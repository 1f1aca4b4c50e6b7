"""The comparison view: one column per compared model (its title, top-5 table, class maps and a note),
drawn by ``gr.render`` from what the tab's state holds, so there are exactly as many columns as models
and no hidden slots. The app and study mode both show it.

A handler computes the columns' content (``model_view`` per model) and hands it over with
``Comparison.show(state, views)``, which stores it in the tab's state and returns the new value of the
view's token; the token's change redraws the columns. Components keep their keys across redraws, so
the page updates them in place.
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
    info: str = ""  # markdown under the maps: which map, the stroke's effect, or why there is no map


def model_view(session, name: str, result, cls: int, explainer: str, *, rows_mode: str = "tracked",
               slow_note: str = "", effect: bool = False):
    """One model's column for ``result`` (its ModelResult in ``session``): the map of class ``cls`` by
    ``explainer``, and with ``effect`` the share of the map the last stroke removed. Returns the view
    and the ClassMaps (None when the explainer refused, its sentence then in ``info``)."""
    info, cm = [], None
    try:
        cm = session.explain(name, cls, explainer)
        panel = present.map_panel(session.original, session.modified, cm, box=result.box)
        info.append(f"Map: **{present.short(cm.label)}** ({explainer}{slow_note})")
    except IcZooError as exc:
        panel = None
        info.append(str(exc))
    if effect and session.edits:
        info.append(present.stroke_effect_text(session.stroke_effect(name, explainer), session.edits[-1]))
    view = ModelView(name, present.model_title(name, result), present.class_rows(result, rows_mode), panel,
                     "\n\n".join(info))
    return view, cm


@dataclass
class Comparison:
    """The comparison panel: ``token`` (a gr.State) redraws the columns whenever a handler returns a new
    value for it."""

    token: gr.State

    def show(self, st, views, stamp: int | str = "") -> dict:
        """Hand ``views`` to the columns: ``{token: new value}``, to merge into a handler's outputs.
        ``stamp`` (the edit count) marks the columns' row with the class ``ic-at-<stamp>``, so that a page
        script or a test can tell which edit the columns show (they are drawn just after the event)."""
        st.views, st.views_stamp = list(views), stamp
        return {self.token: next(_tokens)}

    def clear(self, st) -> dict:
        return self.show(st, [])


def comparison(state: gr.State, *, info: bool = True, table_height: int = 240,
               widths=("43%", "19%", "19%", "19%"),
               wire_column: Callable[[int, ModelView, gr.Dataframe], None] | None = None) -> Comparison:
    """The model columns, for the tab whose state is ``state`` (any object with ``views``). Column ``i``
    has the elem_ids ``model_{i}``, ``model_{i}_title``, ``_table``, ``_maps`` and ``_info``.
    ``wire_column(i, view, table)`` attaches a column's events (the app's row clicks); it runs on each
    redraw, inside it."""
    token = gr.State(0)

    @gr.render(inputs=[state, token], triggers=[token.change], queue=False, show_progress="hidden",
               trigger_mode="always_last")
    def columns(st, _token):
        views = list(getattr(st, "views", None) or [])
        if not views:
            return
        stamp = getattr(st, "views_stamp", "")
        with gr.Row(equal_height=False, elem_id="model_columns", key="model_columns", preserved_by_key=None,
                    elem_classes=["ic-columns", f"ic-at-{stamp}"]):
            for i, v in enumerate(views):
                with gr.Column(min_width=230, elem_id=f"model_{i}", key=f"model_{i}"):
                    gr.Markdown(v.title, elem_id=f"model_{i}_title", key=f"model_{i}_title", preserved_by_key=None)
                    table = gr.Dataframe(present.table_frame(v.rows), interactive=False, wrap=True,
                                         elem_id=f"model_{i}_table", key=f"model_{i}_table", preserved_by_key=None,
                                         show_search="none", buttons=["copy"], max_height=table_height,
                                         column_widths=list(widths))
                    gr.Image(v.panel, show_label=False, interactive=False, format="jpeg", elem_id=f"model_{i}_maps",
                             key=f"model_{i}_maps", preserved_by_key=None)
                    if info:
                        gr.Markdown(v.info, elem_id=f"model_{i}_info", key=f"model_{i}_info", preserved_by_key=None)
                if wire_column is not None:
                    wire_column(i, v, table)

    return Comparison(token)
