"""What the last stroke did to one model: the share of the class map it covered, beside the change in the
class's probability."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StrokeEffect:
    """For the last edit and one class (``cls``): its probability before and after, the change in
    percentage points, the stroke's share of the image, and the share of the class map (by ``explainer``,
    before the stroke) that lay inside it; None when the map is blank or the explainer cannot map this
    model (there is no mass to place: the app says n/a, not 0 %)."""

    model: str
    cls: int
    label: str
    prob_before: float
    prob_after: float
    delta_pp: float
    stroke_area: float
    mass_in_stroke: float | None
    explainer: str

    def to_dict(self) -> dict:
        return {"model": self.model, "class": self.cls, "label": self.label, "prob_before": self.prob_before,
                "prob_after": self.prob_after, "delta_pp": self.delta_pp, "stroke_area": self.stroke_area,
                "mass_in_stroke": self.mass_in_stroke, "explainer": self.explainer}


def stroke_effect(session, name: str, explainer: str = "gradcam", cls: int | None = None) -> StrokeEffect | None:
    """For ``session``'s last edit: how much of the class map (of ``cls``, default the top-1 before the edit)
    lay inside the stroke before it was made, next to the change in that class's probability; None before
    any edit."""
    from ..classifiers._base import paste_maps
    from ..explainers._base import is_blank
    from ..session import get_explainer

    with session.lock:
        if not session.edits:
            return None
        before, _ = session.before_last()
        edit = session.edits[-1]
        clf = session.classifier(name)
        pb = session.state(name, before, need_x=False).prediction
        pa = session.state(name, session.version, need_x=False).prediction
        c = pb.top1 if cls is None else int(cls)
        mass = None
        ex = get_explainer(explainer)
        if ex.supports(clf) is None:
            raw, _ = session.maps(name, before, ex, [c])
            if not is_blank(raw[0]):
                heat = paste_maps(raw, clf.input_box(session.original.shape), session.original.shape[:2])[0]
                mass = float(heat[edit.mask].sum() / float(heat.sum()))
        return StrokeEffect(name, c, clf.labels[c], float(pb.probs[c]), float(pa.probs[c]),
                            100.0 * float(pa.probs[c] - pb.probs[c]), float(edit.mask.mean()), mass, explainer)


def keep_for_next(session, name: str, explainer: str = "gradcam") -> None:
    """Compute now, from the run the current image version still keeps, its top-1 map by ``explainer``:
    the next stroke's effect reads that map (of the image before that stroke), and after that stroke the
    version keeps its maps but not its run (``ResultCache``), so the map would then cost a forward pass.
    Nothing for an explainer that has no tapped run or cannot map this model."""
    from ..session import get_explainer

    ex = get_explainer(explainer)
    with session.lock:
        if ex.cost != "interactive" or ex.supports(session.classifier(name)) is not None:
            return
        v = session.version
        session.maps(name, v, ex, [session.state(name, v, need_x=False).prediction.top1])
